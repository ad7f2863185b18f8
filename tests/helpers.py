"""A test client that fills forms the way a browser does: it fetches the page, takes the CSRF
token from the form and posts with it."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from html import unescape
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"'
                     r'|name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1) or match.group(2)


def text_of(response: TestResponse) -> str:
    """The page's visible text, for asserting what a person would read."""
    html = response.get_data(as_text=True)
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


class FormClient:
    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def get(self, url: str, **kw: Any) -> TestResponse:
        return self.client.get(url, **kw)

    def submit(self, url: str, data: dict[str, str], page: str | None = None,
               **kw: Any) -> TestResponse:
        token = csrf_token(self.client.get(page or url, **kw).get_data(as_text=True))
        return self.client.post(url, data={"csrf_token": token, **data}, **kw)

    def signup(self, phone: str, password: str = "correct horse 1") -> TestResponse:
        return self.submit("/signup", {"phone": phone, "password": password,
                                       "confirm": password})

    def login(self, phone: str, password: str) -> TestResponse:
        return self.submit("/login", {"phone": phone, "password": password})

    def link(self, account_no: str, holder: str, last4: str) -> TestResponse:
        return self.submit("/accounts/link", {"account_no": account_no, "holder_name": holder,
                                              "meter_last4": last4})


def run_concurrently(work: Callable[[], None], copies: int) -> None:
    """Run ``copies`` threads of ``work`` released at the same instant; re-raise their errors."""
    barrier = threading.Barrier(copies)
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:  # collected and raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]

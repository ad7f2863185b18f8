"""Response headers every page carries: no framing, no sniffing, a tight content policy, and no
caching of signed-in pages (bills are personal; browsers on shared computers keep caches); which
``next=`` targets a sign-in may redirect to; and no NUL character in what a request sends."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, TypeGuard

from flask import Flask, Response, request
from flask_login import current_user
from werkzeug.datastructures import MultiDict
from werkzeug.urls import iri_to_uri

from portal.kernel.errors import DomainError

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",  # ECharts positions its tooltip with inline styles
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


def secure_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    if current_user and current_user.is_authenticated:
        headers["Cache-Control"] = "no-store"
    return response


# A path of this site: one slash, then neither a slash nor a backslash (browsers read "/\x" as
# "//x"), and no control characters (browsers drop tabs and line breaks; a header cannot hold a
# line break).
_SAME_SITE_PATH = re.compile(r"/(?![/\\])[^\\\x00-\x1f\x7f]*")


def is_same_site_path(target: str | None) -> TypeGuard[str]:
    """Whether redirecting to ``target`` (a ``next=`` from the query) stays on this site. The
    Location header is checked as the redirect will write it: werkzeug normalises ``////x`` to
    ``//x``, a link to another host."""
    return (target is not None and _SAME_SITE_PATH.fullmatch(target) is not None
            and _SAME_SITE_PATH.fullmatch(iri_to_uri(target)) is not None)


class NulCharacter(DomainError):
    """A NUL character (``\\x00``) in the path, the query, a form field or a JSON string: no
    input of ours can hold one, and PostgreSQL refuses it in any text it is given."""

    code = "request_nul_character"


def _texts(value: Any) -> Iterator[str]:
    """Every string in a parsed JSON document, object keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def _pairs(values: MultiDict[str, str]) -> list[str]:
    """The keys and every value of a query or form."""
    return [text for key, items in values.lists() for text in (key, *items)]


def refuse_nul_characters() -> None:
    """Before any view: a 400 saying what to do (a page, or JSON on the mini-program API)
    instead of a database error. The payment notifications are left alone: their channel
    verifies the raw, signed body, which must not be read as a form before that."""
    if request.blueprint == "webhooks":
        return
    sent = [request.path, *_pairs(request.args), *_pairs(request.form)]
    if request.is_json:
        sent.extend(_texts(request.get_json(silent=True)))
    if any("\x00" in text for text in sent):
        raise NulCharacter()


def init_app(app: Flask) -> None:
    app.before_request(refuse_nul_characters)
    app.after_request(secure_headers)

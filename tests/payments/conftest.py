"""Shared fixtures for the payment channels: sandbox gateways served over real HTTP on loopback."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from portal.kernel.clock import FrozenClock
from tests.portal.backoffice.staffing import staff_ids

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class _Late:
    """Forwards to the app once it exists (the app needs the server's URL to be built)."""

    app: WSGIApp | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        assert self.app is not None
        return self.app(environ, start_response)


@pytest.fixture
def wsgi_server() -> Iterator[Callable[[Callable[[str], WSGIApp]], str]]:
    """``wsgi_server(lambda base_url: app)`` serves the app on 127.0.0.1:<free port> in a thread
    (threaded, so an app may call another served app) and returns its base URL, no trailing
    slash. Servers stop at the end of the test."""
    servers: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def serve(factory: Callable[[str], WSGIApp]) -> str:
        late = _Late()
        server = make_server("127.0.0.1", 0, late, threaded=True, request_handler=_QuietHandler)
        base_url = f"http://127.0.0.1:{server.port}"
        late.app = factory(base_url)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        servers.append((server, thread))
        return base_url

    yield serve
    for server, thread in servers:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture
def staff(session: Session, clock: FrozenClock) -> list[int]:
    """Three staff members' ids: refunds are requested by one and approved by another."""
    return staff_ids(session, clock, "refund-requester", "refund-approver", "third-person")

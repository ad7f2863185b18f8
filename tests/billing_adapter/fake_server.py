"""A fake external billing system on loopback: the documented contract served by the embedded
engine on its own SQLite database, with faults to inject.

Faults: ``fail_next`` answers that many requests 503 before doing anything; ``down`` answers
every request 503; ``lose_replies`` does the work, commits, then answers 503 (the reply was lost);
``delay_next`` does the work after sleeping ``delay_seconds`` (beyond the client's timeout);
``garbled_reply`` (bytes) answers 200 with that body instead of the contract's.
``requests`` records (method, path, headers) of every request received.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from billing_adapter.base import (
    Adjustment,
    BillingRejected,
    BillingUnavailable,
    PaymentPosting,
    ReadingSubmission,
)
from billing_adapter.http import mapping
from billing_adapter.local.postings import BillingPosting, BillingReversal
from billing_adapter.local.system import LocalBillingSystem
from portal.kernel.clock import Clock
from portal.kernel.db import Base, use_real_sqlite_transactions

T = TypeVar("T")
TOKEN = "fake-billing-token"
NOT_FOUND = {"unknown_account", "unknown_meter", "unknown_order", "unknown_bill"}
CONFLICT = {"order_conflict", "adjustment_conflict", "reversal_conflict", "reversal_too_large"}


@cache
def _empty_database() -> Path:
    """Every table, created once per test process and copied for each server."""
    import portal.models  # noqa: F401  (every table, for create_all)

    path = Path(tempfile.mkdtemp(prefix="fake-billing-")) / "empty.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


class FakeBillingServer:
    def __init__(self, database: Path, clock: Clock) -> None:
        shutil.copy(_empty_database(), database)
        self.engine = sa.create_engine(f"sqlite:///{database}")
        use_real_sqlite_transactions(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.clock = clock
        self.rules = Map([Rule(template.replace("{", "<").replace("}", ">"), endpoint=name,
                               methods=[method])
                          for name, (method, template) in mapping.ROUTES.items()])
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.down = False
        self.fail_next = 0
        self.lose_replies = 0
        self.delay_next = 0
        self.delay_seconds = 0.0
        self.garbled_reply: bytes | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # --- the test's side -----------------------------------------------------------------

    def seed(self, build: Callable[[Session], T]) -> T:
        """Run ``build`` on the server's database and commit."""
        with self.sessions() as session:
            result = build(session)
            session.commit()
            return result

    def posting_count(self, order_no: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(BillingPosting)
        if order_no is not None:
            query = query.where(BillingPosting.order_no == order_no)
        with self.sessions() as session:
            return int(session.scalar(query) or 0)

    def reversals(self, order_no: str) -> list[tuple[str, int]]:
        """(reversal_no, amount_fen) of the order's reversals, in the order they were made."""
        with self.sessions() as session:
            return [(no, amount) for no, amount in session.execute(
                sa.select(BillingReversal.reversal_no, BillingReversal.amount_fen)
                .join(BillingPosting, BillingPosting.id == BillingReversal.posting_id)
                .where(BillingPosting.order_no == order_no).order_by(BillingReversal.id))]

    def start(self) -> None:
        self._server = make_server("127.0.0.1", 0, self, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        with self._idle:  # let delayed requests finish before the database goes away
            self._idle.wait_for(lambda: self._busy == 0, timeout=10)
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._server.server_close()
        self.engine.dispose()

    # --- the server's side ---------------------------------------------------------------

    def _take(self, name: str) -> bool:
        with self._lock:
            count: int = getattr(self, name)
            if count > 0:
                setattr(self, name, count - 1)
                return True
            return False

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self._lock:
            self._busy += 1
        try:
            return self._respond(Request(environ))(environ, start_response)
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def _respond(self, request: Request) -> Response:
        self.requests.append((request.method, request.path, dict(request.headers)))
        if self.down or self._take("fail_next"):
            return _json(mapping.error_body("unavailable", "try again later"), 503)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _json(mapping.error_body("unauthorized", "bad token"), 401)
        if self._take("delay_next"):
            time.sleep(self.delay_seconds)
        try:
            endpoint, args = self.rules.bind_to_environ(request.environ).match()
        except HTTPException as exc:
            return _json(mapping.error_body("no_route", str(exc)), exc.code or 404)
        with self.sessions() as session:
            system = LocalBillingSystem(session, self.clock)
            try:
                status, body = self._operate(system, str(endpoint), request, args)
            except mapping.MalformedMessage as exc:
                return _json(mapping.error_body("invalid_request", str(exc)), 400)
            except BillingRejected as exc:
                status = 404 if exc.code in NOT_FOUND else 409 if exc.code in CONFLICT else 422
                return _json(mapping.error_body(exc.code, exc.message), status)
            except BillingUnavailable as exc:
                return _json(mapping.error_body("unavailable", str(exc)), 503)
            session.commit()
        if self._take("lose_replies"):
            return _json(mapping.error_body("unavailable", "the reply was lost"), 503)
        if self.garbled_reply is not None:
            return Response(self.garbled_reply, status=200, content_type="application/json")
        return _json(body, status)

    def _operate(self, system: LocalBillingSystem, endpoint: str, request: Request,
                 args: dict[str, str]) -> tuple[int, Any]:
        if endpoint == "get_account":
            return 200, mapping.encode(system.get_account(args["account_no"]))
        if endpoint == "list_bills":
            since = request.args.get("since")
            if since is None:
                raise mapping.MalformedMessage("the query parameter since is required")
            bills = system.list_bills(args["account_no"], since)
            return 200, mapping.encode(mapping.BillList(tuple(bills)))
        body = mapping.loads(request.get_data())
        if endpoint == "submit_reading":
            return 201, mapping.encode(system.submit_reading(
                mapping.decode(ReadingSubmission, body)))
        if endpoint == "post_payment":
            receipt = system.post_payment(mapping.decode(PaymentPosting, body))
            return 200 if receipt.duplicate else 201, mapping.encode(receipt)
        if endpoint == "reverse_payment":
            reversal = mapping.decode(mapping.Reversal, body)
            receipt = system.reverse_payment(args["order_no"], reversal.reason,
                                             reversal_no=reversal.reversal_no,
                                             amount_fen=reversal.amount_fen)
            return 200 if receipt.duplicate else 201, mapping.encode(receipt)
        return 201, mapping.encode(system.apply_adjustment(mapping.decode(Adjustment, body)))


def _json(body: Any, status: int) -> Response:
    return Response(mapping.dumps(body), status=status, content_type="application/json")


@contextmanager
def running(database: Path, clock: Clock) -> Iterator[FakeBillingServer]:
    server = FakeBillingServer(database, clock)
    server.start()
    try:
        yield server
    finally:
        server.stop()

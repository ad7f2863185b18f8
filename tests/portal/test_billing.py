"""Composition of the billing system: the embedded engine unless an external one is configured,
and payment postings that survive an outage through the outbox, landing exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from billing_adapter.http.client import HttpBillingSystem
from billing_adapter.local.postings import BillingPosting
from billing_adapter.local.system import LocalBillingSystem
from portal import billing
from portal.kernel import outbox
from portal.kernel.clock import FrozenClock
from portal.kernel.outbox import OutboxMessage, OutboxStatus
from portal.tasks import OUTBOX_HANDLERS_KEY
from tests.billing_adapter.contract import posting, seed_world
from tests.billing_adapter.fake_server import TOKEN, FakeBillingServer, running


def _dispatch(app, session, clock) -> int:  # type: ignore[no-untyped-def]
    return outbox.dispatch(session, clock, app.extensions[OUTBOX_HANDLERS_KEY])


def _message(session) -> OutboxMessage:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalars(sa.select(OutboxMessage)).one()


def test_embedded_by_default(app, session) -> None:
    assert isinstance(billing.billing_system(session), LocalBillingSystem)


def test_a_payment_is_posted_once_in_embedded_mode(app, session, clock) -> None:
    seed_world(session, clock)
    billing.enqueue_payment_posting(session, clock, posting())
    billing.enqueue_payment_posting(session, clock, posting())  # the same order: one message
    session.commit()
    assert _dispatch(app, session, clock) == 1
    assert _dispatch(app, session, clock) == 0
    row = session.scalars(sa.select(BillingPosting)).one()
    assert (row.order_no, row.amount_fen, row.paid_at) == (
        posting().order_no, 17048, posting().paid_at)


def test_a_refused_posting_is_left_dead_for_staff(app, session, clock) -> None:
    seed_world(session, clock)
    billing.enqueue_payment_posting(session, clock, posting(account_no="0000000000"))
    session.commit()
    assert _dispatch(app, session, clock) == 0
    message = _message(session)
    assert (message.status, message.attempts) == (OutboxStatus.DEAD, 1)
    assert "unknown_account" in message.last_error
    assert session.scalar(sa.select(sa.func.count()).select_from(BillingPosting)) == 0


def test_a_reversal_waits_for_its_posting(app, session, clock) -> None:
    seed_world(session, clock)
    billing.enqueue_payment_reversal(session, clock, posting().order_no, "refund RF1")
    session.commit()
    assert _dispatch(app, session, clock) == 0  # overtook its posting: retried, not dead
    assert _message(session).status is OutboxStatus.PENDING
    billing.enqueue_payment_posting(session, clock, posting())
    session.commit()
    clock.advance(timedelta(minutes=5))
    assert _dispatch(app, session, clock) == 1  # the posting; the reversal was tried first
    clock.advance(timedelta(minutes=5))
    assert _dispatch(app, session, clock) == 1
    row = session.scalars(sa.select(BillingPosting)).one()
    assert (row.reversed_at, row.reversal_reason) == (clock.now(), "refund RF1")


@pytest.fixture
def server(tmp_path: Path, clock: FrozenClock) -> Iterator[FakeBillingServer]:
    with running(tmp_path / "billing.sqlite", clock) as fake:
        fake.seed(lambda session: seed_world(session, clock))
        yield fake


class TestExternalBillingSystem:
    @pytest.fixture
    def settings_overrides(self, server: FakeBillingServer) -> dict[str, object]:
        return {"billing_url": server.url, "billing_token": TOKEN, "billing_retries": 3,
                "billing_timeout_seconds": 2}

    def test_the_http_adapter_is_chosen(self, app, session, server) -> None:
        system = billing.billing_system(session)
        assert isinstance(system, HttpBillingSystem)
        assert system.get_account("9900000001").holder_name == "测试户"

    def test_an_outage_of_hours_delays_the_posting_which_lands_once(
            self, app, session, clock, server) -> None:
        server.down = True
        billing.enqueue_payment_posting(session, clock, posting())
        session.commit()
        for _ in range(12):  # twelve hours of dispatch rounds, past the outbox's default limit
            assert _dispatch(app, session, clock) == 0
            clock.advance(timedelta(hours=1))
        message = _message(session)
        assert (message.status, message.attempts) == (OutboxStatus.PENDING, 12)
        assert "BillingUnavailable" in message.last_error
        assert len(server.requests) == 12  # one request a round: the outbox does the retrying
        server.down, server.lose_replies = False, 1  # back, but the first reply gets lost
        assert _dispatch(app, session, clock) == 0
        assert server.posting_count() == 1
        clock.advance(timedelta(hours=1))
        assert _dispatch(app, session, clock) == 1
        assert _message(session).status is OutboxStatus.SENT
        assert server.posting_count(posting().order_no) == 1
        keys = {h.get("Idempotency-Key") for method, _, h in server.requests if method == "POST"}
        assert keys == {f"payment:{posting().order_no}"}


class TestWrongToken:
    @pytest.fixture
    def settings_overrides(self, server: FakeBillingServer) -> dict[str, object]:
        return {"billing_url": server.url, "billing_token": "not-the-token"}

    def test_a_refusing_billing_system_leaves_postings_dead_with_the_reason(
            self, app, session, clock, server) -> None:
        billing.enqueue_payment_posting(session, clock, posting())
        billing.enqueue_payment_reversal(session, clock, posting().order_no, "refund")
        session.commit()
        assert _dispatch(app, session, clock) == 0
        messages = session.scalars(sa.select(OutboxMessage)).all()
        assert [(m.status, m.attempts) for m in messages] == [(OutboxStatus.DEAD, 1)] * 2
        assert all("unauthorized" in m.last_error for m in messages)
        assert len(server.requests) == 2  # a 4xx is not retried

"""Composition of the billing system: the embedded engine unless an external one is configured,
and the outbox messages the payments service writes (a succeeded order, a succeeded refund)
reaching the billing system through the app's handlers: each exactly once, surviving an outage,
a partial refund reversing only what it refunded."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing_adapter.http.client import HttpBillingSystem
from billing_adapter.local.postings import BillingPosting, BillingReversal
from billing_adapter.local.system import LocalBillingSystem
from payments import service
from payments.channels.base import RefundState, Scene
from payments.models import PaymentOrder, Refund
from payments.states import OrderStatus, RefundStatus
from portal import billing
from portal.accounts.models import ElectricityAccount
from portal.backoffice.models import StaffMember
from portal.kernel import outbox
from portal.kernel.clock import FrozenClock
from portal.kernel.outbox import OutboxMessage, OutboxStatus
from portal.tasks import OUTBOX_HANDLERS_KEY
from tests import factories
from tests.billing_adapter.contract import ACCOUNT, seed_world
from tests.billing_adapter.fake_server import TOKEN, FakeBillingServer, running
from tests.payments.fakes import FakeChannel
from tests.portal.backoffice.staffing import staff_ids

OWED = 9000 + 11719 + 5329 + 8000 + 2000  # the seeded world's three issued bills


def _dispatch(app, session, clock) -> int:  # type: ignore[no-untyped-def]
    return outbox.dispatch(session, clock, app.extensions[OUTBOX_HANDLERS_KEY])


def _messages(session: Session) -> list[OutboxMessage]:
    session.expire_all()
    return list(session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


def paid_order(session: Session, clock: FrozenClock, channel: FakeChannel,
               account_no: str = ACCOUNT, topup_fen: int = 0) -> PaymentOrder:
    """An order for everything the account owes (+ a top-up), paid; notified twice."""
    account_id = session.scalar(sa.select(ElectricityAccount.id)
                                .where(ElectricityAccount.account_no == account_no))
    assert account_id is not None
    order = service.create_order(session, clock, account_id=account_id, customer_id=None,
                                 channel="wechat", scene=Scene.DESKTOP, bill_ids=None,
                                 topup_fen=topup_fen, lifetime=timedelta(minutes=30),
                                 first_query_after=timedelta(minutes=1))
    session.commit()
    service.start_checkout(session, clock, channel, order, description="电费",
                           notify_url="https://portal.example/notify/wechat",
                           return_url="https://portal.example/pay/return")
    trade = channel.pay(order.order_no, order.amount_fen)
    for _ in range(2):
        service.apply_trade(session, clock, "wechat", trade, "notify")
        session.commit()
    session.refresh(order)
    assert order.status == OrderStatus.SUCCEEDED
    return order


def refunded(session: Session, clock: FrozenClock, channel: FakeChannel, order: PaymentOrder,
             amount_fen: int) -> Refund:
    """A refund requested, approved by a second person and confirmed by the channel."""
    channel.refund_state = RefundState.SUCCEEDED
    requester, approver = (
        session.scalar(sa.select(StaffMember.id).filter_by(username=name))
        or staff_ids(session, clock, name)[0] for name in ("refund-requester", "refund-approver"))
    refund = service.request_refund(session, clock, order_no=order.order_no,
                                    amount_fen=amount_fen, reason="搬家", requested_by=requester)
    service.approve_refund(session, clock, refund, approved_by=approver)
    assert service.send_refund(session, clock, channel, refund, timedelta(minutes=5)) == \
        RefundStatus.SUCCEEDED
    return refund


def reversals(session: Session) -> list[tuple[str, str, int]]:
    session.expire_all()
    return [tuple(row) for row in session.execute(  # type: ignore[misc]
        sa.select(BillingPosting.order_no, BillingReversal.reversal_no, BillingReversal.amount_fen)
        .join(BillingPosting, BillingPosting.id == BillingReversal.posting_id)
        .order_by(BillingReversal.id))]


def test_embedded_by_default(app, session) -> None:
    assert isinstance(billing.billing_system(session), LocalBillingSystem)


def test_a_succeeded_order_is_posted_once_in_embedded_mode(app, session, clock) -> None:
    seed_world(session, clock)
    order = paid_order(session, clock, FakeChannel())
    assert _dispatch(app, session, clock) == 1
    assert _dispatch(app, session, clock) == 0
    row = session.scalars(sa.select(BillingPosting)).one()
    assert (row.order_no, row.amount_fen, row.paid_at, row.channel, row.bill_periods) == (
        order.order_no, OWED, clock.now(), "wechat", "2026-09,2026-10,2026-11")


def test_a_full_refund_reverses_the_whole_posting_once(app, session, clock) -> None:
    seed_world(session, clock)
    channel = FakeChannel()
    order = paid_order(session, clock, channel)
    refund = refunded(session, clock, channel, order, OWED)
    assert _dispatch(app, session, clock) == 2
    assert _dispatch(app, session, clock) == 0
    assert reversals(session) == [(order.order_no, refund.refund_no, OWED)]
    assert [m.status for m in _messages(session)] == [OutboxStatus.SENT] * 2


def test_partial_refunds_reverse_only_what_they_refunded(app, session, clock) -> None:
    seed_world(session, clock)
    channel = FakeChannel()
    order = paid_order(session, clock, channel)
    first = refunded(session, clock, channel, order, 5000)
    assert _dispatch(app, session, clock) == 2  # the posting, then the first reversal
    second = refunded(session, clock, channel, order, 3000)
    rest = refunded(session, clock, channel, order, OWED - 8000)
    assert _dispatch(app, session, clock) == 2
    assert _dispatch(app, session, clock) == 0
    assert reversals(session) == [(order.order_no, first.refund_no, 5000),
                                  (order.order_no, second.refund_no, 3000),
                                  (order.order_no, rest.refund_no, OWED - 8000)]
    assert session.scalar(sa.select(BillingPosting.amount_fen)) == OWED


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
        seed_world(session, clock)
        server.down = True
        order = paid_order(session, clock, FakeChannel())
        for _ in range(12):  # twelve hours of dispatch rounds, past the outbox's default limit
            assert _dispatch(app, session, clock) == 0
            clock.advance(timedelta(hours=1))
        (message,) = _messages(session)
        assert (message.status, message.attempts) == (OutboxStatus.PENDING, 12)
        assert "BillingUnavailable" in message.last_error
        assert len(server.requests) == 12  # one request a round: the outbox does the retrying
        server.down, server.lose_replies = False, 1  # back, but the first reply gets lost
        assert _dispatch(app, session, clock) == 0
        assert server.posting_count() == 1
        clock.advance(timedelta(hours=1))
        assert _dispatch(app, session, clock) == 1
        assert _messages(session)[0].status is OutboxStatus.SENT
        assert server.posting_count(order.order_no) == 1
        keys = {h.get("Idempotency-Key") for method, _, h in server.requests if method == "POST"}
        assert keys == {f"payment:{order.order_no}"}

    def test_a_reversal_waits_for_its_posting_and_a_partial_one_reverses_its_part(
            self, app, session, clock, server) -> None:
        seed_world(session, clock)
        channel = FakeChannel()
        order = paid_order(session, clock, channel)
        refund = refunded(session, clock, channel, order, 5000)
        server.fail_next = 1  # the posting gets a 503, so the reversal overtakes it
        assert _dispatch(app, session, clock) == 0
        assert [m.status for m in _messages(session)] == [OutboxStatus.PENDING] * 2
        assert "PostingNotLanded" in _messages(session)[1].last_error  # retried, not dead
        clock.advance(timedelta(minutes=5))
        assert _dispatch(app, session, clock) == 2
        assert server.reversals(order.order_no) == [(refund.refund_no, 5000)]
        assert server.posting_count(order.order_no) == 1

    def test_a_posting_the_billing_system_refuses_is_left_dead_for_staff(
            self, app, session, clock, server) -> None:
        seed_world(session, clock)
        factories.account(session, clock, "9900000009", meter_no="990000009999")  # not there
        order = paid_order(session, clock, FakeChannel(), "9900000009", topup_fen=1000)
        assert _dispatch(app, session, clock) == 0
        (message,) = _messages(session)
        assert (message.status, message.attempts) == (OutboxStatus.DEAD, 1)
        assert "unknown_account" in message.last_error
        assert server.posting_count(order.order_no) == 0


class TestWrongToken:
    @pytest.fixture
    def settings_overrides(self, server: FakeBillingServer) -> dict[str, object]:
        return {"billing_url": server.url, "billing_token": "not-the-token"}

    def test_a_refusing_billing_system_leaves_postings_dead_with_the_reason(
            self, app, session, clock, server) -> None:
        seed_world(session, clock)
        channel = FakeChannel()
        order = paid_order(session, clock, channel)
        refunded(session, clock, channel, order, 5000)
        assert _dispatch(app, session, clock) == 0
        messages = _messages(session)
        assert [(m.status, m.attempts) for m in messages] == [(OutboxStatus.DEAD, 1)] * 2
        assert all("unauthorized" in m.last_error for m in messages)
        assert len(server.requests) == 2  # a 4xx is not retried

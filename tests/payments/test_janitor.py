from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from payments import janitor, service
from payments.channels.base import ChannelUnavailable, Scene
from payments.models import PaymentOrder
from payments.states import OrderStatus, RefundStatus
from portal.bills import service as bills
from portal.kernel.clock import FrozenClock
from portal.ledger import service as ledger
from tests import factories
from tests.payments.fakes import FakeChannel

POLICY = janitor.JanitorPolicy(order_minutes=30, query_backoff_seconds=(60, 300),
                               max_attempts=3, refund_retry_seconds=60)


@pytest.fixture
def account_id(session: Session, clock: FrozenClock) -> int:
    acct = factories.account(session, clock)
    bill = factories.bill(session, clock, acct, amounts=(8000,), due=date(2026, 12, 25))
    bills.issue(session, clock, bill)
    session.commit()
    return acct.id


def pending_order(session: Session, clock: FrozenClock, channel: FakeChannel,
                  account_id: int) -> PaymentOrder:
    order = service.create_order(session, clock, account_id=account_id, customer_id=None,
                                 channel=channel.name, scene=Scene.DESKTOP, bill_ids=None,
                                 lifetime=POLICY.lifetime, first_query_after=POLICY.backoff(0))
    service.start_checkout(session, clock, channel, order, description="电费",
                           notify_url="https://p.example/notify/wechat",
                           return_url="https://p.example/r")
    return order


def step(session: Session, clock: FrozenClock, channel: FakeChannel,
         minutes: float) -> janitor.JanitorReport:
    clock.advance(timedelta(minutes=minutes))
    return janitor.run(session, clock, {channel.name: channel}, POLICY)


def state(session: Session, order: PaymentOrder) -> tuple[OrderStatus, int]:
    session.refresh(order)
    return order.status, order.query_attempts


def test_a_success_found_by_query_is_applied_once(session, clock, account_id):
    channel = FakeChannel()
    order = pending_order(session, clock, channel, account_id)
    assert step(session, clock, channel, 0.5).queried == 0  # not due yet
    report = step(session, clock, channel, 0.5)
    assert (report.queried, state(session, order)) == (1, (OrderStatus.PENDING, 1))
    assert order.next_query_at == clock.now() + timedelta(seconds=300)
    channel.pay(order.order_no, 8000)
    assert step(session, clock, channel, 5).applied == 1
    assert state(session, order)[0] == OrderStatus.SUCCEEDED
    assert step(session, clock, channel, 5).queried == 0  # settled orders are left alone
    assert ledger.owed_by_account(session, [account_id]) == {account_id: 0}


def test_an_expired_order_is_closed_at_the_channel_first(session, clock, account_id):
    channel = FakeChannel()
    order = pending_order(session, clock, channel, account_id)
    for _ in range(5):  # 1 + 4 x 5 minutes: queries never go past the expiry
        step(session, clock, channel, 5)
    assert state(session, order) == (OrderStatus.PENDING, 5)
    assert order.next_query_at == order.expires_at
    patient = POLICY.model_copy(update={"max_attempts": 10})
    clock.set(order.expires_at)
    channel.fail_next = [None, ChannelUnavailable()]  # the query answers, the close times out
    report = janitor.run(session, clock, {"wechat": channel}, patient)
    assert report.unreachable == 1 and channel.closed == []
    assert state(session, order) == (OrderStatus.PENDING, 6)  # still open: never closed locally
    clock.advance(timedelta(minutes=5))
    report = janitor.run(session, clock, {"wechat": channel}, patient)
    assert report.closed == 1 and channel.closed == [order.order_no]
    assert state(session, order)[0] == OrderStatus.CLOSED
    # a payment reported after the close goes to staff, never to the ledger
    service.apply_trade(session, clock, "wechat", channel.pay(order.order_no, 8000), "notify")
    session.commit()
    assert state(session, order)[0] == OrderStatus.REVIEW
    assert ledger.owed_by_account(session, [account_id]) == {account_id: 8000}


def test_paid_just_before_the_close_is_applied_not_closed(session, clock, account_id):
    class PaidOnClose(FakeChannel):
        def close(self, order_no: str, channel_ref: str | None = None) -> None:
            self.pay(order_no, 8000)  # the customer paid between our query and our close
            super().close(order_no, channel_ref)

    channel = PaidOnClose()
    order = pending_order(session, clock, channel, account_id)
    report = step(session, clock, channel, 31)
    assert report.applied == 1 and state(session, order)[0] == OrderStatus.SUCCEEDED


def test_an_unknown_order_is_queried_and_exhausted_ones_go_to_review(session, clock, account_id):
    channel = FakeChannel(fail_next=[ChannelUnavailable("create timed out")])
    with pytest.raises(service.ChannelDown):
        pending_order(session, clock, channel, account_id)
    order = session.scalars(sa.select(PaymentOrder)).one()
    assert state(session, order)[0] == OrderStatus.UNKNOWN
    channel.fail_next = [ChannelUnavailable()] * 10
    step(session, clock, channel, 1)
    step(session, clock, channel, 5)
    assert state(session, order) == (OrderStatus.UNKNOWN, 2)
    report = step(session, clock, channel, 30)  # third failure, past expiry: a person looks
    assert report.review == 1
    assert order.status == OrderStatus.REVIEW and order.review_reason == "queries_exhausted"


def test_an_unknown_order_found_pending_becomes_pending(session, clock, account_id):
    channel = FakeChannel(fail_next=[ChannelUnavailable()])
    with pytest.raises(service.ChannelDown):
        pending_order(session, clock, channel, account_id)
    order = session.scalars(sa.select(PaymentOrder)).one()
    channel.trades[order.order_no] = service.Trade(order.order_no, service.TradeState.PENDING)
    step(session, clock, channel, 1)
    assert state(session, order) == (OrderStatus.PENDING, 1)


def test_orders_of_a_disabled_channel_are_skipped(session, clock, staff, account_id):
    channel = FakeChannel(name="alipay")
    order = pending_order(session, clock, channel, account_id)
    clock.advance(timedelta(minutes=2))
    report = janitor.run(session, clock, {}, POLICY)
    assert report.skipped == [order.order_no] and state(session, order)[1] == 0
    service.apply_trade(session, clock, "alipay", channel.pay(order.order_no, 8000), "notify")
    refund = service.request_refund(session, clock, order_no=order.order_no, amount_fen=100,
                                    reason="x", requested_by=staff[0])
    service.approve_refund(session, clock, refund, approved_by=staff[1])
    channel.fail_next.append(ChannelUnavailable())
    service.send_refund(session, clock, channel, refund, timedelta(minutes=1))
    clock.advance(timedelta(minutes=2))
    assert janitor.run(session, clock, {}, POLICY).skipped == [refund.refund_no]


def test_pending_refunds_are_resent_with_their_number_then_queried(session, clock, staff,
                                                                   account_id):
    channel = FakeChannel()
    order = pending_order(session, clock, channel, account_id)
    service.apply_trade(session, clock, "wechat", channel.pay(order.order_no, 8000), "notify")
    refund = service.request_refund(session, clock, order_no=order.order_no, amount_fen=8000,
                                    reason="moved", requested_by=staff[0])
    service.approve_refund(session, clock, refund, approved_by=staff[1])
    channel.fail_next.append(ChannelUnavailable())
    service.send_refund(session, clock, channel, refund, timedelta(minutes=1))
    assert refund.status == RefundStatus.PENDING and channel.refunds == []
    assert step(session, clock, channel, 0.5).refunds == 0  # not due yet
    assert step(session, clock, channel, 1).refunds == 1    # re-sent, accepted
    assert step(session, clock, channel, 1).refunds == 1    # queried: succeeded
    session.refresh(refund)
    assert refund.status == RefundStatus.SUCCEEDED
    assert [r.refund_no for r in channel.refunds] == [refund.refund_no]
    assert ledger.owed_by_account(session, [account_id]) == {account_id: 8000}
    assert janitor.run(session, clock, {}, POLICY).refunds == 0


def test_the_beat_runs_the_janitor_every_minute(session, clock, account_id):
    from portal.celery_app import BEAT_SCHEDULE
    from portal.tasks import payment_janitor

    assert BEAT_SCHEDULE["payment-janitor"]["schedule"] == timedelta(minutes=1)
    order = service.create_order(session, clock, account_id=account_id, customer_id=None,
                                 channel="wechat", scene=Scene.DESKTOP, bill_ids=None,
                                 lifetime=POLICY.lifetime, first_query_after=POLICY.backoff(0))
    session.commit()
    clock.advance(timedelta(minutes=2))
    assert payment_janitor.run() == 0  # no channel is configured in tests: skipped, untouched
    assert state(session, order) == (OrderStatus.CREATED, 0)

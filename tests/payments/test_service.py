from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing_adapter.base import Adjustment
from billing_adapter.local.system import LocalBillingSystem
from payments import service
from payments.channels.base import (
    ChannelError,
    ChannelUnavailable,
    Notification,
    OrderRequest,
    RefundState,
    Scene,
    Trade,
    TradeState,
)
from payments.models import PaymentEvent, PaymentOrder
from payments.states import OrderStatus, RefundStatus
from portal.bills import service as bills
from portal.bills.models import Bill
from portal.kernel.clock import FrozenClock
from portal.kernel.outbox import OutboxMessage
from portal.ledger import service as ledger
from portal.ledger.models import EntryKind, LedgerEntry
from tests import factories
from tests.payments.fakes import FakeChannel

TODAY = date(2026, 12, 3)


def issued(session: Session, clock: FrozenClock, acct: object, period: str,
           amounts: tuple[int, ...], due: date) -> Bill:
    bill = factories.bill(session, clock, acct, period=period, amounts=amounts, due=due)  # type: ignore[arg-type]
    bills.issue(session, clock, bill)
    return bill


@pytest.fixture
def two_bills(session: Session, clock: FrozenClock) -> tuple[int, Bill, Bill]:
    acct = factories.account(session, clock)
    old = issued(session, clock, acct, "2026-10", (3000,), date(2026, 11, 25))
    new = issued(session, clock, acct, "2026-11", (5000,), date(2026, 12, 25))
    session.commit()
    return acct.id, old, new


def order_for(session: Session, clock: FrozenClock, account_id: int, channel: str = "wechat",
              bill_ids: list[int] | None = None, topup_fen: int = 0) -> PaymentOrder:
    order = service.create_order(session, clock, account_id=account_id, customer_id=None,
                                 channel=channel, scene=Scene.DESKTOP, bill_ids=bill_ids,
                                 topup_fen=topup_fen, lifetime=timedelta(minutes=30),
                                 first_query_after=timedelta(minutes=1))
    session.commit()
    return order


def checkout(session: Session, clock: FrozenClock, channel: FakeChannel,
             order: PaymentOrder) -> None:
    service.start_checkout(session, clock, channel, order, description="电费",
                           notify_url="https://portal.example/notify/wechat",
                           return_url="https://portal.example/pay/return")


def notify_twice(session: Session, clock: FrozenClock, channel: FakeChannel,
                 order: PaymentOrder, amount_fen: int) -> None:
    """Check the order out, then send its success notification twice: applied, then a
    duplicate."""
    checkout(session, clock, channel, order)
    note = Notification("EV1", "TRANSACTION.SUCCESS", channel.pay(order.order_no, amount_fen),
                        raw={"id": "EV1"})
    assert service.handle_notification(session, clock, "wechat", note) == service.Outcome.APPLIED
    assert service.handle_notification(session, clock, "wechat", note) == \
        service.Outcome.DUPLICATE


def payments_of(session: Session, account_id: int) -> list[tuple[int | None, int]]:
    return [(e.bill_id, e.amount_fen) for e in session.scalars(
        sa.select(LedgerEntry).where(LedgerEntry.account_id == account_id,
                                     LedgerEntry.kind == EntryKind.PAYMENT)
        .order_by(LedgerEntry.id))]


def test_order_covers_every_owed_bill_oldest_first(session, clock, two_bills):
    account_id, old, new = two_bills
    order = order_for(session, clock, account_id, topup_fen=500)
    assert order.amount_fen == 3000 + 5000 + 500
    assert [(c.bill_id, c.amount_fen) for c in order.bills] == [(old.id, 3000), (new.id, 5000)]
    assert order.status == OrderStatus.CREATED and len(order.order_no) == 26


def test_an_order_for_nothing_owed_or_a_bad_amount_is_refused(session, clock, two_bills):
    account_id, old, _new = two_bills
    with pytest.raises(service.InvalidAmount):
        order_for(session, clock, account_id, topup_fen=-1)
    with pytest.raises(service.NothingToPay):
        order_for(session, clock, account_id, bill_ids=[old.id, 999999])
    other = factories.account(session, clock, account_no="9900000002", meter_no="990000009999")
    with pytest.raises(service.NothingToPay):
        order_for(session, clock, other.id)
    assert session.scalar(sa.select(sa.func.count(PaymentOrder.id))) == 0


def test_the_order_row_is_committed_before_the_channel_is_called(app, session, clock, two_bills):
    account_id, _old, _new = two_bills
    seen: list[str | None] = []

    class Peeking(FakeChannel):
        def create(self, order: OrderRequest):  # type: ignore[no-untyped-def]
            from portal.extensions import db
            with db.engine.connect() as other:  # another connection sees only committed rows
                seen.append(other.execute(sa.select(PaymentOrder.status).where(
                    PaymentOrder.order_no == order.order_no)).scalar())
            return super().create(order)

    channel = Peeking()
    order = service.create_order(session, clock, account_id=account_id, customer_id=None,
                                 channel="wechat", scene=Scene.DESKTOP, bill_ids=None,
                                 lifetime=timedelta(minutes=30),
                                 first_query_after=timedelta(minutes=1))
    checkout(session, clock, channel, order)
    assert seen == ["created"]
    assert order.status == OrderStatus.PENDING
    assert order.checkout == {"code_url": f"weixin://wxpay/bizpayurl?pr={order.order_no}"}
    assert channel.created[0].amount_fen == 8000


def test_no_answer_leaves_the_order_unknown_and_a_refusal_fails_it(session, clock, two_bills):
    account_id, _old, _new = two_bills
    channel = FakeChannel(fail_next=[ChannelUnavailable("timeout"), ChannelError("INVALID")])
    first, second = order_for(session, clock, account_id), order_for(session, clock, account_id)
    with pytest.raises(service.ChannelDown):
        checkout(session, clock, channel, first)
    with pytest.raises(service.ChannelRefused):
        checkout(session, clock, channel, second)
    session.expire_all()
    assert (first.status, second.status) == (OrderStatus.UNKNOWN, OrderStatus.FAILED)


def test_success_pays_the_bills_oldest_first_once_and_tells_billing(session, clock, two_bills):
    account_id, old, new = two_bills
    channel = FakeChannel()
    order = order_for(session, clock, account_id)
    checkout(session, clock, channel, order)
    trade = channel.pay(order.order_no, 8000)
    outcomes = [service.apply_trade(session, clock, "wechat", trade, "notify") for _ in range(3)]
    session.commit()
    assert outcomes == [service.Outcome.APPLIED] + [service.Outcome.DUPLICATE] * 2
    session.refresh(order)
    assert order.status == OrderStatus.SUCCEEDED and order.channel_trade_no == f"T{order.order_no}"
    assert payments_of(session, account_id) == [(old.id, -3000), (new.id, -5000)]
    assert ledger.owed_by_bill(session, [old.id, new.id]) == {old.id: 0, new.id: 0}
    [posting] = session.scalars(sa.select(OutboxMessage)).all()
    assert posting.topic == "billing.post_payment" and posting.dedup_key == f"post:{order.order_no}"
    assert posting.payload == {"order_no": order.order_no, "account_no": "9900000001",
                               "amount_fen": 8000, "paid_at": clock.now().isoformat(),
                               "channel": "wechat", "bill_periods": ["2026-10", "2026-11"]}


def test_a_wrong_amount_or_currency_goes_to_review_and_credits_nothing(session, clock, two_bills):
    account_id, _old, _new = two_bills
    channel = FakeChannel()
    short, foreign = order_for(session, clock, account_id), order_for(session, clock, account_id)
    for order in (short, foreign):
        checkout(session, clock, channel, order)
    assert service.apply_trade(session, clock, "wechat", channel.pay(short.order_no, 7999),
                               "notify") == service.Outcome.REVIEW
    assert service.apply_trade(session, clock, "wechat",
                               channel.pay(foreign.order_no, 8000, "USD"),
                               "notify") == service.Outcome.REVIEW
    # the right amount arriving later does not turn review into success
    assert service.apply_trade(session, clock, "wechat", channel.pay(short.order_no, 8000),
                               "query") == service.Outcome.DUPLICATE
    session.commit()
    session.expire_all()
    assert (short.status, foreign.status) == (OrderStatus.REVIEW, OrderStatus.REVIEW)
    assert short.review_reason and short.review_reason.startswith("amount_mismatch")
    assert payments_of(session, account_id) == []
    assert session.scalar(sa.select(sa.func.count(OutboxMessage.id))) == 0


def test_success_after_close_goes_to_review(session, clock, two_bills):
    account_id, _old, _new = two_bills
    channel = FakeChannel()
    order = order_for(session, clock, account_id)
    checkout(session, clock, channel, order)
    closed = Trade(order.order_no, TradeState.CLOSED)
    assert service.apply_trade(session, clock, "wechat", closed, "notify") == \
        service.Outcome.APPLIED
    assert service.apply_trade(session, clock, "wechat", closed, "notify") == \
        service.Outcome.DUPLICATE
    assert service.apply_trade(session, clock, "wechat", channel.pay(order.order_no, 8000),
                               "notify") == service.Outcome.REVIEW
    session.commit()
    session.refresh(order)
    assert order.status == OrderStatus.REVIEW and order.review_reason == "paid_after_closed"
    assert payments_of(session, account_id) == []


def test_a_trade_refunded_at_the_channel_before_we_heard_of_it_goes_to_review(session, clock,
                                                                            two_bills):
    """The janitor finds an open order's trade refunded (staff refunded it in the channel's
    console, our notification was lost): the money went back, so nothing is credited; a
    person decides."""
    account_id, _old, _new = two_bills
    channel = FakeChannel()
    order = order_for(session, clock, account_id)
    checkout(session, clock, channel, order)
    refunded = Trade(order.order_no, TradeState.REFUNDED, 8000, channel_trade_no="T1")
    note = Notification("EV-R", "TRANSACTION.SUCCESS", refunded, raw={"id": "EV-R"})
    assert service.handle_notification(session, clock, "wechat", note) == \
        service.Outcome.REVIEW
    assert service.apply_trade(session, clock, "wechat", refunded, "query") == \
        service.Outcome.DUPLICATE
    session.commit()
    session.refresh(order)
    assert order.status == OrderStatus.REVIEW and order.review_reason == "refunded_at_channel"
    assert payments_of(session, account_id) == []


def test_other_trade_states_and_orders_of_another_channel(session, clock, two_bills):
    account_id, _old, _new = two_bills
    order = order_for(session, clock, account_id)
    apply = service.apply_trade
    assert apply(session, clock, "alipay", Trade(order.order_no, TradeState.SUCCEEDED, 8000),
                 "notify") == service.Outcome.UNKNOWN_ORDER
    assert apply(session, clock, "wechat", Trade("DFnope", TradeState.SUCCEEDED, 1),
                 "notify") == service.Outcome.UNKNOWN_ORDER
    assert apply(session, clock, "wechat", Trade(order.order_no, TradeState.NOT_FOUND),
                 "query") == service.Outcome.IGNORED
    assert apply(session, clock, "wechat", Trade(order.order_no, TradeState.PENDING),
                 "query") == service.Outcome.APPLIED
    assert apply(session, clock, "wechat", Trade(order.order_no, TradeState.PENDING),
                 "query") == service.Outcome.DUPLICATE
    assert apply(session, clock, "wechat", Trade(order.order_no, TradeState.FAILED),
                 "query") == service.Outcome.APPLIED
    assert apply(session, clock, "wechat", Trade(order.order_no, TradeState.CLOSED),
                 "query") == service.Outcome.DUPLICATE
    session.commit()
    session.refresh(order)
    assert order.status == OrderStatus.FAILED


def test_overpayment_becomes_prepaid_balance_that_the_next_bill_consumes(session, clock,
                                                                       two_bills):
    account_id, old, new = two_bills
    channel = FakeChannel()
    paid_order(session, clock, account_id, channel, 9000, bill_ids=[old.id], topup_fen=6000)
    # 3000 to the old bill, 6000 prepaid, of which 5000 paid the newer owed bill
    assert ledger.owed_by_bill(session, [old.id, new.id]) == {old.id: 0, new.id: 0}
    assert ledger.prepaid_balance(session, account_id) == 1000
    assert ledger.owed_by_account(session, [account_id]) == {account_id: -1000}
    acct = session.get(Bill, old.id).account  # type: ignore[union-attr]
    dec = issued(session, clock, acct, "2026-12", (2500,), date(2027, 1, 25))  # takes the 1000
    assert ledger.apply_prepaid(session, clock, account_id, TODAY) == 0
    session.commit()
    assert ledger.owed_by_bill(session, [dec.id]) == {dec.id: 1500}
    assert ledger.prepaid_balance(session, account_id) == 0
    assert ledger.owed_by_account(session, [account_id]) == {account_id: 1500}
    adjustments = session.scalars(sa.select(LedgerEntry.amount_fen).where(
        LedgerEntry.kind == EntryKind.ADJUSTMENT)).all()
    assert sum(adjustments) == 0 and len(adjustments) == 4


def test_a_bill_paid_meanwhile_sends_the_money_to_the_balance(session, clock, two_bills):
    account_id, old, new = two_bills
    channel = FakeChannel()
    first = order_for(session, clock, account_id, bill_ids=[old.id])
    second = order_for(session, clock, account_id, bill_ids=[old.id])
    for order in (first, second):
        checkout(session, clock, channel, order)
        service.apply_trade(session, clock, "wechat", channel.pay(order.order_no, 3000), "notify")
    session.commit()
    # the second 3000 finds the old bill paid: it goes to the balance, which pays the new bill
    assert ledger.owed_by_bill(session, [old.id, new.id]) == {old.id: 0, new.id: 2000}
    assert payments_of(session, account_id) == [(old.id, -3000), (None, -3000)]


PG_ONLY = pytest.mark.parametrize("database_url", [pytest.param("pg", marks=pytest.mark.pg)],
                                  indirect=True)


def success(channel: FakeChannel, order_no: str, amount_fen: int) -> Notification:
    return Notification(f"EV-{order_no}", "TRANSACTION.SUCCESS",
                        channel.pay(order_no, amount_fen), raw={"id": f"EV-{order_no}"})


def checked_out_success(session: Session, clock: FrozenClock, channel: FakeChannel,
                        account_id: int, bill_id: int) -> Notification:
    """An order for the bill (30 yuan owed), checked out and committed, and the channel's
    notification of its success."""
    order = order_for(session, clock, account_id, bill_ids=[bill_id])
    checkout(session, clock, channel, order)
    note = success(channel, order.order_no, 3000)
    session.commit()
    return note


def handled(engine: sa.Engine, clock: FrozenClock, note: Notification) -> service.Outcome:
    """``note`` handled and committed in a session of its own, as another request would."""
    with Session(engine) as other:
        outcome = service.handle_notification(other, clock, "wechat", note)
        other.commit()
    return outcome


def _credit_lands_after_the_read(monkeypatch, session: Session, credit) -> None:  # type: ignore[no-untyped-def]
    """Between the one-statement way's read and its write, ``credit(other_session)`` runs
    and commits."""
    engine, read = session.get_bind(), service._order_and_covered
    done: list[bool] = []

    def read_then_credit(connection: sa.Connection, order_no: str):  # type: ignore[no-untyped-def]
        found = read(connection, order_no)
        if not done:
            done.append(True)
            with Session(engine) as other:
                credit(other)
                other.commit()
        return found

    monkeypatch.setattr(service, "_order_and_covered", read_then_credit)


def counter_payment_allocated(other: Session, clock: FrozenClock, account_id: int) -> int:
    """30 yuan paid at the counter (bill-less credit) and allocated to the oldest owed bill, in
    ``other``'s transaction; the fen allocated."""
    ledger.post(other, clock, account_id=account_id, kind=EntryKind.PAYMENT, amount_fen=-3000,
                ref="counter:1", effective_on=TODAY)
    return ledger.apply_prepaid(other, clock, account_id, TODAY)


@PG_ONLY
def test_a_bill_paid_by_another_order_while_a_success_is_applied_is_not_paid_twice(
        session, clock, two_bills, monkeypatch):
    """The customer abandons a QR code, pays the old bill by a second order, then pays the QR
    code too; the second order's success lands between the first's read and its write."""
    account_id, old, new = two_bills
    channel = FakeChannel()
    first, second = (order_for(session, clock, account_id, bill_ids=[old.id]) for _ in "12")
    for order in (first, second):
        checkout(session, clock, channel, order)
    notes = [success(channel, order.order_no, 3000) for order in (first, second)]
    session.commit()
    interleaved: list[service.Outcome] = []
    _credit_lands_after_the_read(monkeypatch, session, lambda other: interleaved.append(
        service.handle_notification(other, clock, "wechat", notes[1])))
    assert service.handle_notification(session, clock, "wechat", notes[0]) == \
        service.Outcome.APPLIED
    session.commit()
    assert interleaved == [service.Outcome.APPLIED]
    # the first 3000 finds the old bill paid: it goes to the balance, which pays the new bill
    assert ledger.owed_by_bill(session, [old.id, new.id]) == {old.id: 0, new.id: 2000}
    assert payments_of(session, account_id) == [(old.id, -3000), (None, -3000)]


@PG_ONLY
def test_a_dispute_credit_landing_during_a_success_moves_the_bill_first(session, clock,
                                                                       monkeypatch):
    """A dispute's credit of 10 yuan makes the bill a new version (what v1 owed moves to v2)
    just after the notification read what v1 owed: the success pays v2, and the 10 yuan the
    customer paid beyond it is prepaid balance."""
    acct = factories.account(session, clock)
    old = issued(session, clock, acct, "2026-10", (3000,), date(2026, 11, 25))
    session.commit()
    channel = FakeChannel()
    note = checked_out_success(session, clock, channel, acct.id, old.id)
    account_no = acct.account_no
    _credit_lands_after_the_read(monkeypatch, session, lambda other: LocalBillingSystem(
        other, clock).apply_adjustment(Adjustment("ADJ1", account_no, "2026-10", -1000, "异议")))
    assert service.handle_notification(session, clock, "wechat", note) == \
        service.Outcome.APPLIED
    session.commit()
    v2 = session.scalars(sa.select(Bill).where(Bill.account_id == acct.id,
                                               Bill.period == "2026-10", Bill.version == 2)).one()
    assert ledger.owed_by_bill(session, [old.id, v2.id]) == {old.id: 0, v2.id: 0}
    assert ledger.prepaid_balance(session, acct.id) == 1000


@PG_ONLY
def test_an_allocation_landing_during_a_success_is_not_paid_over(session, clock, two_bills,
                                                                 monkeypatch):
    account_id, old, new = two_bills
    channel = FakeChannel()
    note = checked_out_success(session, clock, channel, account_id, old.id)

    _credit_lands_after_the_read(monkeypatch, session, lambda other: counter_payment_allocated(
        other, clock, account_id))
    assert service.handle_notification(session, clock, "wechat", note) == \
        service.Outcome.APPLIED
    session.commit()
    assert ledger.owed_by_bill(session, [old.id, new.id]) == {old.id: 0, new.id: 2000}


@PG_ONLY
def test_a_success_waits_for_an_allocation_holding_the_account(session, clock, two_bills):
    """While a transaction allocates prepaid credit to the old bill (holding the account
    lock), a notification paying that bill arrives: it waits, then sends its money to the
    balance instead of paying the bill a second time."""
    account_id, old, new = two_bills
    channel = FakeChannel()
    note = checked_out_success(session, clock, channel, account_id, old.id)
    engine = session.get_bind()
    outcomes: list[service.Outcome] = []
    with Session(engine) as allocating:
        assert counter_payment_allocated(allocating, clock, account_id) == 3000
        arriving = threading.Thread(target=lambda: outcomes.append(handled(engine, clock, note)))
        arriving.start()
        arriving.join(timeout=1)
        assert arriving.is_alive()  # waiting for the account
        allocating.commit()
    arriving.join(timeout=10)
    assert outcomes == [service.Outcome.APPLIED]
    assert ledger.owed_by_bill(session, [old.id, new.id]) == {old.id: 0, new.id: 2000}
    assert ledger.prepaid_balance(session, account_id) == 0


def test_a_notification_is_recorded_once_and_applied_once(session, clock, two_bills):
    account_id, old, new = two_bills
    channel = FakeChannel()
    order = order_for(session, clock, account_id)
    checkout(session, clock, channel, order)
    note = Notification("EV1", "TRANSACTION.SUCCESS", channel.pay(order.order_no, 8000),
                        raw={"id": "EV1"})
    assert service.handle_notification(session, clock, "wechat", note) == service.Outcome.APPLIED
    assert service.handle_notification(session, clock, "wechat", note) == \
        service.Outcome.DUPLICATE
    other = Notification("EV2", "REFUND.SUCCESS", None, raw={"id": "EV2"})
    assert service.handle_notification(session, clock, "wechat", other) == service.Outcome.IGNORED
    session.commit()
    events = session.scalars(sa.select(PaymentEvent).order_by(PaymentEvent.id)).all()
    assert [(e.event_id, e.order_no, e.outcome) for e in events] == [
        ("EV1", order.order_no, "applied"), ("EV2", None, "ignored")]
    assert events[0].payload == {"id": "EV1"}
    assert payments_of(session, account_id) == [(old.id, -3000), (new.id, -5000)]
    [posting] = session.scalars(sa.select(OutboxMessage)).all()
    assert posting.payload["bill_periods"] == ["2026-10", "2026-11"]


def test_an_overpaying_notification_pays_other_owed_bills_from_the_balance(session, clock,
                                                                          two_bills):
    account_id, old, new = two_bills
    channel = FakeChannel()
    order = order_for(session, clock, account_id, bill_ids=[old.id], topup_fen=6000)
    notify_twice(session, clock, channel, order, 9000)
    session.commit()
    assert ledger.owed_by_bill(session, [old.id, new.id]) == {old.id: 0, new.id: 0}
    assert ledger.prepaid_balance(session, account_id) == 1000
    assert session.scalar(sa.select(PaymentEvent.outcome)) == "applied"


def test_a_top_up_notification_credits_the_balance_once(session, clock):
    account_id = factories.account(session, clock).id  # nothing owed
    channel = FakeChannel()
    order = order_for(session, clock, account_id, bill_ids=[], topup_fen=2000)
    notify_twice(session, clock, channel, order, 2000)
    session.commit()
    assert payments_of(session, account_id) == [(None, -2000)]
    assert ledger.prepaid_balance(session, account_id) == 2000
    [posting] = session.scalars(sa.select(OutboxMessage)).all()
    assert (posting.payload["amount_fen"], posting.payload["bill_periods"]) == (2000, [])
    assert session.scalar(sa.select(sa.func.count(PaymentEvent.id))) == 1


def test_the_return_page_query_applies_a_success(session, clock, two_bills):
    account_id, _old, _new = two_bills
    channel = FakeChannel()
    order = order_for(session, clock, account_id)
    checkout(session, clock, channel, order)
    assert service.refresh_from_channel(session, clock, channel, order) is None  # not found
    channel.fail_next.append(ChannelUnavailable())
    assert service.refresh_from_channel(session, clock, channel, order) is None
    channel.pay(order.order_no, 8000)
    assert service.refresh_from_channel(session, clock, channel, order) == \
        service.Outcome.APPLIED
    assert order.status == OrderStatus.SUCCEEDED
    assert service.refresh_from_channel(session, clock, channel, order) is None


def paid_order(session: Session, clock: FrozenClock, account_id: int, channel: FakeChannel,
               amount_fen: int = 8000, **order: object) -> PaymentOrder:
    """An order (``order_for``'s choices; all owed bills by default) paid and committed."""
    paid = order_for(session, clock, account_id, **order)  # type: ignore[arg-type]
    checkout(session, clock, channel, paid)
    service.apply_trade(session, clock, "wechat", channel.pay(paid.order_no, amount_fen),
                        "notify")
    session.commit()
    session.refresh(paid)
    return paid


def test_refund_needs_a_second_staff_member_and_a_refundable_amount(session, clock, staff,
                                                                    two_bills):
    account_id, _old, _new = two_bills
    channel = FakeChannel()
    order = paid_order(session, clock, account_id, channel)
    with pytest.raises(service.RefundTooLarge):
        service.request_refund(session, clock, order_no=order.order_no, amount_fen=8001,
                               reason="duplicate", requested_by=staff[0])
    with pytest.raises(service.InvalidAmount):
        service.request_refund(session, clock, order_no=order.order_no, amount_fen=0,
                               reason="duplicate", requested_by=staff[0])
    with pytest.raises(service.NotFound):
        service.request_refund(session, clock, order_no="DFnope", amount_fen=1,
                               reason="duplicate", requested_by=staff[0])
    refund = service.request_refund(session, clock, order_no=order.order_no, amount_fen=5000,
                                    reason="paid twice", requested_by=staff[0])
    with pytest.raises(service.RefundTooLarge):  # 5000 is already taken by the first request
        service.request_refund(session, clock, order_no=order.order_no, amount_fen=3001,
                               reason="again", requested_by=staff[0])
    with pytest.raises(service.SameApprover):
        service.approve_refund(session, clock, refund, approved_by=staff[0])
    service.approve_refund(session, clock, refund, approved_by=staff[1])
    with pytest.raises(service.Conflict):
        service.approve_refund(session, clock, refund, approved_by=staff[2])
    assert (refund.status, refund.approved_by_id) == (RefundStatus.APPROVED, staff[1])
    unpaid = order_for(session, clock, account_id, topup_fen=100)
    with pytest.raises(service.Conflict):
        service.request_refund(session, clock, order_no=unpaid.order_no, amount_fen=1,
                               reason="x", requested_by=staff[0])


def test_refund_retries_reuse_the_refund_number_and_debit_the_ledger_once(session, clock, staff,
                                                                          two_bills):
    account_id, old, new = two_bills
    channel = FakeChannel()
    order = paid_order(session, clock, account_id, channel)
    refund = service.request_refund(session, clock, order_no=order.order_no, amount_fen=8000,
                                    reason="moved out", requested_by=staff[0])
    service.approve_refund(session, clock, refund, approved_by=staff[1])
    session.commit()
    wait = timedelta(minutes=5)
    channel.fail_next.append(ChannelUnavailable("timeout"))
    assert service.send_refund(session, clock, channel, refund, wait) == RefundStatus.PENDING
    assert refund.next_query_at == clock.now() + wait and not refund.accepted
    assert service.send_refund(session, clock, channel, refund, wait) == RefundStatus.PENDING
    assert refund.accepted and refund.channel_refund_no == "CR1"
    assert service.send_refund(session, clock, channel, refund, wait) == RefundStatus.SUCCEEDED
    assert service.send_refund(session, clock, channel, refund, wait) == RefundStatus.SUCCEEDED
    assert [r.refund_no for r in channel.refunds + channel.refund_queries] == [refund.refund_no] * 2
    refunds = session.scalars(sa.select(LedgerEntry).where(
        LedgerEntry.kind == EntryKind.REFUND)).all()
    # the refunded bills are owed again, newest first
    assert [(r.amount_fen, r.bill_id) for r in refunds] == [(5000, new.id), (3000, old.id)]
    assert ledger.owed_by_bill(session, [old.id, new.id]) == {old.id: 3000, new.id: 5000}
    assert ledger.owed_by_account(session, [account_id]) == {account_id: 8000}
    reverse = session.scalars(sa.select(OutboxMessage).where(
        OutboxMessage.topic == "billing.reverse_payment")).one()
    assert reverse.dedup_key == f"reverse:{order.order_no}"  # a full refund
    assert reverse.payload["amount_fen"] == 8000 and reverse.payload["full"] is True


def test_a_refused_refund_fails_and_frees_the_amount(session, clock, staff, two_bills):
    account_id, _old, _new = two_bills
    channel = FakeChannel()
    order = paid_order(session, clock, account_id, channel)
    channel.fail_next.append(ChannelError("NOT_ENOUGH", "balance"))
    refund = service.request_refund(session, clock, order_no=order.order_no, amount_fen=8000,
                                    reason="moved out", requested_by=staff[0])
    service.approve_refund(session, clock, refund, approved_by=staff[1])
    assert service.send_refund(session, clock, channel, refund, timedelta(minutes=5)) == \
        RefundStatus.FAILED
    assert refund.failure_reason == "NOT_ENOUGH"
    assert service.refundable_fen(session, order) == 8000
    assert session.scalar(sa.select(sa.func.count(LedgerEntry.id)).where(
        LedgerEntry.kind == EntryKind.REFUND)) == 0
    channel.refund_state = RefundState.FAILED
    again = service.request_refund(session, clock, order_no=order.order_no, amount_fen=100,
                                   reason="again", requested_by=staff[0])
    service.approve_refund(session, clock, again, approved_by=staff[1])
    assert service.send_refund(session, clock, channel, again, timedelta(minutes=5)) == \
        RefundStatus.FAILED


def test_a_partial_refund_takes_the_prepaid_balance_first_then_the_newest_bill(session, clock,
                                                                              staff, two_bills):
    account_id, old, new = two_bills
    channel = FakeChannel()
    order = order_for(session, clock, account_id, topup_fen=1000)
    checkout(session, clock, channel, order)
    service.apply_trade(session, clock, "wechat", channel.pay(order.order_no, 9000), "notify")
    channel.refund_state = RefundState.SUCCEEDED
    numbers = []
    for amount in (1500, 2000):
        refund = service.request_refund(session, clock, order_no=order.order_no,
                                        amount_fen=amount, reason="overpaid", requested_by=staff[0])
        service.approve_refund(session, clock, refund, approved_by=staff[1])
        assert service.send_refund(session, clock, channel, refund, timedelta(minutes=1)) == \
            RefundStatus.SUCCEEDED
        numbers.append(refund.refund_no)
    # 1000 from the balance, then 500 + 2000 from the newest bill this order paid
    assert ledger.prepaid_balance(session, account_id) == 0
    assert ledger.owed_by_bill(session, [old.id, new.id]) == {old.id: 0, new.id: 2500}
    keys = set(session.scalars(sa.select(OutboxMessage.dedup_key).where(
        OutboxMessage.topic == "billing.reverse_payment")))
    assert keys == {f"reverse:{order.order_no}:{no}" for no in numbers}


def _refund_all(session, clock, staff, channel: FakeChannel, order: PaymentOrder,
                amount_fen: int) -> None:
    channel.refund_state = RefundState.SUCCEEDED
    refund = service.request_refund(session, clock, order_no=order.order_no,
                                    amount_fen=amount_fen, reason="moved out",
                                    requested_by=staff[0])
    service.approve_refund(session, clock, refund, approved_by=staff[1])
    assert service.send_refund(session, clock, channel, refund, timedelta(minutes=5)) == \
        RefundStatus.SUCCEEDED


def test_refunding_a_top_up_the_next_bill_consumed_shows_that_bill_owed_again(session, clock,
                                                                              staff):
    acct = factories.account(session, clock)
    channel = FakeChannel()
    top_up = paid_order(session, clock, acct.id, channel, 5000, bill_ids=[], topup_fen=5000)
    bill = issued(session, clock, acct, "2026-11", (5000,), date(2026, 12, 25))  # paid by it
    session.commit()
    assert ledger.owed_by_bill(session, [bill.id]) == {bill.id: 0}
    _refund_all(session, clock, staff, channel, top_up, 5000)
    # the customer has the money back and owes the bill again: reminders and late fees see it
    assert [(b.id, owed) for b, owed in ledger.owed_bills(session, acct.id)] == [(bill.id, 5000)]
    assert ledger.prepaid_balance(session, acct.id) == 0
    assert ledger.owed_by_account(session, [acct.id]) == {acct.id: 5000}


def test_refunding_an_overpayment_the_balance_spent_on_another_bill_unpays_both(
        session, clock, staff, two_bills):
    account_id, old, new = two_bills
    channel = FakeChannel()
    order = paid_order(session, clock, account_id, channel, 8000, bill_ids=[old.id],
                       topup_fen=5000)
    assert ledger.owed_by_bill(session, [old.id, new.id]) == {old.id: 0, new.id: 0}
    _refund_all(session, clock, staff, channel, order, 8000)
    assert ledger.owed_by_bill(session, [old.id, new.id]) == {old.id: 3000, new.id: 5000}
    assert ledger.prepaid_balance(session, account_id) == 0

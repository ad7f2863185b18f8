"""The reminder ladder with the injected clock: each step once per bill, quiet hours respected,
a payment mid-ladder cancels what is queued, holds pause it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from notifications import policy
from notifications.config import ReminderPolicy
from portal import receipts
from portal.bills import holds
from portal.bills.models import Bill
from portal.kernel.outbox import OutboxMessage, OutboxStatus
from portal.ledger import service as ledger
from portal.ledger.models import EntryKind
from tests.notifications.conftest import attempts, dispatch

ZONE = ZoneInfo("Asia/Shanghai")
POLICY = ReminderPolicy()


def local(y: int, m: int, d: int, hour: int, minute: int = 0) -> datetime:
    return datetime(y, m, d, hour, minute, tzinfo=ZONE).astimezone(UTC)


def _sweep(session, clock) -> int:
    written = policy.sweep(session, clock, POLICY, ZONE)
    session.commit()
    return written


def _sent_events(recorders) -> list[str]:
    return [m.event for r in recorders.values() for m in r.sent]


def test_quiet_hours_end_at_eight_the_next_morning() -> None:
    assert POLICY.not_before(local(2026, 12, 22, 22), ZONE) == local(2026, 12, 23, 8)
    assert POLICY.not_before(local(2026, 12, 23, 7, 59), ZONE) == local(2026, 12, 23, 8)
    assert POLICY.not_before(local(2026, 12, 23, 8), ZONE) == local(2026, 12, 23, 8)
    assert POLICY.not_before(local(2026, 12, 23, 20, 59), ZONE) == local(2026, 12, 23, 20, 59)


def test_the_ladder_sends_each_step_once_and_waits_out_the_night(
        app, session, clock, household, notifiers) -> None:
    _customer, _account, _bill = household
    clock.set(local(2026, 12, 3, 10))
    assert _sweep(session, clock) == 1  # bill issued
    assert _sweep(session, clock) == 0  # the same step never twice
    assert dispatch(app, session, clock) == 3  # notify + wechat + sms rows
    # the step's channels are WeChat then SMS; without a subscribe consent WeChat falls back to
    # the first default channel the customer is not already told on (email)
    assert [(m.channel, m.address) for r in notifiers.values() for m in r.sent] == [
        ("sms", "13900000001"), ("email", "li@example.cn")]
    assert attempts(session) == [("bill_issued", "wechat", "skipped"),
                                 ("bill_issued", "email", "sent"), ("bill_issued", "sms", "sent")]
    clock.set(local(2026, 12, 22, 22))  # three days before the due date, at night
    assert _sweep(session, clock) == 1
    dispatch(app, session, clock)
    assert "reminder_due_soon" not in _sent_events(notifiers)
    clock.set(local(2026, 12, 23, 7, 59))
    dispatch(app, session, clock)
    assert "reminder_due_soon" not in _sent_events(notifiers)
    clock.set(local(2026, 12, 23, 8))
    dispatch(app, session, clock)
    assert "reminder_due_soon" in _sent_events(notifiers)
    assert _sweep(session, clock) == 0
    clock.set(local(2026, 12, 25, 9))
    assert _sweep(session, clock) == 1
    dispatch(app, session, clock)
    sms = [m for m in notifiers["sms"].sent if m.event == "reminder_due_today"]
    assert "170.48" in sms[0].body and "2026-12-25" in sms[0].body and "今日" in sms[0].body


def test_a_missed_day_is_caught_up_with_the_latest_step_only(session, clock, household) -> None:
    clock.set(local(2027, 1, 12, 10))  # +18: only the final notice is due
    _sweep(session, clock)
    keys = set(session.scalars(sa.select(OutboxMessage.dedup_key)))
    _customer, _account, bill = household
    assert keys == {f"notify:reminder_final_notice:bill:{bill.id}"}


def test_a_payment_after_the_sweep_cancels_the_queued_reminder(
        app, session, clock, household, notifiers) -> None:
    _customer, account, bill = household
    clock.set(local(2027, 1, 2, 21, 30))  # +8, in quiet hours: queued for the morning
    assert _sweep(session, clock) == 1
    ledger.post(session, clock, account_id=account.id, bill_id=bill.id, kind=EntryKind.PAYMENT,
                amount_fen=-bill.total_fen, ref="pay:test", effective_on=date(2027, 1, 2))
    session.commit()
    clock.set(local(2027, 1, 3, 8))
    dispatch(app, session, clock)
    assert _sent_events(notifiers) == []
    assert attempts(session) == [("reminder_overdue", "none", "cancelled")]
    clock.set(local(2027, 1, 10, 10))
    assert _sweep(session, clock) == 0  # paid: no final notice either


def test_a_payment_after_the_fan_out_cancels_each_delivery(
        app, session, clock, household, notifiers) -> None:
    _customer, account, bill = household
    clock.set(local(2027, 1, 2, 10))
    _sweep(session, clock)
    handlers = dict(app.extensions["dianfei.outbox_handlers"])
    from portal.kernel import outbox
    outbox.dispatch(session, clock, {"notify": handlers["notify"]}, limit=1)
    ledger.post(session, clock, account_id=account.id, bill_id=bill.id, kind=EntryKind.PAYMENT,
                amount_fen=-bill.total_fen, ref="pay:test", effective_on=date(2027, 1, 2))
    session.commit()
    dispatch(app, session, clock)
    assert _sent_events(notifiers) == []
    assert {a[2] for a in attempts(session)} == {"cancelled"}
    assert set(session.scalars(sa.select(OutboxMessage.status))) == {OutboxStatus.SENT}


@pytest.fixture
def stub_hold(monkeypatch):
    monkeypatch.setattr(holds, "_sources", {})
    covered: set[int] = set()

    @holds.register("stub")
    def stub() -> sa.Select:
        return sa.select(Bill.id.label("bill_id"), Bill.total_fen.label("held_fen")).where(
            Bill.id.in_(covered or {0}))

    return covered


def test_a_hold_covering_the_bill_pauses_the_ladder(session, clock, household, stub_hold) -> None:
    _customer, _account, bill = household
    stub_hold.add(bill.id)
    clock.set(local(2027, 1, 2, 10))
    assert _sweep(session, clock) == 0
    stub_hold.clear()
    assert _sweep(session, clock) == 1


def test_the_ladder_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="in order"):
        ReminderPolicy(ladder=[{"event": "reminder_overdue", "days": 7},
                               {"event": "reminder_due_today", "days": 0}])
    with pytest.raises(ValueError, match="unknown"):
        ReminderPolicy(ladder=[{"event": "reminder_whenever", "days": 7}])
    with pytest.raises(ValueError):
        ReminderPolicy(final_notice_warning_days=3)


def test_windows_run_until_the_next_step() -> None:
    today = date(2027, 1, 1)
    windows = {e: (first, last) for e, first, last in policy.step_windows(POLICY, today)}
    assert windows["reminder_overdue"] == (today - timedelta(days=14), today - timedelta(days=7))
    assert windows["reminder_due_soon"] == (today + timedelta(days=1), today + timedelta(days=3))


def test_receipts_are_derived_from_recent_successes_once(app, session, clock, household,
                                                         notifiers) -> None:
    from payments.channels.base import Scene
    from payments.models import PaymentOrder, Refund
    from payments.states import OrderStatus, RefundStatus
    from portal.backoffice.models import StaffMember, StaffRole

    customer, account, _bill = household
    staff = [StaffMember(username=f"s{n}", display_name="s", password_hash="x",
                         role=StaffRole.COLLECTOR, created_at=clock.now()) for n in (1, 2)]
    session.add_all(staff)

    def order(no: str, status: OrderStatus, paid_at) -> PaymentOrder:
        row = PaymentOrder(order_no=no, account_id=account.id, customer_id=customer.id,
                           channel="wechat", scene=next(iter(Scene)), amount_fen=17048,
                           status=status, expires_at=clock.now(), paid_at=paid_at,
                           created_at=clock.now(), updated_at=clock.now())
        session.add(row)
        return row

    paid = order("P1", OrderStatus.SUCCEEDED, clock.now())
    order("P0", OrderStatus.SUCCEEDED, clock.now() - timedelta(days=2))  # before the lookback
    order("P2", OrderStatus.PENDING, None)
    session.flush()
    session.add(Refund(refund_no="R1", order_id=paid.id, amount_fen=5000,
                       status=RefundStatus.SUCCEEDED, reason="r", requested_by_id=staff[0].id,
                       approved_by_id=staff[1].id, requested_at=clock.now(),
                       finished_at=clock.now(), updated_at=clock.now()))
    session.commit()
    assert receipts.sweep_receipts(session, clock, timedelta(hours=24)) == 2
    assert receipts.sweep_receipts(session, clock, timedelta(hours=24)) == 0
    session.commit()
    dispatch(app, session, clock)
    bodies = [m.body for m in notifiers["sms"].sent]
    assert bodies == ["户号9900000001：已收到电费170.48元（订单P1），谢谢。",
                      "户号9900000001：订单P1已退款50.00元。"]


def test_a_reminder_fanned_out_at_night_waits_for_the_morning(
        app, session, clock, household, notifiers) -> None:
    _customer, _account, bill = household
    from portal.kernel import outbox

    clock.set(local(2027, 1, 2, 23))  # e.g. the fan-out of a row retried into the night
    outbox.enqueue(session, clock, "notify", {"customer_id": None, "account_id": bill.account_id,
                                              "event": "reminder_overdue", "bill_id": bill.id,
                                              "params": {}}, "notify:reminder_overdue:test")
    session.commit()
    dispatch(app, session, clock)
    assert _sent_events(notifiers) == []
    clock.set(local(2027, 1, 3, 8))
    dispatch(app, session, clock)
    # by SMS, and by email instead of WeChat (no subscribe consent)
    assert sorted((m.channel, m.event) for r in notifiers.values() for m in r.sent) == [
        ("email", "reminder_overdue"), ("sms", "reminder_overdue")]


def test_a_reminder_retried_into_the_night_waits_for_the_morning(
        app, session, clock, household, notifiers) -> None:
    """An SMS gateway busy at 20:59 would have the retry sent at 21:00, in quiet hours: it
    waits till 08:00, and waiting does not use up an attempt."""
    from notifications.channels.base import DeliveryResult
    from portal.kernel import outbox

    _customer, _account, bill = household
    clock.set(local(2027, 1, 2, 20, 59))
    notifiers["sms"].script.append(DeliveryResult.transient("HTTP 503"))
    outbox.enqueue(session, clock, "notify", {"customer_id": None, "account_id": bill.account_id,
                                              "event": "reminder_overdue", "bill_id": bill.id,
                                              "params": {}}, "notify:reminder_overdue:test")
    session.commit()
    dispatch(app, session, clock)
    assert [m.channel for m in notifiers["email"].sent] == ["email"]  # email went at once
    assert notifiers["sms"].sent == []
    clock.set(local(2027, 1, 2, 21, 0))  # the SMS retry is due, in quiet hours
    dispatch(app, session, clock)
    assert notifiers["sms"].sent == []
    [row] = session.scalars(sa.select(OutboxMessage).where(
        OutboxMessage.topic == "notify.deliver", OutboxMessage.status == OutboxStatus.PENDING))
    assert (row.available_at.astimezone(ZONE).hour, row.attempts) == (8, 1)
    clock.set(local(2027, 1, 3, 8))
    dispatch(app, session, clock)
    assert [m.event for m in notifiers["sms"].sent] == ["reminder_overdue"]

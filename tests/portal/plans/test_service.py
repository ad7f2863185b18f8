"""Payment plans: the split rule and due dates, eligibility, the state machine with the injected
clock (grace period, default, completion), the supervisor threshold, holds and installment
orders paid through the normal payment path."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from notifications import staff as staff_messages
from payments import service as payments
from payments.channels.base import Scene, Trade, TradeState
from portal.accounts.models import AccountLink, CustomerClass
from portal.accounts.service import register
from portal.backoffice import service as staff_service
from portal.backoffice.models import StaffRole
from portal.bills import holds
from portal.bills import service as bills
from portal.kernel.audit import AuditEntry
from portal.kernel.errors import Conflict, NotFound
from portal.kernel.outbox import OutboxMessage
from portal.ledger import service as ledger
from portal.plans import service
from portal.plans.models import PLAN_MACHINE, PaymentPlan, PlanStatus
from portal.plans.policy import PlanPolicy
from tests import factories

ZONE = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 12, 3)  # the test clock's local date
POLICY = PlanPolicy(min_total_fen=1000, approval_threshold_fen=50_000, grace_days=10)


# --- the split rule and the due dates --------------------------------------------------------

@given(total=st.integers(min_value=12, max_value=10**12), count=st.integers(2, 12))
def test_installments_are_integer_fen_summing_exactly_with_the_remainder_last(total, count):
    parts = service.split_installments(total, count)
    assert len(parts) == count and sum(parts) == total
    assert all(isinstance(p, int) for p in parts)
    assert parts[:-1] == [total // count] * (count - 1)
    assert 0 <= parts[-1] - parts[0] < count


def test_split_examples_and_refusals():
    assert service.split_installments(10000, 3) == [3333, 3333, 3334]
    assert service.split_installments(12, 12) == [1] * 12
    with pytest.raises(ValueError):
        service.split_installments(11, 12)
    with pytest.raises(TypeError):
        service.split_installments(100.0, 2)  # type: ignore[arg-type]


@given(first=st.dates(date(2020, 1, 1), date(2040, 12, 31)), count=st.integers(2, 12))
def test_due_dates_are_monthly_on_the_first_dates_day_or_the_months_last(first, count):
    dates = service.due_dates(first, count)
    assert dates[0] == first and len(dates) == count
    for n, due in enumerate(dates):
        months = first.year * 12 + first.month - 1 + n
        year, month0 = divmod(months, 12)
        assert (due.year, due.month) == (year, month0 + 1)
        assert due.day == first.day or (due.day < first.day
                                         and (due + timedelta(days=1)).day == 1)


def test_month_end_rule_counts_from_the_first_date():
    assert service.due_dates(date(2027, 1, 31), 4) == [
        date(2027, 1, 31), date(2027, 2, 28), date(2027, 3, 31), date(2027, 4, 30)]
    assert service.due_dates(date(2027, 12, 15), 2) == [date(2027, 12, 15), date(2028, 1, 15)]


# --- fixtures --------------------------------------------------------------------------------

def _business(session, clock, owed=(30000, 20000), account_no="9900000001"):
    acct = factories.account(session, clock, account_no=account_no,
                             meter_no=f"{account_no}99")
    acct.customer_class = CustomerClass.BUSINESS
    made = []
    for n, amount in enumerate(owed):
        bill = factories.bill(session, clock, acct, period=f"2026-{9 + n:02d}",
                              amounts=(amount,), due=date(2026, 10 + n, 25))
        bills.issue(session, clock, bill)
        made.append(bill)
    customer = register(session, clock, f"1390000{account_no[-4:]}", "correct horse 1")
    session.add(AccountLink(customer_id=customer.id, account_id=acct.id, created_at=clock.now()))
    session.flush()
    return acct, made, customer


def _staff(session, clock, role=StaffRole.COLLECTOR, name="collector"):
    from portal.accounts.models import District

    district = session.scalar(sa.select(District).limit(1))
    return staff_service.create_staff(session, clock, username=name, display_name=name,
                                      password="demo password 1", role=role,
                                      district_ids=[district.id])


def _request(session, clock, acct, made, customer, **kw):
    args = {"installments": 3, "first_due_on": date(2027, 1, 10), "reason": "cash flow",
            "hardship": False} | kw
    return service.request_plan(session, clock, POLICY, ZONE, customer_id=customer.id,
                                account=acct, bill_ids=[b.id for b in made], **args)


def _active(session, clock):
    acct, made, customer = _business(session, clock)
    plan = _request(session, clock, acct, made, customer)
    collector = _staff(session, clock)
    service.propose(session, clock, POLICY, ZONE, collector, plan, installments=3,
                    first_due_on=date(2027, 1, 10), note="")
    service.accept(session, clock, ZONE, customer.id, plan)
    return acct, made, customer, plan, collector


# --- eligibility -----------------------------------------------------------------------------

def test_a_business_requests_a_plan_for_its_owed_bills(session, clock):
    acct, made, customer = _business(session, clock)
    plan = _request(session, clock, acct, made, customer)
    assert plan.status == PlanStatus.REQUESTED and plan.total_fen == 50000
    assert [b.bill_id for b in plan.bills] == [made[0].id, made[1].id]
    assert [i.amount_fen for i in service.plan_schedule(plan)] == [16666, 16666, 16668]
    entry = session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "plan.request"))
    assert entry.customer_id == customer.id and entry.amount_fen == 50000


@pytest.mark.parametrize(("change", "error"), [
    ({"installments": 1}, service.BadInstallmentCount),
    ({"installments": 13}, service.BadInstallmentCount),
    ({"first_due_on": TODAY}, service.BadFirstDueDate),
    ({"first_due_on": TODAY + timedelta(days=61)}, service.BadFirstDueDate),
])
def test_terms_out_of_bounds_are_refused(session, clock, change, error):
    acct, made, customer = _business(session, clock)
    with pytest.raises(error):
        _request(session, clock, acct, made, customer, **change)
    assert session.scalar(sa.select(sa.func.count()).select_from(PaymentPlan)) == 0


def test_bills_must_be_owed_and_not_already_covered(session, clock):
    acct, made, customer = _business(session, clock)
    with pytest.raises(service.NoBills):
        service.request_plan(session, clock, POLICY, ZONE, customer_id=customer.id,
                             account=acct, bill_ids=[], installments=2,
                             first_due_on=date(2027, 1, 1), reason="x", hardship=False)
    _request(session, clock, acct, made[:1], customer)
    with pytest.raises(service.BillAlreadyCovered):
        _request(session, clock, acct, made, customer)
    ledger.post(session, clock, account_id=acct.id, bill_id=made[1].id,
                kind=ledger.EntryKind.PAYMENT, amount_fen=-20000, ref="paid", effective_on=TODAY)
    with pytest.raises(service.BillNotOwed):
        _request(session, clock, acct, made[1:], customer)
    assert service.eligible_bills(session, acct.id) == []


def test_amount_bounds_and_residents_need_hardship(session, clock):
    acct, made, customer = _business(session, clock, owed=(500,))
    with pytest.raises(service.TotalTooSmall):
        _request(session, clock, acct, made, customer)
    acct2, made2, customer2 = _business(session, clock, owed=(60_000_000,),
                                        account_no="9900000002")
    with pytest.raises(service.TotalTooLarge):
        _request(session, clock, acct2, made2, customer2)
    acct3, made3, customer3 = _business(session, clock, account_no="9900000003")
    acct3.customer_class = CustomerClass.RESIDENTIAL
    with pytest.raises(service.HardshipRequired):
        _request(session, clock, acct3, made3, customer3)
    assert _request(session, clock, acct3, made3, customer3, hardship=True).hardship


def test_the_supporting_file_is_stored_only_for_a_request_that_is_made(session, clock,
                                                                        tmp_path):
    from portal.kernel.uploads import FileStore, Upload, check
    from tests.portal.disputes.helpers import PDF_BYTES

    store = FileStore(tmp_path / "plans")
    proof = check(Upload("../证明.pdf", PDF_BYTES), service.upload_rules(POLICY))
    acct, made, customer = _business(session, clock)
    with pytest.raises(service.BadInstallmentCount):
        _request(session, clock, acct, made, customer, installments=13, attachment=proof,
                 store=store)
    assert not store.root.exists()  # a refused request leaves no file behind
    plan = _request(session, clock, acct, made, customer, attachment=proof, store=store)
    assert plan.attachment_name == "证明.pdf" and plan.attachment_type == "application/pdf"
    assert store.read(plan.attachment_key) == PDF_BYTES
    assert service.attachment_of(plan)[0] == plan.attachment_key


def test_a_plan_defaulted_in_the_last_12_months_blocks_a_new_request(session, clock):
    acct, _made, customer, _plan, _c = _active(session, clock)
    clock.set(clock.now() + timedelta(days=60))  # 2027-01-10 + 10 days grace has passed
    assert service.sweep(session, clock, POLICY, ZONE).defaulted == 1
    more = factories.bill(session, clock, acct, period="2027-01", amounts=(40000,),
                          due=date(2027, 2, 25))
    bills.issue(session, clock, more)
    with pytest.raises(service.RecentDefault):
        _request(session, clock, acct, [more], customer, first_due_on=date(2027, 3, 1))
    clock.set(clock.now() + timedelta(days=366))
    later = _request(session, clock, acct, [more], customer, first_due_on=date(2028, 3, 1))
    assert later.status == PlanStatus.REQUESTED


# --- staff steps and the threshold -----------------------------------------------------------

def test_a_collectors_terms_at_or_under_the_threshold_go_to_the_customer(session, clock):
    acct, made, customer = _business(session, clock, owed=(30000, 20000))
    plan = _request(session, clock, acct, made, customer)
    collector = _staff(session, clock)
    service.propose(session, clock, POLICY, ZONE, collector, plan, installments=2,
                    first_due_on=date(2027, 1, 5), note="two months is enough")
    assert plan.status == PlanStatus.PROPOSED and plan.proposed_by_id == collector.id
    message = session.scalar(sa.select(OutboxMessage).where(OutboxMessage.topic == "notify"))
    assert message.payload["event"] == "plan_proposed"  # the terms changed
    assert message.payload["params"]["total_yuan"] == "500.00"
    assert session.scalar(sa.select(AuditEntry.staff_id)
                          .where(AuditEntry.action == "plan.propose")) == collector.id


def test_above_the_threshold_a_supervisor_approves(session, clock):
    acct, made, customer = _business(session, clock, owed=(40000, 30000))
    plan = _request(session, clock, acct, made, customer)
    collector = _staff(session, clock)
    supervisor = _staff(session, clock, StaffRole.SUPERVISOR, "supervisor")
    service.propose(session, clock, POLICY, ZONE, collector, plan, installments=3,
                    first_due_on=date(2027, 1, 10), note="")
    assert plan.status == PlanStatus.AWAITING_APPROVAL
    with pytest.raises(service.NeedsSupervisor):
        service.decline(session, clock, collector, plan, "no")
    service.approve(session, clock, supervisor, plan, "checked the books")
    assert plan.status == PlanStatus.PROPOSED and plan.approved_by_id == supervisor.id
    event = session.scalar(sa.select(OutboxMessage.payload).where(OutboxMessage.topic == "notify"))
    assert event["event"] == "plan_approved"  # the terms asked for
    with pytest.raises(Conflict):
        service.approve(session, clock, supervisor, plan)


def test_a_supervisors_own_terms_need_no_second_approval(session, clock):
    acct, made, customer = _business(session, clock, owed=(40000, 30000))
    plan = _request(session, clock, acct, made, customer)
    supervisor = _staff(session, clock, StaffRole.SUPERVISOR, "supervisor")
    service.propose(session, clock, POLICY, ZONE, supervisor, plan, installments=3,
                    first_due_on=date(2027, 1, 10), note="")
    assert plan.status == PlanStatus.PROPOSED and plan.approved_by_id == supervisor.id


def test_decline_records_who_and_why_and_tells_the_customer(session, clock):
    acct, made, customer = _business(session, clock)
    plan = _request(session, clock, acct, made, customer)
    collector = _staff(session, clock)
    service.decline(session, clock, collector, plan, "bills are disputed")
    assert plan.status == PlanStatus.DECLINED and plan.declined_by_id == collector.id
    assert plan.decline_reason == "bills are disputed"
    assert session.scalar(sa.select(OutboxMessage.payload))["event"] == "plan_declined"
    with pytest.raises(Conflict):
        service.decline(session, clock, collector, plan, "again")
    # declined bills may be asked for again
    assert _request(session, clock, acct, made, customer).status == PlanStatus.REQUESTED


# --- the customer's steps, holds, installments -----------------------------------------------

def test_accepting_writes_the_installments_and_holds_the_bills(session, clock):
    _acct, made, _customer, plan, _c = _active(session, clock)
    assert plan.status == PlanStatus.ACTIVE
    assert [(i.seq, i.amount_fen, i.due_on) for i in plan.installments] == [
        (1, 16666, date(2027, 1, 10)), (2, 16666, date(2027, 2, 10)),
        (3, 16668, date(2027, 3, 10))]
    held = holds.held_by_bill()
    assert dict(session.execute(sa.select(held.c.bill_id, held.c.held_fen)).all()) == {
        made[0].id: 30000, made[1].id: 20000}


def test_terms_whose_first_due_date_passed_cannot_be_accepted(session, clock):
    acct, made, customer = _business(session, clock)
    plan = _request(session, clock, acct, made, customer)
    service.propose(session, clock, POLICY, ZONE, _staff(session, clock), plan, installments=3,
                    first_due_on=date(2026, 12, 10), note="")
    clock.advance(timedelta(days=7))
    with pytest.raises(service.TermsExpired):
        service.accept(session, clock, ZONE, customer.id, plan)
    service.cancel(session, clock, customer.id, plan)
    assert plan.status == PlanStatus.CANCELLED


def _pay(session, clock, plan, customer, seq):
    order = service.open_installment_order(
        session, clock, customer.id, plan, seq, channel="wechat", scene=Scene.DESKTOP,
        lifetime=timedelta(minutes=30), first_query_after=timedelta(minutes=1))
    payments.apply_trade(session, clock, "wechat", Trade(order.order_no, TradeState.SUCCEEDED,
                                                         order.amount_fen,
                                                         channel_trade_no=f"T{seq}"), "notify")
    return order


def test_installments_are_paid_through_orders_against_the_oldest_bill_first(session, clock):
    _acct, made, customer, plan, _c = _active(session, clock)
    with pytest.raises(service.NotNextInstallment):
        service.open_installment_order(session, clock, customer.id, plan, 2, channel="wechat",
                                       scene=Scene.DESKTOP, lifetime=timedelta(minutes=30),
                                       first_query_after=timedelta(minutes=1))
    order = _pay(session, clock, plan, customer, 1)
    assert order.amount_fen == 16666 and [(b.bill_id, b.amount_fen) for b in order.bills] == [
        (made[0].id, 16666)]
    assert ledger.owed_by_bill(session, [made[0].id, made[1].id]) == {
        made[0].id: 30000 - 16666, made[1].id: 20000}
    service.settle(session, clock, [plan.id])
    session.refresh(plan)
    assert plan.installments[0].paid_at is not None
    assert plan.installments[0].order_id == order.id
    second = _pay(session, clock, plan, customer, 2)
    assert [(b.bill_id, b.amount_fen) for b in second.bills] == [
        (made[0].id, 30000 - 16666), (made[1].id, 16666 * 2 - 30000)]
    _pay(session, clock, plan, customer, 3)
    assert service.settle(session, clock) == 1
    session.refresh(plan)
    assert plan.status == PlanStatus.COMPLETED
    assert ledger.owed_by_bill(session, [b.id for b in made]) == {made[0].id: 0, made[1].id: 0}
    held = holds.held_by_bill()
    assert session.execute(sa.select(held.c.bill_id)).all() == []


def test_a_missed_installment_defaults_after_the_grace_period(session, clock):
    _acct, _made, customer, plan, collector = _active(session, clock)
    clock.set(clock.now().replace(year=2027, month=1, day=20))  # 01-10 + 10 days of grace
    assert service.sweep(session, clock, POLICY, ZONE).defaulted == 0
    session.refresh(plan)
    assert plan.status == PlanStatus.ACTIVE
    clock.set(clock.now().replace(year=2027, month=1, day=21))
    report = service.sweep(session, clock, POLICY, ZONE)
    assert report.defaulted == 1
    session.refresh(plan)
    assert plan.status == PlanStatus.DEFAULTED and plan.defaulted_at == clock.now()
    messages = {m.topic: m.payload for m in session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.dedup_key.like("%defaulted%")))}
    assert messages["notify"]["event"] == "plan_defaulted"
    assert messages["notify"]["customer_id"] == customer.id
    assert messages["notify_staff"] == {"staff_id": collector.id, "event": "plan_defaulted",
                                        "params": {"plan_id": plan.id, "account_no": "9900000001",
                                                   "total_yuan": "500.00"}}
    held = holds.held_by_bill()
    assert session.execute(sa.select(held.c.bill_id)).all() == []  # back on the normal ladder
    assert service.sweep(session, clock, POLICY, ZONE).defaulted == 0  # twice changes nothing
    inbox = staff_messages.inbox(session, collector.id)  # the back office shows it, once
    assert [(m.event, m.params["plan_id"]) for m in inbox] == [("plan_defaulted", plan.id)]
    assert session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)
                          .where(AuditEntry.action == "plan.default")) == 1


def test_a_paid_installment_keeps_the_plan_in_good_standing(session, clock):
    _acct, _made, customer, plan, _c = _active(session, clock)
    _pay(session, clock, plan, customer, 1)
    clock.set(clock.now().replace(year=2027, month=2, day=15))
    assert service.sweep(session, clock, POLICY, ZONE).defaulted == 0
    session.refresh(plan)
    assert plan.status == PlanStatus.ACTIVE and plan.installments[0].paid_at is not None


def test_a_second_paid_order_for_an_installment_counts_for_the_next_one(session, clock):
    _acct, made, customer, plan, _c = _active(session, clock)
    orders = [service.open_installment_order(
        session, clock, customer.id, plan, 1, channel="wechat", scene=Scene.DESKTOP,
        lifetime=timedelta(minutes=30), first_query_after=timedelta(minutes=1))
        for _ in range(2)]
    for n, order in enumerate(orders):
        assert payments.apply_trade(session, clock, "wechat", Trade(
            order.order_no, TradeState.SUCCEEDED, order.amount_fen, channel_trade_no=f"T{n}"),
            "notify") == payments.Outcome.APPLIED
    assert sum(ledger.owed_by_bill(session, [b.id for b in made]).values()) == 50000 - 2 * 16666
    clock.set(clock.now().replace(year=2027, month=2, day=21))
    service.sweep(session, clock, POLICY, ZONE)
    session.refresh(plan)
    assert plan.status == PlanStatus.ACTIVE  # fails today: DEFAULTED
    assert [i.paid_at is not None for i in plan.installments][:2] == [True, True]


def _open(session, clock, plan, customer, seq):
    return service.open_installment_order(
        session, clock, customer.id, plan, seq, channel="wechat", scene=Scene.DESKTOP,
        lifetime=timedelta(minutes=30), first_query_after=timedelta(minutes=1))


def _succeed(session, clock, order):
    return payments.apply_trade(session, clock, "wechat", Trade(
        order.order_no, TradeState.SUCCEEDED, order.amount_fen,
        channel_trade_no=f"T{order.id}"), "notify")


def test_a_second_order_paying_exactly_through_installment_2_pays_it(session, clock):
    _acct, made, customer, plan, _c = _active(session, clock)
    first, second = _open(session, clock, plan, customer, 1), _open(session, clock, plan,
                                                                    customer, 1)
    assert _succeed(session, clock, first) == payments.Outcome.APPLIED
    service.settle(session, clock, [plan.id])
    session.refresh(plan)
    assert [(i.order_id, i.paid_at) for i in plan.installments] == [
        (first.id, clock.now()), (None, None), (None, None)]
    clock.advance(timedelta(days=1))  # the abandoned QR code is paid the next day
    assert _succeed(session, clock, second) == payments.Outcome.APPLIED
    assert service.settle(session, clock, [plan.id]) == 0
    session.refresh(plan)
    recorded = [(i.order_id, i.paid_at) for i in plan.installments]
    assert recorded == [(first.id, clock.now() - timedelta(days=1)), (second.id, clock.now()),
                        (None, None)]
    # the same notification again, and settling again, change nothing
    assert _succeed(session, clock, second) == payments.Outcome.DUPLICATE
    clock.advance(timedelta(hours=1))
    assert service.settle(session, clock) == 0
    session.refresh(plan)
    assert [(i.order_id, i.paid_at) for i in plan.installments] == recorded
    with pytest.raises(service.NotNextInstallment):
        _open(session, clock, plan, customer, 2)
    third = _open(session, clock, plan, customer, 3)
    assert third.amount_fen == 16668
    _succeed(session, clock, third)
    assert service.settle(session, clock) == 1
    session.refresh(plan)
    assert plan.status == PlanStatus.COMPLETED
    assert [i.order_id for i in plan.installments] == [first.id, second.id, third.id]
    assert ledger.owed_by_bill(session, [b.id for b in made]) == {made[0].id: 0, made[1].id: 0}
    assert session.scalar(sa.select(AuditEntry.details).where(
        AuditEntry.action == "plan.complete")) == {"all_installments_paid": True}


def test_a_partial_overpayment_does_not_pay_the_next_installment(session, clock):
    _acct, made, customer, plan, _c = _active(session, clock)
    _succeed(session, clock, _open(session, clock, plan, customer, 1))
    for order in [_open(session, clock, plan, customer, 2) for _ in range(2)]:
        _succeed(session, clock, order)
    # 3 x 16666 = 49998 fen paid: installment 3 (16668, through it 50000) is 2 fen short
    assert service.settle(session, clock, [plan.id]) == 0
    session.refresh(plan)
    assert [i.paid_at is not None for i in plan.installments] == [True, True, False]
    assert sum(ledger.owed_by_bill(session, [b.id for b in made]).values()) == 2
    assert plan.status == PlanStatus.ACTIVE and service.next_installment(plan).seq == 3
    last = _open(session, clock, plan, customer, 3)
    assert last.amount_fen == 2  # what the bills still owe
    _succeed(session, clock, last)
    assert service.settle(session, clock, [plan.id]) == 1
    session.refresh(plan)
    assert plan.status == PlanStatus.COMPLETED
    assert [i.paid_at is not None for i in plan.installments] == [True, True, True]


def test_what_was_refunded_of_an_order_does_not_count(session, clock):
    from payments.channels.base import RefundState
    from payments.states import RefundStatus
    from tests.payments.fakes import FakeChannel

    _acct, made, customer, plan, _c = _active(session, clock)
    orders = [_open(session, clock, plan, customer, 1) for _ in range(2)]
    for order in orders:
        _succeed(session, clock, order)
    asker, approver = _staff(session, clock, name="asker"), _staff(session, clock, name="okay")
    refund = payments.request_refund(session, clock, order_no=orders[1].order_no,
                                     amount_fen=10000, reason="paid twice",
                                     requested_by=asker.id)
    payments.approve_refund(session, clock, refund, approved_by=approver.id)
    assert payments.send_refund(session, clock, FakeChannel(refund_state=RefundState.SUCCEEDED),
                                refund, timedelta(minutes=5)) == RefundStatus.SUCCEEDED
    assert sum(ledger.owed_by_bill(session, [b.id for b in made]).values()) == \
        50000 - 2 * 16666 + 10000
    # 16666 + 6666 paid: installment 2 is not, and defaults after its grace period
    clock.set(clock.now().replace(year=2027, month=2, day=21))
    assert service.sweep(session, clock, POLICY, ZONE).defaulted == 1
    session.refresh(plan)
    assert plan.status == PlanStatus.DEFAULTED
    assert [i.paid_at is not None for i in plan.installments] == [True, False, False]


@given(amounts=st.lists(st.integers(1, 10**6), min_size=2, max_size=12),
       paid=st.lists(st.integers(0, 10**6), max_size=20))
def test_installments_are_paid_in_sequence_by_the_running_total(amounts, paid):
    start = datetime(2027, 1, 1, tzinfo=UTC)
    payments_made = [service.PlanPayment(n, start + timedelta(minutes=n), fen)
                     for n, fen in enumerate(paid)]
    result = service.installments_paid(amounts, payments_made)
    paid_count = sum(p is not None for p in result)
    assert all(p is not None for p in result[:paid_count])  # a prefix, in sequence
    assert sum(amounts[:paid_count]) <= sum(paid)
    assert paid_count == len(amounts) or sum(amounts[:paid_count + 1]) > sum(paid)
    for k, payment in enumerate(result[:paid_count]):  # the payment that got there
        assert payment is not None
        assert sum(paid[:payment.order_id + 1]) >= sum(amounts[:k + 1]) > sum(
            paid[:payment.order_id])


def test_installments_due_soon_are_reminded_once(session, clock):
    _acct, _made, _customer, plan, _c = _active(session, clock)
    clock.set(clock.now().replace(year=2027, month=1, day=8))
    assert service.sweep(session, clock, POLICY, ZONE).reminded == 1
    assert service.sweep(session, clock, POLICY, ZONE).reminded == 0
    payload = session.scalar(sa.select(OutboxMessage.payload).where(
        OutboxMessage.dedup_key == f"notify:plan_installment_due:plan:{plan.id}:1"))
    assert payload["params"] == {"plan_id": plan.id, "account_no": "9900000001", "seq": 1,
                                 "amount_yuan": "166.66", "due_date": "2027-01-10"}


def test_bills_paid_another_way_complete_the_plan(session, clock):
    acct, made, customer, plan, _c = _active(session, clock)
    for bill in made:
        ledger.post(session, clock, account_id=acct.id, bill_id=bill.id,
                    kind=ledger.EntryKind.PAYMENT, amount_fen=-bill.total_fen,
                    ref=f"cash:{bill.id}", effective_on=TODAY)
    with pytest.raises(service.PlanNotActive):  # settled first: nothing left to pay
        _pay(session, clock, plan, customer, 1)
    assert plan.status == PlanStatus.COMPLETED and plan.completed_at == clock.now()


def test_customers_see_only_plans_of_their_accounts(session, clock):
    acct, made, customer = _business(session, clock)
    plan = _request(session, clock, acct, made, customer)
    _o, _m, other = _business(session, clock, account_no="9900000002")
    assert service.owned_plan(session, customer.id, plan.id) is plan
    assert service.customer_plans(session, other.id) == []
    with pytest.raises(NotFound):
        service.owned_plan(session, other.id, plan.id)


def test_the_machine_allows_only_the_designed_moves():
    assert PLAN_MACHINE.is_final(PlanStatus.COMPLETED)
    assert PLAN_MACHINE.is_final(PlanStatus.DEFAULTED)
    assert not PLAN_MACHINE.can(PlanStatus.REQUESTED, PlanStatus.ACTIVE)
    assert not PLAN_MACHINE.can(PlanStatus.ACTIVE, PlanStatus.CANCELLED)


def test_the_daily_task_sweeps_and_commits_and_beat_runs_it(app, clock):
    from portal.celery_app import BEAT_SCHEDULE
    from portal.extensions import db
    from portal.tasks import plan_sweep

    with app.app_context():
        plan_id = _active(db.session, clock)[3].id
        db.session.commit()
    clock.set(clock.now().replace(year=2027, month=2, day=1))
    assert plan_sweep() == 1  # the task runs in its own app context (and session)
    with app.app_context():
        assert db.session.get(PaymentPlan, plan_id).status == PlanStatus.DEFAULTED
    assert BEAT_SCHEDULE["plan-sweep"]["task"] == "portal.tasks.plan_sweep"


@pytest.mark.parametrize("database_url", [pytest.param("pg", marks=pytest.mark.pg)],
                         indirect=True)
def test_concurrent_requests_for_the_same_bills_make_one_plan(app, clock):
    from portal.accounts.models import ElectricityAccount
    from portal.extensions import db
    from tests.helpers import run_concurrently

    with app.app_context():
        acct, made, customer = _business(db.session, clock)
        db.session.commit()
        ids = (acct.id, [b.id for b in made], customer.id)
    outcomes: list[str] = []

    def worker() -> None:
        with app.app_context():
            account = db.session.get(ElectricityAccount, ids[0])
            try:
                service.request_plan(db.session, clock, POLICY, ZONE, customer_id=ids[2],
                                     account=account, bill_ids=ids[1], installments=3,
                                     first_due_on=date(2027, 1, 10), reason="x",
                                     hardship=False)
                db.session.commit()
                outcomes.append("made")
            except service.BillAlreadyCovered:
                db.session.rollback()
                outcomes.append("covered")
            finally:
                db.session.remove()

    run_concurrently(worker, 4)
    assert sorted(outcomes) == ["covered"] * 3 + ["made"]

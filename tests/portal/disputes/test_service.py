"""Disputes with the injected clock: the SLA over China's holidays, every step recorded (timeline,
audit, outbox), illegal and repeated moves refused, one adjustment, and the held amounts."""

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from billing_adapter.base import Adjustment, BillInfo
from billing_adapter.local.system import LocalBillingSystem, adjustment_ref
from portal.backoffice.models import StaffMember
from portal.bills import holds
from portal.bills.models import Bill
from portal.disputes import service
from portal.disputes.models import Dispute, DisputeStatus, EventKind
from portal.extensions import db
from portal.kernel.audit import AuditEntry
from portal.kernel.errors import Conflict
from portal.kernel.outbox import OutboxMessage
from portal.kernel.statemachine import IllegalTransition
from portal.ledger import service as ledger
from portal.ledger.models import LedgerEntry
from tests.helpers import run_concurrently

from .helpers import issued_case, open_one

ZONE = ZoneInfo("Asia/Shanghai")


def test_sla_skips_national_day_and_counts_the_adjusted_saturday() -> None:
    # 2026-10-01..07 are holidays; Saturday 2026-10-10 is a working day (调休)
    assert service.add_working_days(date(2026, 9, 30), 5) == date(2026, 10, 13)
    assert service.is_working_day(date(2026, 10, 10)) and not service.is_working_day(
        date(2026, 10, 5))
    # a plain week: Friday + 5 working days is the next Friday
    assert service.add_working_days(date(2026, 11, 6), 5) == date(2026, 11, 13)
    # a year without published holidays falls back to Monday-Friday
    assert service.add_working_days(date(2031, 1, 3), 1) == date(2031, 1, 6)


def test_dispute_opened_before_national_day_is_due_after_it(session, clock, tmp_path) -> None:
    clock.set(datetime(2026, 9, 30, 3, 0, tzinfo=UTC))  # 11:00 in Beijing
    case = issued_case(session, clock, tmp_path)
    dispute = open_one(session, clock, case)
    assert dispute.sla_due_on == date(2026, 10, 13)
    assert dispute.status is DisputeStatus.OPEN
    assert dispute.disputed_fen == case.bill.total_fen  # the whole bill by default


def test_a_dispute_through_its_steps_records_who_when_why(session, clock, tmp_path) -> None:
    case = issued_case(session, clock, tmp_path)
    dispute = open_one(session, clock, case, disputed_fen=5000)
    service.assign(session, clock, case.auditor, dispute, case.auditor.id)
    service.investigate(session, clock, case.auditor, dispute, "checking the meter photo")
    service.request_info(session, clock, case.auditor, dispute, "请上传电表照片")
    assert dispute.status is DisputeStatus.AWAITING_CUSTOMER
    service.reply(session, clock, dispute, case.customer_id, "照片见附件", [], case.store, ZONE)
    assert dispute.status is DisputeStatus.INVESTIGATING
    service.message(session, clock, case.auditor, dispute, "we are re-reading the meter")
    service.uphold(session, clock, case.auditor, dispute, "the meter reads right")
    session.commit()

    session.expire_all()
    dispute = session.get(Dispute, dispute.id)
    assert dispute.status is DisputeStatus.UPHELD and dispute.resolved_by_id == case.auditor.id
    assert [e.kind for e in dispute.events] == [
        EventKind.OPENED, EventKind.ASSIGNED, EventKind.INVESTIGATING, EventKind.INFO_REQUESTED,
        EventKind.CUSTOMER_REPLIED, EventKind.STAFF_MESSAGE, EventKind.UPHELD]
    assert dispute.events[-1].body == "the meter reads right"
    assert all(e.at == clock.now() for e in dispute.events)
    actions = session.scalars(sa.select(AuditEntry.action).where(
        AuditEntry.object_type == "dispute", AuditEntry.staff_id == case.auditor.id)).all()
    assert actions == ["dispute.assign", "dispute.investigate", "dispute.request_info",
                       "dispute.message", "dispute.uphold"]
    told = session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert [m.payload["event"] for m in told] == ["dispute_info_requested", "dispute_message",
                                                  "dispute_resolved"]
    assert told[0].payload["customer_id"] == case.customer_id
    assert told[0].payload["params"] == {"dispute_id": dispute.id, "account_no": "9900000001",
                                         "period": "2026-11", "question": "请上传电表照片"}
    assert told[1].payload["params"]["message"] == "we are re-reading the meter"
    assert told[2].payload["params"]["outcome"] == "upheld"


def test_the_sla_clock_stops_while_staff_wait_for_the_customer(session, clock,
                                                              tmp_path) -> None:
    clock.set(datetime(2026, 11, 2, 2, 0, tzinfo=UTC))  # Monday 10:00 in Beijing
    case = issued_case(session, clock, tmp_path)
    dispute = open_one(session, clock, case)
    assert dispute.sla_due_on == date(2026, 11, 9)
    service.assign(session, clock, case.auditor, dispute, case.auditor.id)
    clock.set(datetime(2026, 11, 3, 8, 0, tzinfo=UTC))  # Tuesday 16:00: staff ask
    service.request_info(session, clock, case.auditor, dispute, "请上传电表照片")
    clock.set(datetime(2026, 11, 9, 1, 0, tzinfo=UTC))  # next Monday 09:00: the customer replies
    service.reply(session, clock, dispute, case.customer_id, "照片见附件", [], case.store, ZONE)
    # Wednesday to Friday and Monday, four working days waited: due four working days later
    assert dispute.sla_due_on == date(2026, 11, 13)
    service.request_info(session, clock, case.auditor, dispute, "再拍一张")
    clock.set(datetime(2026, 11, 9, 6, 0, tzinfo=UTC))  # answered the same day: no wait counts
    service.reply(session, clock, dispute, case.customer_id, "好的", [], case.store, ZONE)
    assert dispute.sla_due_on == date(2026, 11, 13)


def test_illegal_and_repeated_moves_change_nothing(session, clock, tmp_path) -> None:
    case = issued_case(session, clock, tmp_path)
    dispute = open_one(session, clock, case)
    with pytest.raises(IllegalTransition):  # nobody asked anything
        service.reply(session, clock, dispute, case.customer_id, "hello", [], case.store, ZONE)
    with pytest.raises(IllegalTransition):  # an unassigned dispute is not investigated
        service.investigate(session, clock, case.auditor, dispute, "x")
    service.assign(session, clock, case.auditor, dispute, case.auditor.id)
    with pytest.raises(IllegalTransition):  # assigned, but still nobody asked anything
        service.reply(session, clock, dispute, case.customer_id, "hello", [], case.store, ZONE)
    assert dispute.status is DisputeStatus.ASSIGNED
    assert EventKind.CUSTOMER_REPLIED not in [e.kind for e in dispute.events]
    service.withdraw(session, clock, dispute, case.customer_id, "resolved by phone")
    with pytest.raises(IllegalTransition):
        service.uphold(session, clock, case.auditor, dispute, "too late")
    with pytest.raises(Conflict):
        service.message(session, clock, case.auditor, dispute, "too late")
    assert dispute.status is DisputeStatus.WITHDRAWN


def test_only_one_open_dispute_per_bill_and_amount_within_the_bill(session, clock,
                                                                    tmp_path) -> None:
    case = issued_case(session, clock, tmp_path)
    with pytest.raises(service.BadDisputedAmount):
        open_one(session, clock, case, disputed_fen=case.bill.total_fen + 1)
    with pytest.raises(service.BadDisputedAmount):
        open_one(session, clock, case, disputed_fen=0)
    first = open_one(session, clock, case)
    with pytest.raises(service.AlreadyDisputed):
        open_one(session, clock, case)
    service.withdraw(session, clock, first, case.customer_id)
    assert open_one(session, clock, case).id != first.id  # after withdrawing, a new one


class CountingBilling(LocalBillingSystem):
    calls = 0

    def apply_adjustment(self, adjustment):  # type: ignore[no-untyped-def]
        CountingBilling.calls += 1
        return super().apply_adjustment(adjustment)


def test_adjustment_reaches_the_billing_system_once(session, clock, tmp_path) -> None:
    CountingBilling.calls = 0
    case = issued_case(session, clock, tmp_path)
    old_total = case.bill.total_fen
    dispute = open_one(session, clock, case, disputed_fen=3000)
    service.assign(session, clock, case.auditor, dispute, case.auditor.id)
    session.commit()
    system = CountingBilling(session, clock)
    corrected = service.adjust(session, clock, case.auditor, dispute, -2500, "读数录错",
                               system)
    session.commit()
    # a double submit: the second finds the dispute resolved and never calls billing
    again = session.get(Dispute, dispute.id)
    with pytest.raises(Conflict):
        service.adjust(session, clock, case.auditor, again, -2500, "读数录错", system)
    session.rollback()
    assert CountingBilling.calls == 1
    assert corrected is not None and corrected.version == 2
    assert corrected.total_fen == old_total - 2500
    assert [line.amount_fen for line in corrected.lines][-1] == -2500
    entries = session.scalars(sa.select(LedgerEntry).where(
        LedgerEntry.ref == adjustment_ref(service.adjustment_no(dispute)))).all()
    assert [(e.bill_id, e.amount_fen) for e in entries] == [(corrected.id, -2500)]
    assert ledger.owed_by_bill(session, [corrected.id])[corrected.id] == old_total - 2500
    dispute = session.get(Dispute, dispute.id)
    assert dispute.corrected_bill_id == corrected.id and dispute.adjustment_fen == -2500
    diff = service.compare(dispute.bill, corrected)
    assert [d.changed for d in diff] == [False, False, True]
    assert diff[-1].before_fen is None and diff[-1].after_fen == -2500
    assert session.scalar(sa.select(AuditEntry.amount_fen).where(
        AuditEntry.action == "dispute.adjust")) == -2500


def test_a_credit_larger_than_the_bill_is_refused_and_nothing_moves(session, clock,
                                                                    tmp_path) -> None:
    case = issued_case(session, clock, tmp_path)
    dispute = open_one(session, clock, case)
    service.assign(session, clock, case.auditor, dispute, case.auditor.id)
    session.commit()
    with pytest.raises(service.AdjustmentRefused):
        service.adjust(session, clock, case.auditor, dispute, -(case.bill.total_fen + 1),
                       "too much", LocalBillingSystem(session, clock))
    session.rollback()
    assert session.get(Dispute, dispute.id).status is DisputeStatus.ASSIGNED
    assert session.scalar(sa.select(sa.func.count()).select_from(Bill)) == 1


def test_open_disputes_hold_their_disputed_amount_only(session, clock, tmp_path) -> None:
    first = issued_case(session, clock, tmp_path, "9900000001")
    second = issued_case(session, clock, tmp_path, "9900000002")
    third = issued_case(session, clock, tmp_path, "9900000003")
    open_one(session, clock, first, disputed_fen=1234)
    open_one(session, clock, second)  # the whole bill
    withdrawn = open_one(session, clock, third, disputed_fen=99)
    service.withdraw(session, clock, withdrawn, third.customer_id)
    session.flush()
    held = holds.held_by_bill()
    rows = dict(session.execute(sa.select(held.c.bill_id, held.c.held_fen)).all())
    assert rows == {first.bill.id: 1234, second.bill.id: second.bill.total_fen}


def test_a_stale_page_loses_the_race_and_changes_nothing(session, clock, tmp_path) -> None:
    case = issued_case(session, clock, tmp_path)
    dispute = open_one(session, clock, case)
    service.assign(session, clock, case.auditor, dispute, case.auditor.id)
    session.commit()
    assert dispute.status is DisputeStatus.ASSIGNED  # what the page was built from
    # someone else moved it meanwhile; this copy still says "assigned"
    session.execute(sa.update(Dispute).values(status=DisputeStatus.INVESTIGATING)
                    .execution_options(synchronize_session=False))
    with pytest.raises(Conflict):
        service.request_info(session, clock, case.auditor, dispute, "x")
    with pytest.raises(Conflict):  # a reassignment from a stale page too
        service.assign(session, clock, case.auditor, dispute, case.auditor.id)


def test_reassigning_keeps_the_status_and_says_who(session, clock, tmp_path) -> None:
    case = issued_case(session, clock, tmp_path)
    dispute = open_one(session, clock, case)
    service.assign(session, clock, case.auditor, dispute, case.auditor.id)
    service.investigate(session, clock, case.auditor, dispute, "looking")
    service.assign(session, clock, case.auditor, dispute, case.auditor.id, "back to me")
    assert dispute.status is DisputeStatus.INVESTIGATING
    assert dispute.events[-1].kind is EventKind.ASSIGNED
    assert dispute.events[-1].body == "back to me"
    with pytest.raises(service.BadAssignee):
        service.assign(session, clock, case.auditor, dispute, 999_999)


def test_a_bill_in_review_cannot_be_disputed(session, clock, tmp_path) -> None:
    from tests import factories

    case = issued_case(session, clock, tmp_path)
    draft = factories.bill(session, clock, case.bill.account, period="2026-12")
    with pytest.raises(service.BillNotDisputable):
        service.open_dispute(session, clock, customer_id=case.customer_id, bill=draft,
                             category=service.DisputeCategory.OTHER, description="x",
                             disputed_fen=None, files=[], store=case.store,
                             sla_working_days=5, today=date(2026, 12, 3))


class ExternalBilling:
    """An external billing system: it answers with a version the portal has not synced yet."""

    def __init__(self) -> None:
        self.seen: list[Adjustment] = []

    def apply_adjustment(self, adjustment: Adjustment) -> BillInfo:
        self.seen.append(adjustment)
        return BillInfo(account_no=adjustment.account_no, period=adjustment.period, version=7,
                        period_start=date(2026, 11, 1), period_end=date(2026, 11, 30),
                        kwh=Decimal(1), tariff_code="t", total_fen=1, status="issued",
                        due_date=date(2026, 12, 25))


def test_an_external_billing_system_gets_the_adjustment_with_its_number(session, clock,
                                                                         tmp_path) -> None:
    case = issued_case(session, clock, tmp_path)
    dispute = open_one(session, clock, case)
    service.assign(session, clock, case.auditor, dispute, case.auditor.id)
    external = ExternalBilling()
    with pytest.raises(service.BadDisputedAmount):
        service.adjust(session, clock, case.auditor, dispute, 0, "nothing", external)
    assert service.adjust(session, clock, case.auditor, dispute, 150, "表计倍率错误",
                          external) is None  # not synced yet
    (sent,) = external.seen
    assert (sent.adjustment_no, sent.account_no, sent.period, sent.amount_fen) == (
        f"dispute-{dispute.id}", "9900000001", "2026-11", 150)
    assert dispute.status is DisputeStatus.ADJUSTED and dispute.corrected_bill_id is None


def test_concurrent_submits_open_one_dispute_and_adjust_once(app, clock, tmp_path) -> None:
    with app.app_context():
        case = issued_case(db.session, clock, tmp_path)
        bill_id, customer_id, auditor_id = case.bill.id, case.customer_id, case.auditor.id
        db.session.commit()
    opened: list[int] = []
    refused: list[Exception] = []

    def open_it() -> None:
        with app.app_context():
            try:
                dispute = service.open_dispute(
                    db.session, clock, customer_id=customer_id,
                    bill=db.session.get(Bill, bill_id), category=service.DisputeCategory.USAGE,
                    description="x", disputed_fen=None, files=[], store=case.store,
                    sla_working_days=5, today=date(2026, 12, 3))
                db.session.commit()
                opened.append(dispute.id)
            except Conflict as exc:
                db.session.rollback()
                refused.append(exc)
            db.session.remove()

    run_concurrently(open_it, 4)
    assert len(opened) == 1 and len(refused) == 3
    with app.app_context():
        staff = db.session.get(StaffMember, auditor_id)
        service.assign(db.session, clock, staff, db.session.get(Dispute, opened[0]), staff.id)
        db.session.commit()
    CountingBilling.calls = 0

    def adjust_it() -> None:
        with app.app_context():
            try:
                service.adjust(db.session, clock, db.session.get(StaffMember, auditor_id),
                               db.session.get(Dispute, opened[0]), -100, "x",
                               CountingBilling(db.session, clock))
                db.session.commit()
            except Conflict:
                db.session.rollback()
            db.session.remove()

    run_concurrently(adjust_it, 4)
    assert CountingBilling.calls == 1
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Bill).where(
            Bill.account_id == db.session.get(Bill, bill_id).account_id)) == 2


def test_a_corrected_bill_is_disputed_in_its_newest_version(session, clock, tmp_path) -> None:
    case = issued_case(session, clock, tmp_path)
    dispute = open_one(session, clock, case)
    service.assign(session, clock, case.auditor, dispute, case.auditor.id)
    corrected = service.adjust(session, clock, case.auditor, dispute, 500, "补收",
                               LocalBillingSystem(session, clock))
    with pytest.raises(service.BillSuperseded):
        open_one(session, clock, case)  # the old version
    case.bill = corrected
    assert open_one(session, clock, case).bill_id == corrected.id

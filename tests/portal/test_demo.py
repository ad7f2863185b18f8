"""The demo's bills come from the bill run: computed from its readings, one held for review."""

from datetime import date
from decimal import Decimal

import sqlalchemy as sa

from billing_adapter.local.pricing import Usage, quote
from billing_adapter.local.tariffs import TariffBook
from portal import demo as demo_data
from portal.accounts.models import ElectricityAccount
from portal.bills import service as bills
from portal.bills.models import Bill, BillStatus
from portal.ledger import service as ledger
from portal.readings.models import Reading


def _bill(session, account_no: str, period: str) -> Bill:
    return session.scalars(sa.select(Bill).join(ElectricityAccount).where(
        ElectricityAccount.account_no == account_no, Bill.period == period)).one()


def test_demo_bills_are_the_engines_prices_of_the_readings(session, demo) -> None:
    bill = _bill(session, "3300000001", "2026-11")
    readings = session.scalars(sa.select(Reading).where(
        Reading.meter_id == bill.account.meters[0].id,
        Reading.period.in_(["2026-10", "2026-11"])).order_by(Reading.period)).all()
    peak = readings[1].peak_kwh - readings[0].peak_kwh
    valley = readings[1].valley_kwh - readings[0].valley_kwh
    prior = sum((b.kwh for b in session.scalars(sa.select(Bill).where(
        Bill.account_id == bill.account_id, Bill.period.between("2026-01", "2026-10")))),
        Decimal(0))
    expected = quote(TariffBook.shipped(), "zhejiang-residential", date(2026, 11, 1),
                     date(2026, 11, 30), Usage(peak + valley, peak_kwh=peak, valley_kwh=valley),
                     prior)
    assert bill.total_fen == expected.total_fen
    assert [line.amount_fen for line in bill.lines] == [line.amount_fen for line in
                                                         expected.lines]


def test_one_demo_bill_waits_for_review_and_one_is_overdue(session, demo) -> None:
    held = session.scalars(sa.select(Bill).where(Bill.status != BillStatus.ISSUED)).all()
    assert [(b.account.account_no, b.period) for b in held] == [("1100000001", "2026-11")]
    assert held[0].review_reason.startswith("usage_high ")
    assert ledger.owed_by_bill(session, [held[0].id])[held[0].id] == 0  # nothing charged

    overdue = _bill(session, "1100000002", "2026-10")
    owed = ledger.owed_by_bill(session, [overdue.id])[overdue.id]
    assert owed == overdue.total_fen > 0
    assert bills.payment_state(overdue, owed, date(2026, 12, 3)) is bills.PaymentState.OVERDUE
    paid = _bill(session, "1100000002", "2026-09")
    assert ledger.owed_by_bill(session, [paid.id])[paid.id] == 0


def test_rerunning_a_demo_month_changes_nothing(app, demo) -> None:
    result = app.test_cli_runner().invoke(args=["billing", "run", "--period", "2026-11"])
    assert result.exit_code == 0, result.output
    assert "Nothing to do for 2026-11: 5 accounts were billed already" in result.output


def test_demo_reconciliation_has_a_clean_day_and_one_difference_of_each_kind(
        session, clock, demo, tmp_path) -> None:
    from payments.reconcile.models import Difference, Statement
    from portal.settings import Settings

    today = date(2026, 12, 3)
    lines = demo_data.seed_reconciliation(session, clock, today, tmp_path, Settings().zone)
    assert lines[0].startswith("Reconciliation demo: WeChat 2026-12-01: 2 lines, differences: "
                               "none")
    statements = session.scalars(sa.select(Statement).order_by(Statement.bill_date)).all()
    assert [(s.line_count, s.differences) for s in statements] == [(2, 0), (4, 4)]
    kinds = session.scalars(sa.select(Difference.kind).order_by(Difference.kind)).all()
    assert sorted(k.value for k in kinds) == ["amount_mismatch", "channel_only", "local_only",
                                              "status_mismatch"]


def test_the_seed_shows_a_plan_and_a_dispute_to_customers_and_staff_and_runs_once(
        app, web, clock) -> None:
    from portal.disputes.models import Dispute, DisputeEvent, DisputeStatus, EventKind
    from portal.extensions import db
    from portal.kernel.audit import AuditEntry
    from portal.plans.models import PaymentPlan, PlanStatus
    from tests.helpers import FormClient, text_of
    from tests.portal.backoffice.staffing import staff_login

    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo", "seed"])
    assert first.exit_code == 0, first.output
    assert "Demo data created." in first.output and "hz-collector" in first.output
    again = runner.invoke(args=["demo", "seed"])
    assert again.exit_code == 0 and "nothing changed" in again.output

    with app.app_context():
        plan = db.session.scalars(sa.select(PaymentPlan)).one()  # the second run added none
        dispute = db.session.scalars(sa.select(Dispute)).one()
        assert db.session.get(ElectricityAccount, plan.account_id).account_no == "3300000009"
        assert plan.status is PlanStatus.PROPOSED
        assert (plan.installment_count, plan.first_due_on) == (4, date(2027, 1, 15))
        assert dispute.bill.account.account_no == "3300000001"
        assert dispute.status is DisputeStatus.OPEN and dispute.bill.period == "2026-11"
        kinds = db.session.scalars(sa.select(DisputeEvent.kind).order_by(DisputeEvent.id)).all()
        assert kinds == [EventKind.OPENED, EventKind.STAFF_MESSAGE]
        actions = set(db.session.scalars(sa.select(AuditEntry.action)))
        assert {"plan.request", "plan.propose", "dispute.open", "dispute.message"} <= actions
        plan_id, dispute_id = plan.id, dispute.id

    web.login("13800000004", "dianfei-demo")
    page = text_of(web.get(f"/plans/{plan_id}?lang=en"))
    assert "Terms proposed" in page and "2027-04-15" in page  # the fourth installment
    web.submit("/logout", {}, page="/dashboard")
    web.login("13800000003", "dianfei-demo")
    page = text_of(web.get(f"/disputes/{dispute_id}"))
    assert "已受理" in page and "已收到您的异议" in page

    staff = FormClient(app.test_client())
    assert staff_login(staff, clock, "hz-collector").status_code == 302
    assert f"#{plan_id}" in text_of(staff.get("/staff/plans"))
    assert f"#{dispute_id}" in text_of(staff.get("/staff/disputes"))

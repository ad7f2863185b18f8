"""Daily late-fee accrual: the billing engine's rule on the arrears, posted once per bill per
day as the difference to what is already posted; waived accounts and held amounts left alone."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from billing_adapter.local.late_fees import late_fee
from portal.bills import holds, late_fees
from portal.bills import service as bills
from portal.bills.models import Bill
from portal.ledger import service as ledger
from portal.ledger.models import EntryKind, LedgerEntry
from tests import factories


def _issued(session, clock, account_no="9900000001", amounts=(20000,)):
    account = factories.account(session, clock, account_no=account_no,
                                meter_no=f"m{account_no}")
    bill = factories.bill(session, clock, account, amounts=amounts, due=date(2026, 11, 25))
    bills.issue(session, clock, bill)
    return account, bill


def _fees(session) -> list[tuple[str, int]]:
    return [(e.ref, e.amount_fen) for e in session.scalars(
        sa.select(LedgerEntry).where(LedgerEntry.kind == EntryKind.LATE_FEE)
        .order_by(LedgerEntry.id))]


def test_a_day_is_posted_once_and_the_next_day_adds_the_difference(session, clock) -> None:
    _account, bill = _issued(session, clock)
    report = late_fees.accrue(session, clock, date(2026, 12, 5))  # 10 days late
    session.commit()
    # 200.00 yuan residential, 10 days at 1 per mille: 2.00 yuan (DOMAIN.md's worked example)
    assert (report.posted, report.fen) == (1, 200)
    assert late_fees.accrue(session, clock, date(2026, 12, 5)).posted == 0
    late_fees.accrue(session, clock, date(2026, 12, 6))
    session.commit()
    assert _fees(session) == [(f"bill:{bill.id}:late_fee:2026-12-05", 200),
                              (f"bill:{bill.id}:late_fee:2026-12-06", 20)]
    assert late_fees.posted_late_fees(session, [bill.id]) == {bill.id: 220}


def test_the_minimum_then_nothing_until_the_total_passes_it(session, clock) -> None:
    _account, bill = _issued(session, clock, amounts=(5000,))  # 50 yuan: 5 fen a day
    for day in range(26, 31):
        late_fees.accrue(session, clock, date(2026, 11, day))
    assert _fees(session) == [(f"bill:{bill.id}:late_fee:2026-11-26", 100)]  # 1 yuan minimum
    total = late_fee("residential", 5000, date(2026, 11, 25), date(2026, 12, 16)).fee_fen
    late_fees.accrue(session, clock, date(2026, 12, 16))
    assert sum(fen for _ref, fen in _fees(session)) == total == 105


def test_waived_paid_and_not_yet_due_bills_are_skipped(session, clock) -> None:
    waived, _ = _issued(session, clock, "9900000001")
    waived.late_fee_waived = True
    paid, paid_bill = _issued(session, clock, "9900000002")
    ledger.post(session, clock, account_id=paid.id, bill_id=paid_bill.id, kind=EntryKind.PAYMENT,
                amount_fen=-paid_bill.total_fen, ref="pay:x", effective_on=date(2026, 11, 20))
    _issued(session, clock, "9900000003")
    assert late_fees.accrue(session, clock, date(2026, 11, 25)).bills == 0  # due today
    report = late_fees.accrue(session, clock, date(2026, 12, 5))
    assert (report.bills, report.posted) == (1, 1)


def test_fees_are_never_charged_on_fees_nor_on_held_amounts(session, clock, monkeypatch) -> None:
    monkeypatch.setattr(holds, "_sources", {})
    _account, _bill = _issued(session, clock)

    @holds.register("stub")
    def half() -> sa.Select:
        return sa.select(Bill.id.label("bill_id"), sa.literal(10000).label("held_fen"))

    late_fees.accrue(session, clock, date(2026, 12, 5))
    late_fees.accrue(session, clock, date(2026, 12, 25))
    # 100.00 yuan not held, 30 days: 3.00 yuan, whatever fees were posted before
    assert sum(fen for _ref, fen in _fees(session)) == 300


def test_each_run_that_posts_is_in_the_audit_log(session, clock) -> None:
    from portal.kernel.audit import Actor, AuditEntry

    _issued(session, clock)
    late_fees.accrue(session, clock, date(2026, 12, 5))
    late_fees.accrue(session, clock, date(2026, 12, 5))
    (entry,) = session.scalars(sa.select(AuditEntry)).all()
    assert (entry.actor, entry.action, entry.object_id, entry.amount_fen, entry.details) == (
        Actor.SYSTEM, "late_fees.accrue", "2026-12-05", 200, {"bills": 1, "entries": 1})

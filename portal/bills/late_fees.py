"""Daily late-fee accrual (电费违约金) as ledger entries, with the billing engine's rules.

For every issued bill past its due date on an account whose fees are not waived, the fee due if
it were paid today (``billing_adapter.local.late_fees.late_fee``) on the arrears (what is still
owed on the bill without its fees, capped at its total, less what holds cover) is compared with
the fees already posted; the difference, if positive, is posted as one ``LATE_FEE`` entry with
ref ``bill:<id>:late_fee:<date>``. Rounding happens once, on the total; running twice on a day
writes nothing the second time. One query selects the bills, entries are written in batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing_adapter.local.late_fees import LateFeeRules, late_fee
from portal.accounts.models import ElectricityAccount
from portal.bills.holds import held_by_bill
from portal.bills.models import Bill, BillStatus
from portal.kernel import audit
from portal.kernel.clock import Clock
from portal.ledger import service as ledger
from portal.ledger.models import EntryKind, LedgerEntry

BATCH = 1000


def late_fee_ref(bill_id: int, day: date) -> str:
    return f"bill:{bill_id}:late_fee:{day.isoformat()}"


@dataclass(frozen=True)
class AccrualReport:
    bills: int      # bills looked at (overdue, owing, not waived)
    posted: int     # entries written
    fen: int        # what they add up to


def _fee_kind() -> sa.ColumnElement[bool]:
    return LedgerEntry.kind == EntryKind.LATE_FEE


def overdue_bills(today: date) -> sa.Select[tuple[int, int, str, date, int, int, int]]:
    """``(bill_id, account_id, customer_class, due_date, arrears_fen, posted_fen)`` of issued,
    overdue bills owing principal, on accounts whose fees are not waived (set-based)."""
    held = held_by_bill()
    principal = sa.func.sum(sa.case((_fee_kind(), 0), else_=LedgerEntry.amount_fen))
    posted = sa.func.sum(sa.case((_fee_kind(), LedgerEntry.amount_fen), else_=0))
    per_bill = (
        sa.select(LedgerEntry.bill_id, principal.label("principal"), posted.label("posted"))
        .join(Bill, Bill.id == LedgerEntry.bill_id)
        .where(Bill.status == BillStatus.ISSUED, Bill.due_date < today)
        .group_by(LedgerEntry.bill_id).subquery("per_bill"))
    capped = sa.case((per_bill.c.principal < Bill.total_fen, per_bill.c.principal),
                     else_=Bill.total_fen)
    arrears = capped - sa.func.coalesce(held.c.held_fen, 0)
    return (
        sa.select(Bill.id, Bill.account_id, ElectricityAccount.customer_class, Bill.due_date,
                  arrears.label("arrears"), per_bill.c.posted)
        .join(per_bill, per_bill.c.bill_id == Bill.id)
        .join(ElectricityAccount, ElectricityAccount.id == Bill.account_id)
        .outerjoin(held, held.c.bill_id == Bill.id)
        .where(ElectricityAccount.late_fee_waived.is_(False), arrears > 0)
    )


def accrue(session: Session, clock: Clock, today: date,
           rules: LateFeeRules | None = None) -> AccrualReport:
    """Post today's late fees; the caller commits. (A second run the same day computes the same
    entries and writes none of them: their refs exist.)"""
    looked = posted = total = 0
    batch: list[ledger.Entry] = []
    for bill_id, account_id, cls, due, arrears, already in session.execute(overdue_bills(today)):
        looked += 1
        cls_name = getattr(cls, "value", cls)
        fee = late_fee(cls_name, int(arrears), due, today, rules).fee_fen
        owed = fee - int(already or 0)
        if owed <= 0:
            continue
        batch.append(ledger.Entry(account_id=account_id, bill_id=bill_id,
                                  kind=EntryKind.LATE_FEE, amount_fen=owed,
                                  ref=late_fee_ref(bill_id, today), effective_on=today,
                                  memo=f"late fee to {today.isoformat()}"))
        total += owed
        if len(batch) == BATCH:
            posted += ledger.post_many(session, clock, batch)
            batch.clear()
    posted += ledger.post_many(session, clock, batch)
    if posted:
        audit.record(session, clock, "late_fees.accrue", "late_fee_run", today.isoformat(),
                     amount_fen=total, details={"bills": looked, "entries": posted})
    return AccrualReport(looked, posted, total)


def posted_late_fees(session: Session, bill_ids: Iterable[int]) -> dict[int, int]:
    """Late fees posted so far on each bill (fen); bills without any are absent."""
    rows = session.execute(
        sa.select(LedgerEntry.bill_id, sa.func.sum(LedgerEntry.amount_fen))
        .where(LedgerEntry.bill_id.in_(list(bill_ids)), _fee_kind())
        .group_by(LedgerEntry.bill_id))
    return {bill_id: int(fen) for bill_id, fen in rows}

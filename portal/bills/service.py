"""Issuing bills and reading them back for customers, with payment state derived from the ledger."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from portal.bills.models import BILL_MACHINE, Bill, BillStatus, charge_ref
from portal.kernel.clock import Clock
from portal.kernel.errors import Conflict
from portal.ledger import service as ledger
from portal.ledger.models import EntryKind


class PaymentState(enum.StrEnum):
    """What a customer sees on an issued bill; derived, never stored."""

    UNPAID = "unpaid"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    OVERDUE = "overdue"
    IN_REVIEW = "in_review"   # held for review (核) before anyone is charged


def payment_state(bill: Bill, owed_fen: int, today: date) -> PaymentState:
    if bill.status is not BillStatus.ISSUED:
        return PaymentState.IN_REVIEW
    if owed_fen <= 0:
        return PaymentState.PAID
    if today > bill.due_date:
        return PaymentState.OVERDUE
    if owed_fen < bill.total_fen:
        return PaymentState.PARTIALLY_PAID
    return PaymentState.UNPAID


@dataclass(frozen=True)
class BillSummary:
    bill: Bill
    owed_fen: int
    state: PaymentState


def issue(session: Session, clock: Clock, bill: Bill) -> None:
    """Issue a draft or reviewed bill: move its status and charge its total to the ledger, once;
    the account's prepaid balance is then allocated to what it owes, oldest bill first."""
    if not BILL_MACHINE.move(session, Bill, bill.id, bill.status, BillStatus.ISSUED,
                             issued_at=clock.now()):
        raise Conflict(f"bill {bill.id} is no longer {bill.status.value}")
    if bill.total_fen > 0:
        ledger.post(session, clock, account_id=bill.account_id, bill_id=bill.id,
                    kind=EntryKind.CHARGE, amount_fen=bill.total_fen,
                    ref=charge_ref(bill.id), effective_on=bill.due_date)
        # the account's prepaid balance (an earlier overpayment, a top-up) pays it at once
        ledger.apply_prepaid_in_range(session, clock, bill.account_id, bill.account_id)
    session.refresh(bill)


def summaries(session: Session, bills: list[Bill], today: date) -> list[BillSummary]:
    owed = ledger.owed_by_bill(session, [b.id for b in bills])
    return [BillSummary(b, owed[b.id], payment_state(b, owed[b.id], today)) for b in bills]


def _latest_versions(account_ids: list[int]) -> sa.Select[tuple[Bill]]:
    """The newest version of every period's bill of these accounts."""
    newest = (
        sa.select(Bill.account_id, Bill.period, sa.func.max(Bill.version).label("version"))
        .where(Bill.account_id.in_(account_ids))
        .group_by(Bill.account_id, Bill.period)
        .subquery()
    )
    return sa.select(Bill).join(newest, sa.and_(Bill.account_id == newest.c.account_id,
                                                Bill.period == newest.c.period,
                                                Bill.version == newest.c.version))


def account_bills(session: Session, account_id: int, limit: int = 36) -> list[Bill]:
    """The newest version of each period's bill, newest period first."""
    return list(session.scalars(_latest_versions([account_id])
                                .order_by(Bill.period.desc()).limit(limit)))


def latest_bills(session: Session, account_ids: list[int]) -> dict[int, Bill]:
    """Each account's newest bill (newest period, newest version), in one query."""
    newest_period = (
        sa.select(Bill.account_id, sa.func.max(Bill.period).label("period"))
        .where(Bill.account_id.in_(account_ids))
        .group_by(Bill.account_id)
        .subquery()
    )
    query = _latest_versions(account_ids).join(
        newest_period, sa.and_(Bill.account_id == newest_period.c.account_id,
                               Bill.period == newest_period.c.period))
    return {bill.account_id: bill for bill in session.scalars(query)}


def bill_with_lines(session: Session, bill_id: int) -> Bill | None:
    return session.scalars(
        sa.select(Bill).options(selectinload(Bill.lines)).where(Bill.id == bill_id)
    ).first()


@dataclass(frozen=True)
class UsagePoint:
    period: str
    kwh: Decimal
    peak_kwh: Decimal | None
    flat_kwh: Decimal | None
    valley_kwh: Decimal | None
    total_fen: int


def usage_history(session: Session, account_id: int, months: int = 24) -> list[UsagePoint]:
    """Monthly usage for charts: the last ``months`` billed periods, oldest first."""
    bills = list(session.scalars(
        _latest_versions([account_id])
        .where(Bill.status == BillStatus.ISSUED)
        .order_by(Bill.period.desc()).limit(months)
    ))
    return [UsagePoint(b.period, b.kwh, b.peak_kwh, b.flat_kwh, b.valley_kwh, b.total_fen)
            for b in reversed(bills)]

"""What a bill page explains beyond its lines: where the account stands against its tier
thresholds, and the late fee an overdue bill has accrued so far.

Both are derived for display, never stored: the lines and the ledger stay the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing_adapter.local.late_fees import daily_rate, late_fee
from billing_adapter.local.tariffs import TariffBook, TariffError
from portal.accounts.models import ElectricityAccount
from portal.bills.models import Bill, BillStatus
from portal.kernel.money import round_late_fee


@dataclass(frozen=True)
class TierProgress:
    """kWh counted against the tier thresholds up to and including this bill.

    ``annual``: the tier year ``start``..``end`` (this bill plus the issued bills before it in
    that tier year); otherwise the bill's own month."""

    annual: bool
    used_kwh: Decimal
    bounds: tuple[Decimal, ...]
    start: date
    end: date

    @property
    def tier(self) -> int:
        """The tier the latest kWh fell in (1 = the base price)."""
        return 1 + sum(1 for bound in self.bounds if self.used_kwh > bound)

    @property
    def next_bound(self) -> Decimal | None:
        return self.bounds[self.tier - 1] if self.tier <= len(self.bounds) else None

    @property
    def left_kwh(self) -> Decimal | None:
        """kWh still to go before the next tier (None in the top tier)."""
        bound = self.next_bound
        return None if bound is None else bound - self.used_kwh

    @property
    def percent(self) -> int:
        """How far into the tier-1 allowance (capped at 100), for a progress bar."""
        return min(100, int(self.used_kwh * 100 / self.bounds[0]))


def tier_progress(session: Session, book: TariffBook, bill: Bill) -> TierProgress | None:
    """None for tariffs without tiers (or a tariff the book does not have on that date)."""
    try:
        version = book.version_on(bill.tariff_code, bill.period_start)
    except TariffError:
        return None
    if version.thresholds == "none":
        return None
    bounds = version.bounds_for_month(bill.period_start.month)
    year = version.tier_year(bill.period_start)
    if year is None:
        return TierProgress(False, bill.kwh, bounds, bill.period_start, bill.period_end)
    start, end = year
    newest = (sa.select(Bill.period, sa.func.max(Bill.version).label("version"))
              .where(Bill.account_id == bill.account_id, Bill.period_start >= start,
                     Bill.period < bill.period)
              .group_by(Bill.period).subquery())
    earlier = session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(Bill.kwh), 0))
        .join(newest, sa.and_(Bill.period == newest.c.period, Bill.version == newest.c.version))
        .where(Bill.account_id == bill.account_id, Bill.status == BillStatus.ISSUED))
    return TierProgress(True, Decimal(earlier or 0) + bill.kwh, bounds, start, end)


@dataclass(frozen=True)
class AccruedLateFee:
    """An overdue bill's late fee if paid today (``late_fee`` with ``paid=today``)."""

    days: int
    arrears_fen: int
    fee_fen: int
    rate: Decimal          # today's fraction of the arrears per day
    per_day_fen: int       # today's accrual, rounded by the late-fee rule (for display)
    waived: bool
    posted_fen: int = 0    # of ``fee_fen``, what the daily accrual has put on the bill already

    @property
    def per_mille(self) -> Decimal:
        return (self.rate * 1000).normalize()


def accrued_late_fee(bill: Bill, account: ElectricityAccount, owed_fen: int,
                     today: date, posted_fen: int = 0) -> AccruedLateFee | None:
    """None unless the bill is issued, unpaid (in part) and past its due date.

    ``owed_fen`` includes the late fees posted so far (``posted_fen``, see
    ``portal.bills.late_fees``); the arrears are the rest, capped at the bill's total: late fees
    are never charged on late fees. The fee shown is the same rule the daily accrual posts by,
    so it equals what is posted once today's accrual has run, and never less."""
    if bill.status is not BillStatus.ISSUED or owed_fen <= 0 or today <= bill.due_date:
        return None
    arrears = min(owed_fen - posted_fen, bill.total_fen)
    if arrears <= 0:
        return None
    cls = account.customer_class.value
    rate = daily_rate(cls, bill.due_date, today)
    fee = late_fee(cls, arrears, bill.due_date, today)
    if account.late_fee_waived:
        return AccruedLateFee(fee.days, arrears, 0, rate, 0, waived=True)
    return AccruedLateFee(fee.days, arrears, max(fee.fee_fen, posted_fen), rate,
                          round_late_fee(arrears * rate), waived=False, posted_fen=posted_fen)

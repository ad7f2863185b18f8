"""The embedded billing system: ``BillingSystem`` over the portal's own tables.

In embedded mode the portal's accounts, readings and bills *are* the billing system's, so this
class reads and writes them directly. It never commits: the caller owns the transaction. Each
write runs inside a SAVEPOINT, so a call that is rejected half-way leaves nothing behind.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from billing_adapter.base import (
    AccountInfo,
    Adjustment,
    BillInfo,
    BillingRejected,
    BillingUnavailable,
    BillLineInfo,
    PaymentPosting,
    PostingReceipt,
    ReadingReceipt,
    ReadingSubmission,
)
from billing_adapter.local.postings import BillingPosting, BillingReversal
from portal.accounts.models import ElectricityAccount, Meter
from portal.bills.models import Bill, BillLine, BillStatus, LineKind
from portal.kernel.clock import Clock, local_today
from portal.ledger import service as ledger
from portal.ledger.models import EntryKind, LedgerEntry
from portal.readings.models import Reading, ReadingSource, ReadingStatus

PERIOD = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def adjustment_ref(adjustment_no: str) -> str:
    """The ledger ref of an adjustment: also what makes ``apply_adjustment`` idempotent."""
    return f"adjustment:{adjustment_no}"


def _check_period(period: str) -> None:
    if not PERIOD.fullmatch(period):
        raise BillingRejected("invalid_period", f"period must be YYYY-MM, got {period!r}")


def _check_amount(amount_fen: object, *, positive: bool) -> None:
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or (
            amount_fen <= 0 if positive else amount_fen == 0):
        raise BillingRejected("invalid_amount", f"amount_fen must be a non-zero integer "
                                                f"{'above 0 ' if positive else ''}(fen)")


def bill_info(bill: Bill, account_no: str) -> BillInfo:
    lines = tuple(BillLineInfo(kind=line.kind.value, amount_fen=line.amount_fen,
                               description=line.description, tier=line.tier,
                               register=line.register, kwh=line.kwh, unit_price=line.unit_price)
                  for line in bill.lines)
    return BillInfo(account_no=account_no, period=bill.period, version=bill.version,
                    period_start=bill.period_start, period_end=bill.period_end, kwh=bill.kwh,
                    tariff_code=bill.tariff_code, total_fen=bill.total_fen,
                    status=bill.status.value, due_date=bill.due_date, lines=lines,
                    review_reason=bill.review_reason, peak_kwh=bill.peak_kwh,
                    flat_kwh=bill.flat_kwh, valley_kwh=bill.valley_kwh)


class LocalBillingSystem:
    def __init__(self, session: Session, clock: Clock) -> None:
        self.session = session
        self.clock = clock

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        with self.session.begin_nested():
            yield

    def _account(self, account_no: str) -> ElectricityAccount:
        account = self.session.scalars(
            sa.select(ElectricityAccount).where(ElectricityAccount.account_no == account_no)
        ).first()
        if account is None:
            raise BillingRejected("unknown_account", f"no account {account_no!r}")
        return account

    def _insert_posting(self) -> postgresql.Insert | sqlite.Insert:
        dialect = self.session.get_bind().dialect.name
        return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(BillingPosting)

    # --- reads ---------------------------------------------------------------------------

    def get_account(self, account_no: str) -> AccountInfo:
        account = self._account(account_no)
        return AccountInfo(account_no=account.account_no, holder_name=account.holder_name,
                           address=account.address,
                           customer_class=account.customer_class.value,
                           tariff_code=account.tariff_code,
                           district_code=account.district.code)

    def list_bills(self, account_no: str, since: str) -> list[BillInfo]:
        _check_period(since)
        account = self._account(account_no)
        newest = (
            sa.select(Bill.period, sa.func.max(Bill.version).label("version"))
            .where(Bill.account_id == account.id, Bill.period >= since)
            .group_by(Bill.period)
            .subquery()
        )
        bills = self.session.scalars(
            sa.select(Bill).options(selectinload(Bill.lines))
            .join(newest, sa.and_(Bill.period == newest.c.period,
                                  Bill.version == newest.c.version))
            .where(Bill.account_id == account.id)
            .order_by(Bill.period)
        )
        return [bill_info(bill, account.account_no) for bill in bills]

    # --- readings ------------------------------------------------------------------------

    def submit_reading(self, reading: ReadingSubmission) -> ReadingReceipt:
        _check_period(reading.period)
        values = [reading.value_kwh, reading.peak_kwh, reading.flat_kwh, reading.valley_kwh]
        if any(v is not None and (not v.is_finite() or v < 0) for v in values):
            raise BillingRejected("negative_reading", "a meter reading cannot be negative")
        try:
            source = ReadingSource(reading.source)
        except ValueError:
            raise BillingRejected("invalid_source", f"unknown source {reading.source!r}") from None
        account = self._account(reading.account_no)
        meter = self.session.scalars(
            sa.select(Meter).where(Meter.meter_no == reading.meter_no,
                                   Meter.account_id == account.id)
        ).first()
        if meter is None:
            raise BillingRejected("unknown_meter",
                                  f"meter {reading.meter_no!r} is not on this account")
        # The contract's reading key (account, meter, period, date, value): a repeat is the same
        # reading. In embedded mode the portal's readings service has already written the row
        # it hands over (validated by portal.readings.rules): it is that reading, not a new one.
        same = self.session.scalars(
            sa.select(Reading)
            .where(Reading.meter_id == meter.id, Reading.period == reading.period,
                   Reading.read_on == reading.read_on, Reading.value_kwh == reading.value_kwh,
                   Reading.source == source, Reading.status != ReadingStatus.REJECTED)
            .order_by(Reading.id).limit(1)
        ).first()
        if same is not None:
            return ReadingReceipt(reading_ref=f"R{same.id}",
                                  accepted=same.status is ReadingStatus.ACCEPTED,
                                  reason=None if same.status is ReadingStatus.ACCEPTED
                                  else "awaiting_validation")
        previous = self.session.scalars(
            sa.select(Reading)
            .where(Reading.meter_id == meter.id, Reading.read_on <= reading.read_on,
                   Reading.status != ReadingStatus.REJECTED)
            .order_by(Reading.read_on.desc(), Reading.id.desc())
            .limit(1)
        ).first()
        # Readings are per meter: after a meter change the new meter starts its own sequence.
        if previous is not None and reading.value_kwh < previous.value_kwh:
            raise BillingRejected(
                "reading_below_previous",
                f"{reading.value_kwh} kWh is below the previous reading "
                f"{previous.value_kwh} kWh of {previous.read_on.isoformat()}")
        # Self-readings wait for their validation (a later issue); the utility's are taken as read.
        status = (ReadingStatus.SUBMITTED if source is ReadingSource.CUSTOMER
                  else ReadingStatus.ACCEPTED)
        row = Reading(meter_id=meter.id, period=reading.period, read_on=reading.read_on,
                      value_kwh=reading.value_kwh, peak_kwh=reading.peak_kwh,
                      flat_kwh=reading.flat_kwh, valley_kwh=reading.valley_kwh, source=source,
                      status=status, created_at=self.clock.now())
        with self._atomic():
            self.session.add(row)
        accepted = status is ReadingStatus.ACCEPTED
        return ReadingReceipt(reading_ref=f"R{row.id}", accepted=accepted,
                              reason=None if accepted else "awaiting_validation")

    # --- payments ------------------------------------------------------------------------

    def post_payment(self, posting: PaymentPosting) -> PostingReceipt:
        _check_amount(posting.amount_fen, positive=True)
        for period in posting.bill_periods:
            _check_period(period)
        account = self._account(posting.account_no)
        with self._atomic():
            inserted = self.session.execute(
                self._insert_posting().values(
                    order_no=posting.order_no, account_id=account.id,
                    amount_fen=posting.amount_fen, paid_at=posting.paid_at,
                    channel=posting.channel, bill_periods=",".join(posting.bill_periods),
                    created_at=self.clock.now(),
                ).on_conflict_do_nothing(index_elements=["order_no"])
                .returning(BillingPosting.id)
            ).scalar()
        if inserted is not None:
            return PostingReceipt(posting.order_no, f"P{inserted}", duplicate=False)
        existing = self._posting(posting.order_no)
        if existing.account_id != account.id or existing.amount_fen != posting.amount_fen:
            raise BillingRejected("order_conflict", f"order {posting.order_no!r} was posted "
                                                    "with another account or amount")
        return PostingReceipt(posting.order_no, f"P{existing.id}", duplicate=True)

    def _posting(self, order_no: str) -> BillingPosting:
        posting = self.session.scalars(
            sa.select(BillingPosting).where(BillingPosting.order_no == order_no)
        ).first()
        if posting is None:
            raise BillingRejected("unknown_order", f"order {order_no!r} was never posted")
        return posting

    def reverse_payment(self, order_no: str, reason: str, *, reversal_no: str,
                        amount_fen: int) -> PostingReceipt:
        _check_amount(amount_fen, positive=True)
        posting = self._posting(order_no)
        with self._atomic():
            # The posting row is locked so two reversals cannot both fit in what is left of it.
            self.session.execute(sa.select(BillingPosting.id)
                                 .where(BillingPosting.id == posting.id).with_for_update())
            existing = self.session.scalars(sa.select(BillingReversal).where(
                BillingReversal.reversal_no == reversal_no)).first()
            if existing is not None:
                if (existing.posting_id, existing.amount_fen) != (posting.id, amount_fen):
                    raise BillingRejected("reversal_conflict", f"reversal {reversal_no!r} was "
                                          "made for another order or amount")
                return PostingReceipt(order_no, f"P{posting.id}", duplicate=True)
            reversed_fen = self.session.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(BillingReversal.amount_fen), 0))
                .where(BillingReversal.posting_id == posting.id))
            if int(reversed_fen or 0) + amount_fen > posting.amount_fen:
                raise BillingRejected("reversal_too_large", f"order {order_no!r} has "
                                      f"{posting.amount_fen - int(reversed_fen or 0)} fen left "
                                      f"to reverse, not {amount_fen}")
            self.session.add(BillingReversal(reversal_no=reversal_no, posting_id=posting.id,
                                             amount_fen=amount_fen, reason=reason[:255],
                                             created_at=self.clock.now()))
        return PostingReceipt(order_no, f"P{posting.id}", duplicate=False)

    # --- adjustments ---------------------------------------------------------------------

    def apply_adjustment(self, adjustment: Adjustment) -> BillInfo:
        """A new issued version of the period's bill = the previous lines + one adjustment line.

        The ledger gets ``adjustment:<no>`` on the new version and, when the previous version
        still had money owed (or credited), moves that balance onto the new version, so what a
        customer owes on the bill they see (the newest version) stays right."""
        _check_amount(adjustment.amount_fen, positive=False)
        _check_period(adjustment.period)
        account = self._account(adjustment.account_no)
        ledger.lock_account(self.session, account.id)  # the balance moved is read below
        ref = adjustment_ref(adjustment.adjustment_no)
        done = self.session.scalars(sa.select(LedgerEntry).where(LedgerEntry.ref == ref)).first()
        if done is not None:
            bill = self.session.get(Bill, done.bill_id)
            if (bill is None or bill.account_id != account.id
                    or bill.period != adjustment.period
                    or done.amount_fen != adjustment.amount_fen):
                raise BillingRejected("adjustment_conflict",
                                      f"adjustment {adjustment.adjustment_no!r} was applied "
                                      "to another bill or amount")
            return bill_info(bill, account.account_no)
        previous = self.session.scalars(
            sa.select(Bill).options(selectinload(Bill.lines))
            .where(Bill.account_id == account.id, Bill.period == adjustment.period)
            .order_by(Bill.version.desc()).limit(1)
        ).first()
        if previous is None:
            raise BillingRejected("unknown_bill", f"no bill for {adjustment.period}")
        if previous.status is not BillStatus.ISSUED:
            raise BillingRejected("bill_not_issued", "the bill is still under review")
        total = previous.total_fen + adjustment.amount_fen
        if total < 0:
            raise BillingRejected("adjustment_exceeds_bill",
                                  "a credit cannot exceed the bill's total")
        now = self.clock.now()
        today = local_today(self.clock, ZoneInfo(account.district.timezone))
        lines = [BillLine(seq=line.seq, kind=line.kind, tier=line.tier, register=line.register,
                          kwh=line.kwh, unit_price=line.unit_price, amount_fen=line.amount_fen,
                          description=line.description) for line in previous.lines]
        lines.append(BillLine(seq=max((line.seq for line in lines), default=0) + 1,
                              kind=LineKind.ADJUSTMENT, amount_fen=adjustment.amount_fen,
                              description=adjustment.reason[:200]))
        bill = Bill(account_id=account.id, period=previous.period, version=previous.version + 1,
                    period_start=previous.period_start, period_end=previous.period_end,
                    kwh=previous.kwh, peak_kwh=previous.peak_kwh, flat_kwh=previous.flat_kwh,
                    valley_kwh=previous.valley_kwh, tariff_code=previous.tariff_code,
                    total_fen=total, status=BillStatus.ISSUED, due_date=previous.due_date,
                    issued_at=now, created_at=now, lines=lines)
        try:
            with self._atomic():
                self.session.add(bill)
                self.session.flush()
                owed = ledger.owed_by_bill(self.session, [previous.id])[previous.id]
                entries = [(ref, bill.id, adjustment.amount_fen)]
                if owed:
                    entries += [(f"{ref}:carry-out", previous.id, -owed),
                                (f"{ref}:carry-in", bill.id, owed)]
                for entry_ref, bill_id, amount in entries:
                    ledger.post(self.session, self.clock, account_id=account.id,
                                bill_id=bill_id, kind=EntryKind.ADJUSTMENT, amount_fen=amount,
                                ref=entry_ref, effective_on=today,
                                memo=adjustment.reason[:255])
        except IntegrityError:  # a concurrent adjustment of the same bill won the version
            raise BillingUnavailable("the bill changed meanwhile; try again") from None
        return bill_info(bill, account.account_no)

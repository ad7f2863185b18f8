"""The bill review queue (核): bills the bill run held in ``pending_review``, and the two decisions
an auditor takes on one.

* **Approve and issue**: ``bills.service.issue`` (the guarded ``pending_review -> issued`` move and
  the ledger charge with ``charge_ref(bill_id)``): a second submit finds the bill issued already
  and is a Conflict, and the charge's ref is unique, so the customer is charged once.
* **Correct the reading and recompute**: the auditor enters the meter's right reading for the
  period; it is stored as an accepted ``staff`` reading of the period (it supersedes the wrong
  one: the engine bills a period's latest reading), and ``bill_run.reprice`` computes a new
  version of the bill through the engine, verified like any bill: issued with its charge, or held
  again with the new reason (the queue shows it; the auditor may then approve it). The reading is
  written here rather than through ``BillingSystem.submit_reading``, which refuses a value below
  the period's existing (wrong) reading; it is checked against the meter's reading of an earlier
  period instead.

Only the newest version of a period's bill is in the queue (a corrected bill's old version is
superseded, not decided). Each decision writes an audit row (who, when, why) and, when a bill is
issued, a ``bill_issued`` message for the account's customers, in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased, selectinload

from billing_adapter.local import bill_run
from billing_adapter.local.tariffs import TariffBook
from portal.accounts.models import ElectricityAccount, Meter
from portal.backoffice.models import StaffMember
from portal.backoffice.service import account_filter
from portal.bills import service as bills
from portal.bills.models import Bill, BillStatus
from portal.kernel import audit, outbox
from portal.kernel.clock import Clock
from portal.kernel.errors import Conflict, DomainError, NotFound
from portal.kernel.money import format_yuan
from portal.ledger import service as ledger
from portal.readings import rules
from portal.readings import service as readings
from portal.readings.models import Reading, ReadingSource, ReadingStatus

KWH_DIGITS = 12  # whole digits a reading column holds (Numeric(14, 2))


class NotInReview(Conflict):
    code = "bill_not_in_review"


class UnknownMeter(DomainError):
    code = "bill_review_unknown_meter"


class ReadingBelowPrevious(DomainError):
    code = "bill_review_reading_below_previous"


class NoReadingToBill(DomainError):
    code = "bill_review_no_reading"


class ExternalBilling(Conflict):
    """Bills come from an external billing system: it, not the embedded engine, reprices."""

    code = "bill_review_external_billing"


def _newest() -> sa.ColumnElement[bool]:
    """The bill is the newest version of its account's period."""
    newer = aliased(Bill)
    return ~sa.exists().where(newer.account_id == Bill.account_id,
                              newer.period == Bill.period, newer.version > Bill.version)


def queue(session: Session, staff: StaffMember, limit: int = 200) -> list[Bill]:
    """Bills held for review in ``staff``'s districts (newest versions only), oldest first."""
    return list(session.scalars(
        sa.select(Bill).options(selectinload(Bill.account))
        .where(Bill.status == BillStatus.PENDING_REVIEW, _newest(),
               account_filter(session, staff, Bill.account_id))
        .order_by(Bill.created_at, Bill.id).limit(limit)))


def get_scoped_bill(session: Session, staff: StaffMember, bill_id: int) -> Bill:
    """Any version of a bill of ``staff``'s districts (NotFound otherwise), with its lines."""
    bill = session.scalar(sa.select(Bill).options(selectinload(Bill.lines))
                          .where(Bill.id == bill_id,
                                 account_filter(session, staff, Bill.account_id)))
    if bill is None:
        raise NotFound()
    return bill


def is_newest(session: Session, bill: Bill) -> bool:
    return session.scalar(sa.select(Bill.id).where(Bill.id == bill.id, _newest())) is not None


@dataclass(frozen=True)
class MeterReadings:
    meter: Meter
    current: Reading | None   # the period's reading the bill counted
    previous: Reading | None  # the latest accepted reading of an earlier period


def meter_readings(session: Session, bill: Bill) -> list[MeterReadings]:
    """Each meter of the bill's account with the readings its bill counted from and to."""
    meters = session.scalars(sa.select(Meter).where(Meter.account_id == bill.account_id)
                             .order_by(Meter.id))
    return [MeterReadings(m, _reading(session, m.id, Reading.period == bill.period),
                          _reading(session, m.id, Reading.period < bill.period))
            for m in meters]


def _reading(session: Session, meter_id: int, where: sa.ColumnElement[bool]) -> Reading | None:
    return session.scalar(sa.select(Reading).where(
        Reading.meter_id == meter_id, Reading.status == ReadingStatus.ACCEPTED, where)
        .order_by(Reading.period.desc(), Reading.read_on.desc(), Reading.id.desc()).limit(1))


def _lock_newest(session: Session, bill: Bill) -> None:
    """Lock the account (``ledger.lock_account``: decisions on one account's bills queue up),
    then check the bill is still the newest version and held: else someone decided first."""
    ledger.lock_account(session, bill.account_id)
    session.refresh(bill)
    if bill.status is not BillStatus.PENDING_REVIEW or not is_newest(session, bill):
        raise NotInReview(str(bill.id))


def _tell_customers(session: Session, clock: Clock, bill: Bill) -> None:
    account_no = session.scalar(sa.select(ElectricityAccount.account_no)
                                .where(ElectricityAccount.id == bill.account_id))
    outbox.enqueue(session, clock, "notify", {
        "customer_id": None, "account_id": bill.account_id, "event": "bill_issued",
        "params": {"account_no": account_no, "period": bill.period,
                   "amount_yuan": format_yuan(bill.total_fen),
                   "due_date": bill.due_date.isoformat()},
    }, dedup_key=f"notify:bill_issued:bill:{bill.id}")


def approve(session: Session, clock: Clock, staff: StaffMember, bill: Bill, note: str) -> None:
    """Issue a held bill as computed: charged once, the customers told, the decision audited.
    Does not commit."""
    _lock_newest(session, bill)
    try:
        bills.issue(session, clock, bill)
    except Conflict as exc:
        raise NotInReview(str(bill.id)) from exc
    audit.record(session, clock, "bill.approve", "bill", bill.id, staff_id=staff.id,
                 account_id=bill.account_id, amount_fen=bill.total_fen,
                 details={"period": bill.period, "version": bill.version,
                          "review_reason": bill.review_reason or "", "note": note.strip()})
    _tell_customers(session, clock, bill)


def _checked_registers(book: TariffBook, meter: Meter, bill: Bill, value_kwh: Decimal,
                       registers: dict[str, Decimal | None]
                       ) -> tuple[Decimal, dict[str, Decimal | None]]:
    """The reading's shape checked as a reviewer's correction of a self-reading is: the
    registers the meter is read on (none for a plain meter), adding up to the total; else
    ``InvalidReading`` naming the field."""
    wanted = readings.registers_of(book, meter, bill.period_end)
    try:
        shape = rules.check_shape(value_kwh, registers, wanted, KWH_DIGITS)
    except rules.BadValue as exc:
        raise readings.InvalidReading(exc.code, exc.field) from None
    if shape.parts and sum(shape.parts.values(), Decimal(0)) != shape.total:
        raise readings.InvalidReading("reading_registers_do_not_add_up", "value_kwh")
    return shape.total, {name: shape.parts.get(name) for name in rules.REGISTERS}


def correct(session: Session, clock: Clock, staff: StaffMember, bill: Bill, book: TariffBook,
            config: bill_run.RunConfig, *, meter_id: int, value_kwh: Decimal,
            registers: dict[str, Decimal | None], reason: str) -> Bill:
    """Store the right reading of the period and recompute the bill through the engine (a run
    as ``config`` says): the new version, issued (charged, customers told) or held again. A
    value below the previous reading is refused unless it is a rollover
    (``rules.usage_between``). Does not commit."""
    _lock_newest(session, bill)
    meter = session.scalar(sa.select(Meter).where(Meter.id == meter_id,
                                                  Meter.account_id == bill.account_id))
    if meter is None:
        raise UnknownMeter(str(meter_id))
    value_kwh, registers = _checked_registers(book, meter, bill, value_kwh, registers)
    current = _reading(session, meter.id, Reading.period == bill.period)
    previous = _reading(session, meter.id, Reading.period < bill.period)
    if previous is not None and rules.usage_between(previous.value_kwh, value_kwh,
                                                    config.meter_digits)[0] is None:
        raise ReadingBelowPrevious(str(previous.value_kwh))
    session.add(Reading(
        meter_id=meter.id, period=bill.period,
        read_on=current.read_on if current is not None else bill.period_end,
        value_kwh=value_kwh, peak_kwh=registers.get("peak"), flat_kwh=registers.get("flat"),
        valley_kwh=registers.get("valley"), source=ReadingSource.STAFF,
        status=ReadingStatus.ACCEPTED, created_at=clock.now()))
    session.flush()
    try:
        new = bill_run.reprice(session, clock, book, bill.account_id, bill.period, config)
    except bill_run.PeriodError as exc:
        raise NoReadingToBill(bill.period) from exc
    audit.record(session, clock, "bill.correct", "bill", bill.id, staff_id=staff.id,
                 account_id=bill.account_id, amount_fen=new.total_fen,
                 details={"period": bill.period, "meter_no": meter.meter_no,
                          "old_kwh_reading": str(current.value_kwh) if current else "",
                          "new_kwh_reading": str(value_kwh), "reason": reason.strip(),
                          "old_total_fen": bill.total_fen, "new_bill_id": new.id,
                          "new_version": new.version, "new_status": new.status.value,
                          "review_reason": bill.review_reason or ""})
    if new.status is BillStatus.ISSUED:
        _tell_customers(session, clock, new)
    return new

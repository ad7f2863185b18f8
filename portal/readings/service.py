"""Self-reported meter readings and the staff review of flagged ones: the one service the web
pages, the mini-program API and the import command call.

Flask-free: callers pass the session, the clock and the settings, and commit (or roll back) the
transaction; nothing here commits. Errors are ``DomainError``s with stable codes (words in
``portal.messages``; ``params`` fill them in).

Customer flow: ``meters_for_customer`` -> ``preview`` (the usage the reading implies, the
estimated bill, plain warnings) -> ``submit`` (with the photo). A reading that passes every rule of
``portal.readings.rules`` is accepted and handed to ``BillingSystem.submit_reading`` in the same
transaction; one that does not is stored ``flagged`` for staff. A customer may submit inside the
month's reading window only (``window``), one reading per meter per period (a rejected one may be
replaced). ``list_for_customer`` and ``photo_for_customer`` show only the customer's own.

Staff flow (permission ``review_readings``, district-scoped): ``flagged_for_staff``,
``get_for_staff``, ``photo_for_staff``, then ``accept``, ``reject`` (a reason is required) or
``correct`` (new values and a reason). Each decision is kept on the reading (who, when, why, the
value before a correction), written to the audit log, and told to the customer through the
outbox (``reading_accepted`` / ``reading_rejected``), all in the caller's transaction.

Staff-entered and imported readings (``record``, ``import_rows``) pass the same rules; no window.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload

from billing_adapter.base import (
    BillingRejected,
    BillingSystem,
    BillingUnavailable,
    ReadingSubmission,
)
from billing_adapter.local.pricing import Usage, UsageError, quote
from billing_adapter.local.tariffs import TariffBook, TariffError
from billing_adapter.local.verification import Thresholds
from portal.accounts.models import AccountLink, ElectricityAccount, Meter
from portal.backoffice.models import StaffMember
from portal.backoffice.service import get_scoped_account, scoped_readings
from portal.bills.models import Bill, BillStatus
from portal.kernel import audit, outbox
from portal.kernel.clock import Clock, local_today
from portal.kernel.errors import Conflict, DomainError, NotFound
from portal.kernel.uploads import JPEG, PHOTOS, FileStore, Reencode, Upload, UploadRules, check_all
from portal.readings import rules
from portal.readings.models import READING_MACHINE, Reading, ReadingSource, ReadingStatus
from portal.readings.rules import REGISTERS, Assessment, Flag, Registers
from portal.settings import Settings

NOTIFY_TOPIC = "notify"
NOTE_MAX = 255
HISTORY_MONTHS = 6
PERIOD_RE = re.compile(r"20\d\d-(0[1-9]|1[0-2])")
# a meter's digits need far fewer than 2400 px a side; stored as a fresh JPEG without EXIF
PHOTO_REENCODE = Reencode(as_jpeg=True, max_side=2400, jpeg_quality=85)


def photo_rules(settings: Settings) -> UploadRules:
    """What a meter photo may be: one JPEG or PNG, re-encoded as a JPEG from its pixels alone."""
    return UploadRules(max_bytes=settings.reading_photo_max_bytes, kinds=PHOTOS,
                       max_pixels=settings.reading_photo_max_pixels, reencode=PHOTO_REENCODE)


def photo_store(settings: Settings) -> FileStore:
    return FileStore(settings.reading_photo_dir)


# --- errors ------------------------------------------------------------------------------------

class InvalidReading(DomainError):
    """A value that cannot be a reading; ``field`` names the input (value_kwh, peak_kwh, ...)."""

    def __init__(self, code: str, field: str) -> None:
        super().__init__(f"{field}: {code}")
        self.code = code
        self.field = field


class WindowClosed(DomainError):
    """Outside the month's self-reading window; ``params["date"]`` is when the next one opens."""

    code = "reading_window_closed"

    def __init__(self, opens_on: date) -> None:
        super().__init__(opens_on.isoformat())
        self.opens_on = opens_on
        self.params: dict[str, object] = {"date": opens_on}


class PhotoRequired(DomainError):
    code = "reading_photo_required"


class ReadingExists(Conflict):
    code = "reading_exists"


class ReasonRequired(DomainError):
    code = "reading_reason_required"


class AlreadyDecided(Conflict):
    code = "reading_already_decided"


class BillingDown(DomainError):
    code = "reading_billing_unavailable"
    status = 503


class BillingRefused(DomainError):
    """The billing system refused a reading staff accepted; ``params["code"]`` is its reason."""

    code = "reading_billing_refused"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.params = {"code": reason}


# --- inputs and answers ------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """A reading as typed in: the total register and, on a TOU meter, each register (kWh)."""

    meter_id: int
    value_kwh: Decimal | None
    peak_kwh: Decimal | None = None
    flat_kwh: Decimal | None = None
    valley_kwh: Decimal | None = None

    def parts(self) -> dict[str, Decimal | None]:
        return {"peak": self.peak_kwh, "flat": self.flat_kwh, "valley": self.valley_kwh}


@dataclass(frozen=True)
class Window:
    """The self-reading window of a month, as of ``today``."""

    is_open: bool
    period: str       # the period a reading made today is for (today's month)
    opens_on: date    # today's window's first day when open, else the next window's
    closes_on: date   # the last day of that window


@dataclass(frozen=True)
class Preview:
    """What the customer sees before confirming (and what ``submit`` decides on)."""

    meter_id: int
    account_id: int
    account_no: str
    meter_no: str
    registers: tuple[str, ...]        # the TOU registers the meter is read on (empty: plain)
    period: str
    read_on: date
    reading: Registers
    previous_kwh: Decimal | None
    previous_on: date | None
    usage_kwh: Decimal | None          # None: it cannot be told (the reading went down)
    register_usage: dict[str, Decimal]
    estimate_fen: int | None           # the estimated bill for the usage; None: cannot price
    rollover: bool
    flags: tuple[Flag, ...]

    @property
    def plausible(self) -> bool:
        return not self.flags


@dataclass(frozen=True)
class MeterChoice:
    meter: Meter
    account: ElectricityAccount
    registers: tuple[str, ...]
    window: Window


# --- windows -----------------------------------------------------------------------------------

def _month_add(first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _period_bounds(period: str) -> tuple[date, date]:
    year, month = (int(part) for part in period.split("-"))
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def window(settings: Settings, district_code: str, today: date) -> Window:
    """The window of the district (``DIANFEI_READING_WINDOWS``, else the default days), as of
    ``today``. A last day beyond the month's end is the month's last day."""
    first, last = settings.reading_windows.get(
        district_code, (settings.reading_window_first_day, settings.reading_window_last_day))

    def bounds(month_start: date) -> tuple[date, date]:
        days = calendar.monthrange(month_start.year, month_start.month)[1]
        return (month_start.replace(day=min(first, days)),
                month_start.replace(day=min(last, days)))

    this_month = today.replace(day=1)
    opens, closes = bounds(this_month)
    period = f"{today:%Y-%m}"
    if opens <= today <= closes:
        return Window(True, period, opens, closes)
    if today > closes:
        opens, closes = bounds(_month_add(this_month, 1))
    return Window(False, period, opens, closes)


def _today(clock: Clock, account: ElectricityAccount) -> date:
    return local_today(clock, ZoneInfo(account.district.timezone))


# --- reading the meter's context ---------------------------------------------------------------

def _book(session: Session) -> TariffBook:
    return TariffBook.from_db(session)


def registers_of(book: TariffBook, meter: Meter, on: date) -> tuple[str, ...]:
    """The TOU registers a meter is read on: those its tariff prices (all three when the tariff
    is unknown); none for a plain meter."""
    if not meter.is_tou:
        return ()
    try:
        prices = book.version_on(meter.account.tariff_code, on).prices
    except TariffError:
        return REGISTERS
    named = tuple(name for name in REGISTERS if name in prices)
    return named or REGISTERS


def _previous(session: Session, meter_id: int, period: str,
              exclude_id: int | None = None) -> Reading | None:
    """The meter's latest accepted reading of an earlier period."""
    query = (sa.select(Reading)
             .where(Reading.meter_id == meter_id, Reading.period < period,
                    Reading.status == ReadingStatus.ACCEPTED)
             .order_by(Reading.period.desc(), Reading.read_on.desc(), Reading.id.desc())
             .limit(1))
    if exclude_id is not None:
        query = query.where(Reading.id != exclude_id)
    return session.scalars(query).first()


def _history(session: Session, account_id: int, period: str) -> list[Decimal]:
    """kWh of the account's latest bill versions of the 6 periods before ``period``, oldest
    first (the bill run's trailing average)."""
    start, _end = _period_bounds(period)
    since = f"{_month_add(start, -HISTORY_MONTHS):%Y-%m}"
    newest = (sa.select(Bill.period, sa.func.max(Bill.version).label("version"))
              .where(Bill.account_id == account_id, Bill.period >= since, Bill.period < period)
              .group_by(Bill.period).subquery())
    return list(session.scalars(
        sa.select(Bill.kwh)
        .join(newest, sa.and_(Bill.period == newest.c.period, Bill.version == newest.c.version))
        .where(Bill.account_id == account_id).order_by(Bill.period)))


def _estimate(session: Session, book: TariffBook, account: ElectricityAccount, period: str,
              usage: Decimal | None, register_usage: Mapping[str, Decimal]) -> int | None:
    """The bill ``usage`` would make, priced by the billing engine's ``quote`` (with the tier
    year's earlier kWh for annual tiers); None when it cannot be priced."""
    if usage is None:
        return None
    start, end = _period_bounds(period)
    try:
        prior = Decimal(0)
        year = book.tier_year(account.tariff_code, start)
        if year is not None:
            newest = (sa.select(Bill.period, sa.func.max(Bill.version).label("version"))
                      .where(Bill.account_id == account.id, Bill.period_start >= year[0],
                             Bill.period < period)
                      .group_by(Bill.period).subquery())
            prior = Decimal(session.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(Bill.kwh), 0))
                .join(newest, sa.and_(Bill.period == newest.c.period,
                                      Bill.version == newest.c.version))
                .where(Bill.account_id == account.id, Bill.status == BillStatus.ISSUED)) or 0)
        parts = {name: register_usage.get(name) for name in REGISTERS}
        return quote(book, account.tariff_code, start, end,
                     Usage(usage, parts["peak"], parts["flat"], parts["valley"]),
                     prior).total_fen
    except (TariffError, UsageError):
        return None


def _thresholds(settings: Settings) -> Thresholds:
    return Thresholds(low_ratio=settings.review_low_ratio, high_ratio=settings.review_high_ratio,
                      min_history_months=settings.review_min_history_months)


def _shape(entry_total: Decimal | None, parts: Mapping[str, Decimal | None],
           registers: Sequence[str], settings: Settings) -> Registers:
    try:
        return rules.check_shape(entry_total, parts, registers, settings.reading_meter_digits)
    except rules.BadValue as exc:
        raise InvalidReading(exc.code, exc.field) from None


def _registers_of_row(row: Reading) -> Registers:
    parts = {"peak": row.peak_kwh, "flat": row.flat_kwh, "valley": row.valley_kwh}
    return Registers(row.value_kwh, {k: v for k, v in parts.items() if v is not None})


def _assess(session: Session, settings: Settings, book: TariffBook, meter: Meter, period: str,
            read_on: date, reading: Registers, registers: tuple[str, ...],
            exclude_id: int | None = None) -> Preview:
    account = meter.account
    previous = _previous(session, meter.id, period, exclude_id)
    start, end = _period_bounds(period)
    facts = rules.Facts(
        reading=reading, meter_no=meter.meter_no,
        previous=_registers_of_row(previous) if previous is not None else None,
        installed_in_period=start <= meter.installed_on <= end,
        history_kwh=_history(session, account.id, period), digits=settings.reading_meter_digits)
    result: Assessment = rules.assess(facts, _thresholds(settings))
    return Preview(
        meter_id=meter.id, account_id=account.id, account_no=account.account_no,
        meter_no=meter.meter_no, registers=registers, period=period, read_on=read_on,
        reading=reading, previous_kwh=previous.value_kwh if previous is not None else None,
        previous_on=previous.read_on if previous is not None else None,
        usage_kwh=result.usage_kwh, register_usage=result.register_usage,
        estimate_fen=_estimate(session, book, account, period, result.usage_kwh,
                               result.register_usage),
        rollover=result.rollover, flags=result.flags)


def _has_reading(session: Session, meter_id: int, period: str) -> bool:
    return session.scalar(sa.select(Reading.id).where(
        Reading.meter_id == meter_id, Reading.period == period,
        Reading.status != ReadingStatus.REJECTED).limit(1)) is not None


# --- the customer's side -----------------------------------------------------------------------

def _owned_meter(session: Session, customer_id: int, meter_id: int,
                 lock: bool = False) -> Meter:
    """A meter in service on an account the customer linked; NotFound otherwise."""
    query = (sa.select(Meter).join(AccountLink, AccountLink.account_id == Meter.account_id)
             .where(AccountLink.customer_id == customer_id, Meter.id == meter_id,
                    Meter.removed_on.is_(None)))
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=Meter)  # one reading per meter and period, even racing
    meter = session.scalar(query)
    if meter is None:
        raise NotFound()
    return meter


def meters_for_customer(session: Session, clock: Clock, settings: Settings,
                        customer_id: int) -> list[MeterChoice]:
    """The meters in service on the customer's linked accounts, with their registers and
    today's window."""
    meters = session.scalars(
        sa.select(Meter).join(AccountLink, AccountLink.account_id == Meter.account_id)
        .options(joinedload(Meter.account).joinedload(ElectricityAccount.district))
        .where(AccountLink.customer_id == customer_id, Meter.removed_on.is_(None))
        .order_by(AccountLink.created_at, Meter.id)).unique()
    book = _book(session)
    choices = []
    for meter in meters:
        today = _today(clock, meter.account)
        choices.append(MeterChoice(meter, meter.account, registers_of(book, meter, today),
                                   window(settings, meter.account.district.code, today)))
    return choices


def _customer_preview(session: Session, clock: Clock, settings: Settings, customer_id: int,
                      entry: Entry, lock: bool = False) -> Preview:
    meter = _owned_meter(session, customer_id, entry.meter_id, lock=lock)
    account = meter.account
    today = _today(clock, account)
    open_window = window(settings, account.district.code, today)
    if not open_window.is_open:
        raise WindowClosed(open_window.opens_on)
    book = _book(session)
    registers = registers_of(book, meter, today)
    reading = _shape(entry.value_kwh, entry.parts(), registers, settings)
    if _has_reading(session, meter.id, open_window.period):
        raise ReadingExists()
    return _assess(session, settings, book, meter, open_window.period, today, reading, registers)


def preview(session: Session, clock: Clock, settings: Settings, customer_id: int,
            entry: Entry) -> Preview:
    """What submitting ``entry`` today would mean; writes nothing. Raises NotFound (not the
    customer's meter), WindowClosed, InvalidReading, ReadingExists."""
    return _customer_preview(session, clock, settings, customer_id, entry)


def _submission(row: Reading, meter: Meter) -> ReadingSubmission:
    return ReadingSubmission(
        account_no=meter.account.account_no, meter_no=meter.meter_no, period=row.period,
        read_on=row.read_on, value_kwh=row.value_kwh, source=row.source.value,
        peak_kwh=row.peak_kwh, flat_kwh=row.flat_kwh, valley_kwh=row.valley_kwh)


def _store(session: Session, clock: Clock, system: BillingSystem, meter: Meter,
           result: Preview, source: ReadingSource, *, customer_id: int | None = None,
           photo_key: str | None = None) -> Reading:
    """Write the reading (``submitted``), then move it: plausible ones are handed to the billing
    system and accepted (``billing_rejected`` flags it instead), the others flagged."""
    row = Reading(meter_id=meter.id, period=result.period, read_on=result.read_on,
                  value_kwh=result.reading.total, peak_kwh=result.reading.parts.get("peak"),
                  flat_kwh=result.reading.parts.get("flat"),
                  valley_kwh=result.reading.parts.get("valley"), source=source,
                  status=ReadingStatus.SUBMITTED, submitted_by_customer_id=customer_id,
                  created_at=clock.now(), photo_key=photo_key)
    session.add(row)
    session.flush()
    flags = list(result.flags)
    if not flags:
        try:
            receipt = system.submit_reading(_submission(row, meter))
        except BillingUnavailable:
            raise BillingDown() from None
        except BillingRejected as exc:
            flags.append(Flag(rules.BILLING_REJECTED, (("code", exc.code),)))
        else:
            row.billing_ref = receipt.reading_ref[:64]
    target = ReadingStatus.FLAGGED if flags else ReadingStatus.ACCEPTED
    values: dict[str, Any] = {"billing_ref": row.billing_ref}
    if flags:
        values["flag_reason"] = rules.encode(flags)
    if not READING_MACHINE.move(session, Reading, row.id, ReadingStatus.SUBMITTED, target,
                                **values):
        raise Conflict()
    session.refresh(row)
    return row


def submit(session: Session, clock: Clock, settings: Settings, customer_id: int, entry: Entry,
           photos: Sequence[Upload], *, system: BillingSystem) -> Reading:
    """Check ``entry`` as ``preview`` does, check (``photo_rules``) and store the one photo, and
    record the reading: ``accepted`` (and in the billing system) or ``flagged`` with its
    reasons. Raises what ``preview`` raises, PhotoRequired, an ``UploadRefused``, or BillingDown
    (nothing is kept; try again later). The photo is kept only if the caller commits."""
    result = _customer_preview(session, clock, settings, customer_id, entry, lock=True)
    checked = check_all(photos, photo_rules(settings))
    if not checked:
        raise PhotoRequired()
    meter = _owned_meter(session, customer_id, entry.meter_id)
    store = photo_store(settings)
    key = store.save(checked[0], session)
    return _store(session, clock, system, meter, result,
                  ReadingSource.CUSTOMER, customer_id=customer_id, photo_key=key)


def list_for_customer(session: Session, customer_id: int, account_id: int | None = None,
                      limit: int = 60) -> list[Reading]:
    """Readings of the meters of the customer's linked accounts (all sources), newest first."""
    query = (sa.select(Reading).join(Meter, Meter.id == Reading.meter_id)
             .join(AccountLink, AccountLink.account_id == Meter.account_id)
             .options(joinedload(Reading.meter).joinedload(Meter.account))
             .where(AccountLink.customer_id == customer_id)
             .order_by(Reading.period.desc(), Reading.id.desc()).limit(limit))
    if account_id is not None:
        query = query.where(Meter.account_id == account_id)
    return list(session.scalars(query).unique())


def get_for_customer(session: Session, customer_id: int, reading_id: int) -> Reading:
    reading = session.scalar(
        sa.select(Reading).join(Meter, Meter.id == Reading.meter_id)
        .join(AccountLink, AccountLink.account_id == Meter.account_id)
        .where(AccountLink.customer_id == customer_id, Reading.id == reading_id))
    if reading is None:
        raise NotFound()
    return reading


def photo_for_customer(session: Session, customer_id: int, reading_id: int) -> StoredPhoto:
    """The photo of a reading on one of the customer's accounts; NotFound otherwise."""
    return _photo_of(get_for_customer(session, customer_id, reading_id))


@dataclass(frozen=True)
class StoredPhoto:
    """Where a reading's photo is kept (in ``photo_store``) and the name it is served under."""

    stored_name: str
    content_type: str
    download_name: str


def _photo_of(reading: Reading) -> StoredPhoto:
    if not reading.photo_key:  # staff-entered and imported readings have none
        raise NotFound()
    return StoredPhoto(reading.photo_key, JPEG, f"reading-{reading.id}.jpg")


# --- staff: the review queue -------------------------------------------------------------------

def flagged_for_staff(session: Session, staff: StaffMember, limit: int = 200) -> list[Reading]:
    """Flagged readings of the staff member's districts, oldest first."""
    return list(session.scalars(
        scoped_readings(session, staff)
        .options(joinedload(Reading.meter).joinedload(Meter.account))
        .where(Reading.status == ReadingStatus.FLAGGED)
        .order_by(Reading.created_at, Reading.id).limit(limit)).unique())


def get_for_staff(session: Session, staff: StaffMember, reading_id: int) -> Reading:
    """A reading of the staff member's districts; NotFound (as if absent) for any other."""
    reading = session.scalar(scoped_readings(session, staff).where(Reading.id == reading_id))
    if reading is None:
        raise NotFound()
    return reading


def photo_for_staff(session: Session, staff: StaffMember, reading_id: int) -> StoredPhoto:
    """The photo of a reading of the staff member's districts; NotFound otherwise."""
    return _photo_of(get_for_staff(session, staff, reading_id))


def recent_for_meter(session: Session, meter_id: int, limit: int = 7) -> list[Reading]:
    """The meter's latest readings, newest first: what a reviewer compares with."""
    return list(session.scalars(
        sa.select(Reading).where(Reading.meter_id == meter_id)
        .order_by(Reading.period.desc(), Reading.id.desc()).limit(limit)))


def reassess(session: Session, settings: Settings, reading: Reading) -> Preview:
    """The rules run again on a stored reading (what the reviewer sees)."""
    meter = reading.meter
    book = _book(session)
    return _assess(session, settings, book, meter, reading.period, reading.read_on,
                   _registers_of_row(reading), registers_of(book, meter, reading.read_on),
                   exclude_id=reading.id)


def _note(note: str | None, required: bool) -> str | None:
    text = " ".join((note or "").split())[:NOTE_MAX]
    if required and not text:
        raise ReasonRequired()
    return text or None


def _decide(session: Session, clock: Clock, staff: StaffMember, reading: Reading,
            target: ReadingStatus, note: str | None, **values: Any) -> None:
    moved = READING_MACHINE.move(
        session, Reading, reading.id, ReadingStatus.FLAGGED, target,
        decided_by_staff_id=staff.id, decided_at=clock.now(), decision_note=note, **values)
    if not moved:
        raise AlreadyDecided()
    session.refresh(reading)


def _to_billing(system: BillingSystem, reading: Reading) -> None:
    try:
        receipt = system.submit_reading(_submission(reading, reading.meter))
    except BillingUnavailable:
        raise BillingDown() from None
    except BillingRejected as exc:
        raise BillingRefused(exc.code) from None
    reading.billing_ref = receipt.reading_ref[:64]


def _tell_customer(session: Session, clock: Clock, reading: Reading, event: str,
                   params: dict[str, str]) -> None:
    if reading.submitted_by_customer_id is None:
        return
    outbox.enqueue(session, clock, NOTIFY_TOPIC,
                   {"customer_id": reading.submitted_by_customer_id,
                    "account_id": reading.meter.account_id, "event": event, "params": params},
                   dedup_key=f"notify:{event}:reading:{reading.id}")


def _audit(session: Session, clock: Clock, staff: StaffMember, reading: Reading, action: str,
           details: dict[str, Any]) -> None:
    audit.record(session, clock, action, "reading", reading.id, staff_id=staff.id,
                 account_id=reading.meter.account_id,
                 details={"flags": reading.flag_reason, **details})


def accept(session: Session, clock: Clock, staff: StaffMember, reading_id: int,
           note: str | None = None, *, system: BillingSystem) -> Reading:
    """Accept a flagged reading as read, and hand it to the billing system."""
    reading = get_for_staff(session, staff, reading_id)
    text = _note(note, required=False)
    _decide(session, clock, staff, reading, ReadingStatus.ACCEPTED, text)
    _to_billing(system, reading)
    _audit(session, clock, staff, reading, "reading.accept",
           {"note": text, "value_kwh": str(reading.value_kwh)})
    _tell_customer(session, clock, reading, "reading_accepted",
                   {"account_no": reading.meter.account.account_no, "period": reading.period,
                    "value_kwh": str(reading.value_kwh)})
    return reading


def reject(session: Session, clock: Clock, staff: StaffMember, reading_id: int,
           note: str | None) -> Reading:
    """Reject a flagged reading with a reason the customer reads."""
    reading = get_for_staff(session, staff, reading_id)
    text = _note(note, required=True)
    _decide(session, clock, staff, reading, ReadingStatus.REJECTED, text)
    _audit(session, clock, staff, reading, "reading.reject", {"note": text})
    _tell_customer(session, clock, reading, "reading_rejected",
                   {"account_no": reading.meter.account.account_no, "period": reading.period,
                    "reason": text or ""})
    return reading


def correct(session: Session, clock: Clock, settings: Settings, staff: StaffMember,
            reading_id: int, entry: Entry, note: str | None, *,
            system: BillingSystem) -> Reading:
    """Accept a flagged reading with corrected values (e.g. read off its photo) and a reason.
    The values must be well formed and the registers add up; the staff member's decision
    stands over the other rules."""
    reading = get_for_staff(session, staff, reading_id)
    text = _note(note, required=True)
    book = _book(session)
    registers = registers_of(book, reading.meter, reading.read_on)
    values = _shape(entry.value_kwh, entry.parts(), registers, settings)
    if any(f.code == rules.TOU_SUM_MISMATCH
           for f in rules.assess(rules.Facts(values, reading.meter.meter_no, None, True),
                                 _thresholds(settings)).flags):
        raise InvalidReading("reading_registers_do_not_add_up", "value_kwh")
    before = {"value_kwh": str(reading.value_kwh),
              **{f"{k}_kwh": str(v) for k, v in _registers_of_row(reading).parts.items()}}
    _decide(session, clock, staff, reading, ReadingStatus.ACCEPTED, text,
            corrected_from_kwh=reading.value_kwh, value_kwh=values.total,
            peak_kwh=values.parts.get("peak"), flat_kwh=values.parts.get("flat"),
            valley_kwh=values.parts.get("valley"))
    _to_billing(system, reading)
    _audit(session, clock, staff, reading, "reading.correct",
           {"note": text, "before": before,
            "after": {"value_kwh": str(values.total),
                      **{f"{k}_kwh": str(v) for k, v in values.parts.items()}}})
    _tell_customer(session, clock, reading, "reading_accepted",
                   {"account_no": reading.meter.account.account_no, "period": reading.period,
                    "value_kwh": str(reading.value_kwh)})
    return reading


# --- staff-entered and imported readings -------------------------------------------------------

@dataclass(frozen=True)
class ImportRow:
    """One reading to record (a CSV row, or a staff member's entry)."""

    account_no: str
    meter_no: str
    period: str
    read_on: date
    value_kwh: Decimal | None
    peak_kwh: Decimal | None = None
    flat_kwh: Decimal | None = None
    valley_kwh: Decimal | None = None


@dataclass
class ImportResult:
    accepted: int = 0
    flagged: int = 0
    errors: list[tuple[int, DomainError]] = field(default_factory=list)
    # (row number, error): row numbers count the header as row 1, as a spreadsheet shows them


def _meter_by_no(session: Session, account_no: str, meter_no: str) -> Meter | None:
    return session.scalar(
        sa.select(Meter).join(ElectricityAccount, ElectricityAccount.id == Meter.account_id)
        .options(joinedload(Meter.account))
        .where(Meter.meter_no == meter_no, ElectricityAccount.account_no == account_no))


def record(session: Session, clock: Clock, settings: Settings, row: ImportRow,
           source: ReadingSource, *, system: BillingSystem,
           staff: StaffMember | None = None, book: TariffBook | None = None) -> Reading:
    """A staff-entered or imported reading, through the same rules as a self-reading (no
    window, no photo): accepted and handed to billing, or flagged for review. A member of
    ``staff`` entering it is written to the audit log (``reading.record``); only accounts of
    their districts are found."""
    if not PERIOD_RE.fullmatch(row.period):
        raise InvalidReading("reading_bad_period", "period")
    meter = _meter_by_no(session, row.account_no, row.meter_no)
    if meter is None:
        raise InvalidReading("reading_unknown_meter", "meter_no")
    if staff is not None:
        get_scoped_account(session, staff, meter.account_id)  # NotFound outside their districts
    book = book or _book(session)
    registers = registers_of(book, meter, row.read_on)
    reading = _shape(row.value_kwh, {"peak": row.peak_kwh, "flat": row.flat_kwh,
                                     "valley": row.valley_kwh}, registers, settings)
    if _has_reading(session, meter.id, row.period):
        raise ReadingExists()
    result = _assess(session, settings, book, meter, row.period, row.read_on, reading,
                     registers)
    stored = _store(session, clock, system, meter, result, source)
    if staff is not None:
        audit.record(session, clock, "reading.record", "reading", stored.id, staff_id=staff.id,
                     account_id=meter.account_id,
                     details={"value_kwh": str(stored.value_kwh), "period": stored.period,
                              "status": stored.status.value, "flags": stored.flag_reason})
    return stored


CSV_COLUMNS = ("account_no", "meter_no", "period", "read_on", "value_kwh", "peak_kwh",
               "flat_kwh", "valley_kwh")
REQUIRED_COLUMNS = CSV_COLUMNS[:5]


def parse_row(raw: Mapping[str, str | None]) -> ImportRow:
    """A CSV row (``CSV_COLUMNS``) as an ImportRow; InvalidReading names the bad column."""
    def text(name: str) -> str:
        return (raw.get(name) or "").strip()

    def kwh(name: str) -> Decimal | None:
        value = text(name)
        if not value:
            return None
        try:
            return Decimal(value)
        except InvalidOperation:
            raise InvalidReading("reading_value_not_number", name) from None

    for name in ("account_no", "meter_no"):
        if not text(name) or len(text(name)) > 32:
            raise InvalidReading("reading_missing_column", name)
    try:
        read_on = date.fromisoformat(text("read_on"))
    except ValueError:
        raise InvalidReading("reading_bad_date", "read_on") from None
    return ImportRow(text("account_no"), text("meter_no"), text("period"), read_on,
                     kwh("value_kwh"), kwh("peak_kwh"), kwh("flat_kwh"), kwh("valley_kwh"))


def import_rows(session: Session, clock: Clock, settings: Settings,
                rows: Iterable[Mapping[str, str | None]], *,
                system: BillingSystem,
                progress: Callable[[int], None] | None = None) -> ImportResult:
    """Record every row (``source=import``), in order, in the caller's transaction; collect an
    error per bad row instead of stopping. The caller commits only when ``errors`` is empty
    (all or nothing) and rolls back otherwise."""
    result = ImportResult()
    book = _book(session)  # read once for the file
    for number, raw in enumerate(rows, start=2):
        try:
            with session.begin_nested():
                reading = record(session, clock, settings, parse_row(raw), ReadingSource.IMPORT,
                                 system=system, book=book)
        except DomainError as exc:
            result.errors.append((number, exc))
            if isinstance(exc, BillingDown):
                break  # every later row would fail the same way
        else:
            if reading.status is ReadingStatus.ACCEPTED:
                result.accepted += 1
            else:
                result.flagged += 1
        if progress is not None:
            progress(1)
    return result


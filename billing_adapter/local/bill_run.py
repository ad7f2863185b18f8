"""The bill run: compute, verify and issue one period's bills for every account with a reading.

Flask-free; the ``billing run`` command and the demo call :func:`run`. Rules:

* **Which accounts**: every account with an *accepted* reading of the period and no bill for the
  period yet (any version). Rerunning the period therefore changes nothing, and a run that
  crashed resumes where it stopped: accounts are taken in id order, in chunks, and each chunk is
  written and committed in its own transaction.
* **Usage**: per meter, this period's reading minus that meter's latest earlier accepted reading
  (each TOU register likewise), summed over the account's meters. A meter without an earlier
  reading counts from 0: right for a new meter (a meter change is a new ``Meter`` row installed
  in the period), held for review (``no_previous_reading``) otherwise. A register that went down
  is held (``reading_went_down``) with 0 kWh and nothing priced.
* **Price**: ``pricing.quote`` (the one pricing rule), with ``prior_kwh`` = the kWh of the
  account's latest bill versions whose period starts in the same tier year before this period,
  for tariffs with annual tiers (0 for monthly ones). Identical inputs are priced once per run.
* **Verify**: ``verification.check``; a bill with a reason is stored ``pending_review`` with the
  reason, the others ``issued`` with their ledger charge (ref ``charge_ref(bill_id)``, effective
  on the due date, none for a 0 total), which is what ``bills.service.issue`` does one bill at a
  time. Rows are written as a draft that has already moved (draft -> issued or pending_review).
* **Prepaid balance**: in each chunk's transaction, accounts of the chunk holding unallocated
  credit (one query) have it allocated to their owed bills (``ledger.apply_prepaid_in_range``,
  as ``issue`` does), so an overpayment pays the next bill the moment it is issued.
* **Due date**: the ``due_day`` of the month after the period.
* **Writes are set-based**: ids are allocated in one statement, then bills, lines and ledger
  entries are written with ``COPY`` on PostgreSQL and a multi-row INSERT elsewhere.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing_adapter.base import BillLineInfo
from billing_adapter.local.pricing import Quote, Usage, quote
from billing_adapter.local.tariffs import TariffBook, load_tariffs
from billing_adapter.local.verification import Facts, Thresholds, check, encode
from portal.accounts.models import ElectricityAccount, Meter
from portal.bills.models import Bill, BillLine, BillStatus, charge_ref
from portal.kernel.clock import Clock
from portal.ledger import service as ledger
from portal.ledger.models import EntryKind, LedgerEntry
from portal.readings.models import Reading, ReadingSource, ReadingStatus

REGISTERS = ("peak", "flat", "valley")
BILLS, LINES, ENTRIES = (cast(sa.Table, model.__table__)
                         for model in (Bill, BillLine, LedgerEntry))
BILL_COLUMNS = ("id", "account_id", "period", "version", "period_start", "period_end", "kwh",
                "peak_kwh", "flat_kwh", "valley_kwh", "tariff_code", "total_fen", "status",
                "review_reason", "due_date", "issued_at", "created_at")
LINE_COLUMNS = ("bill_id", "seq", "kind", "tier", "register", "kwh", "unit_price", "amount_fen",
                "description")
ENTRY_COLUMNS = ("account_id", "bill_id", "kind", "amount_fen", "ref", "memo", "effective_on",
                 "created_at")
ZERO = Decimal(0)
Row = tuple[Any, ...]


class PeriodError(ValueError):
    """A period that is not YYYY-MM."""


@dataclass(frozen=True)
class RunConfig:
    due_day: int = 25
    thresholds: Thresholds = field(default_factory=Thresholds)
    chunk_size: int = 5000


@dataclass
class RunResult:
    period: str
    accounts: int = 0         # accounts looked at
    issued: int = 0
    held: int = 0             # stored pending_review
    already_billed: int = 0   # had a bill for the period before this run
    issued_fen: int = 0       # the total charged by the bills issued in this run
    prepaid_fen: int = 0      # prepaid balances allocated to owed bills, chunk by chunk

    @property
    def billed(self) -> int:
        return self.issued + self.held


def parse_period(text: str) -> tuple[date, date]:
    """``"2026-11"`` -> (2026-11-01, 2026-11-30)."""
    try:
        year, month = (int(part) for part in text.split("-"))
        if len(text) != 7 or not 2000 <= year <= 2999:
            raise ValueError
        start = date(year, month, 1)
    except ValueError:
        raise PeriodError(f"not a period (YYYY-MM): {text[:20]!r}") from None
    return start, _month_add(start, 1) - timedelta(days=1)


def due_date(period_start: date, due_day: int) -> date:
    """A period's bill is due on ``due_day`` of the following month."""
    return _month_add(period_start, 1).replace(day=due_day)


def _month_add(first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def load_book(session: Session) -> TariffBook:
    """Upsert the shipped tariffs, commit, and read the book the run prices with."""
    load_tariffs(session)
    session.commit()
    return TariffBook.from_db(session)


def run(session: Session, clock: Clock, book: TariffBook, period: str,
        config: RunConfig | None = None,
        progress: Callable[[int], None] | None = None) -> RunResult:
    """Bill ``period``; commits after each chunk and then calls ``progress(accounts_in_chunk)``."""
    config = config or RunConfig()
    start, end = parse_period(period)
    result = RunResult(period)
    pricer = _Pricer(book, start, end)
    last_id = 0
    while True:
        ids = session.scalars(
            sa.select(ElectricityAccount.id).where(ElectricityAccount.id > last_id)
            .order_by(ElectricityAccount.id).limit(config.chunk_size)).all()
        if not ids:
            return result
        _Chunk(session, clock, pricer, config, period, start, end, ids[0], ids[-1]).bill(result)
        result.prepaid_fen += ledger.apply_prepaid_in_range(session, clock, ids[0], ids[-1])
        session.commit()
        result.accounts += len(ids)
        last_id = ids[-1]
        if progress is not None:
            progress(len(ids))


def count_accounts(session: Session) -> int:
    """How many accounts a run looks at (the progress bar's length)."""
    return session.scalar(sa.select(sa.func.count()).select_from(ElectricityAccount)) or 0


class _Pricer:
    """``quote`` once per distinct input in a run (many accounts use the same round kWh)."""

    def __init__(self, book: TariffBook, start: date, end: date) -> None:
        self.book, self.start, self.end = book, start, end
        self.quote = functools.lru_cache(maxsize=200_000)(self._quote)

    @functools.cache  # noqa: B019 - one pricer per run; it dies with the run
    def tier_year_start(self, code: str) -> date | None:
        tier_year = self.book.tier_year(code, self.start)
        return tier_year[0] if tier_year else None

    def _quote(self, code: str, usage: Usage, prior_kwh: Decimal) -> Quote:
        return quote(self.book, code, self.start, self.end, usage, prior_kwh)


@dataclass
class _Meter:
    id: int
    account_id: int
    meter_no: str
    installed_on: date


class _Chunk:
    """Accounts with ids in [lo, hi]: read everything in a few queries, write set-based."""

    def __init__(self, session: Session, clock: Clock, pricer: _Pricer, config: RunConfig,
                 period: str, start: date, end: date, lo: int, hi: int) -> None:
        self.session, self.clock, self.pricer, self.config = session, clock, pricer, config
        self.period, self.start, self.end, self.lo, self.hi = period, start, end, lo, hi
        self.previous_period = f"{_month_add(start, -1):%Y-%m}"
        self.due = due_date(start, config.due_day)

    def bill(self, result: RunResult) -> None:
        if self.session.get_bind().dialect.name == "postgresql":
            # A crash may lose the last chunks' commits, which is safe: nothing outside this
            # database has seen them, and the rerun bills those accounts again.
            self.session.execute(sa.text("SET LOCAL synchronous_commit = off"))
        billed = set(self.session.scalars(
            sa.select(Bill.account_id).distinct()
            .where(Bill.account_id.between(self.lo, self.hi), Bill.period == self.period)))
        result.already_billed += len(billed)
        candidates = [m for m in self._meters() if m.account_id not in billed]
        if not candidates:
            return
        current, previous = self._readings([m.id for m in candidates])
        meters = {m.id: m for m in candidates if m.id in current}
        if not meters:
            return
        missing = [m for m in meters if m not in previous]
        if missing:  # no reading last month: the latest one before it
            previous.update(self._readings_before(missing))
        tariffs = dict(self.session.execute(
            sa.select(ElectricityAccount.id, ElectricityAccount.tariff_code)
            .where(ElectricityAccount.id.between(self.lo, self.hi))).tuples().all())
        history = self._history(tariffs)
        by_account: dict[int, list[_Meter]] = defaultdict(list)
        for meter in meters.values():
            by_account[meter.account_id].append(meter)
        bills, lines = [], []
        for account_id in sorted(by_account):
            bill, bill_lines = self._compute(account_id, tariffs[account_id],
                                             by_account[account_id], current, previous,
                                             history.get(account_id, []))
            bills.append(bill)
            lines.append(bill_lines)
        self._write(bills, lines, result)

    # --- reading -----------------------------------------------------------------------------

    def _meters(self) -> list[_Meter]:
        rows = self.session.execute(
            sa.select(Meter.id, Meter.account_id, Meter.meter_no, Meter.installed_on)
            .where(Meter.account_id.between(self.lo, self.hi)))
        return [_Meter(*row) for row in rows]

    def _select_readings(self, meter_ids: list[int]) -> sa.Select[Any]:
        """Accepted readings of meters with ids in the range of ``meter_ids`` (the caller keeps
        its own): a range on the (meter_id, period) index. A join on the account range, or a
        long IN list, made PostgreSQL scan every reading for every chunk."""
        return (sa.select(Reading.meter_id, Reading.period, Reading.value_kwh, Reading.peak_kwh,
                          Reading.flat_kwh, Reading.valley_kwh, Reading.source)
                .where(Reading.meter_id.between(min(meter_ids), max(meter_ids)),
                       Reading.status == ReadingStatus.ACCEPTED)
                .order_by(Reading.meter_id, Reading.period, Reading.read_on, Reading.id))

    def _readings(self, meter_ids: list[int]) -> tuple[dict[int, Any], dict[int, Any]]:
        """The latest accepted reading per meter of this period and of the one before."""
        wanted = set(meter_ids)
        current: dict[int, Any] = {}
        previous: dict[int, Any] = {}
        rows = self.session.execute(self._select_readings(meter_ids).where(
            Reading.period.in_([self.period, self.previous_period])))
        for row in rows:
            if row.meter_id in wanted:
                (current if row.period == self.period else previous)[row.meter_id] = row
        return current, previous

    def _readings_before(self, meter_ids: list[int]) -> dict[int, Any]:
        """Each meter's latest accepted reading before last month."""
        rows = self.session.execute(self._select_readings(meter_ids).where(
            Reading.period < self.previous_period, Reading.meter_id.in_(meter_ids)))
        return {row.meter_id: row for row in rows}

    def _history(self, tariffs: dict[int, str]) -> dict[int, list[tuple[date, Decimal]]]:
        """(period_start, kWh) of each account's latest bill versions that the run needs: the six
        periods before this one and the tier year so far, oldest first."""
        since = _month_add(self.start, -6)
        for code in set(tariffs.values()):
            try:
                year_start = self.pricer.tier_year_start(code)
            except ValueError:  # unknown or not in force: nothing to count
                continue
            if year_start is not None:
                since = min(since, year_start)
        rows = self.session.execute(
            sa.select(Bill.account_id, Bill.period_start, Bill.version, Bill.kwh)
            .where(Bill.account_id.between(self.lo, self.hi), Bill.period_start >= since,
                   Bill.period_start < self.start)
            .order_by(Bill.account_id, Bill.period_start, Bill.version))
        latest: dict[tuple[int, date], Decimal] = {}
        for account_id, period_start, _version, kwh in rows:
            latest[(account_id, period_start)] = kwh
        history: dict[int, list[tuple[date, Decimal]]] = defaultdict(list)
        for (account_id, period_start), kwh in latest.items():
            history[account_id].append((period_start, kwh))
        return history

    # --- computing ---------------------------------------------------------------------------

    def _compute(self, account_id: int, code: str, meters: Sequence[_Meter],
                 current: dict[int, Any], previous: dict[int, Any],
                 history: list[tuple[date, Decimal]]) -> tuple[Row, tuple[BillLineInfo, ...]]:
        total = ZERO
        registers: dict[str, Decimal | None] = dict.fromkeys(REGISTERS)
        estimated, went_down, no_previous = False, None, None
        for meter in meters:
            now, before = current[meter.id], previous.get(meter.id)
            estimated = estimated or now.source == ReadingSource.ESTIMATED
            if before is None and not self.start <= meter.installed_on <= self.end:
                no_previous = meter.meter_no
            base = before.value_kwh if before is not None else ZERO
            if now.value_kwh < base:
                went_down = (meter.meter_no, base, now.value_kwh)
            total += now.value_kwh - base
            for name in REGISTERS:
                value = getattr(now, f"{name}_kwh")
                if value is None:
                    continue
                earlier = getattr(before, f"{name}_kwh", None) if before is not None else ZERO
                delta = value - (earlier or ZERO)
                if delta < 0:
                    went_down = (f"{meter.meter_no}/{name}", earlier or ZERO, value)
                registers[name] = (registers[name] or ZERO) + delta
        known = self.pricer.book.has(code)
        priced, error = None, False
        if known and went_down is None:
            try:
                year_start = self.pricer.tier_year_start(code)
                prior = (sum((kwh for start, kwh in history if start >= year_start), ZERO)
                         if year_start is not None else ZERO)
                usage = Usage(kwh=total, peak_kwh=registers["peak"], flat_kwh=registers["flat"],
                              valley_kwh=registers["valley"])
                priced = self.pricer.quote(code, usage, prior)
            except ValueError:  # TariffError, UsageError: a person sorts it out
                error = True
        recent_from = _month_add(self.start, -6)
        facts = Facts(
            kwh=total if went_down is None else ZERO,
            history_kwh=[kwh for start, kwh in history if start >= recent_from],
            estimated=estimated, went_down=went_down, no_previous=no_previous,
            tariff_known=known, priced=not error)
        holds = check(facts, self.config.thresholds)
        if went_down is not None:
            total, registers = ZERO, dict.fromkeys(REGISTERS)
        reason = encode(holds)
        status = BillStatus.ISSUED if reason is None else BillStatus.PENDING_REVIEW
        now = self.clock.now()
        bill = (account_id, self.period, 1, self.start, self.end, total, registers["peak"],
                registers["flat"], registers["valley"], code, priced.total_fen if priced else 0,
                status.value, reason, self.due, now if status is BillStatus.ISSUED else None, now)
        return bill, priced.lines if priced else ()

    # --- writing -----------------------------------------------------------------------------

    def _write(self, bills: list[Row], lines: list[tuple[BillLineInfo, ...]],
               result: RunResult) -> None:
        bill_ids = self._bill_ids(len(bills))
        bill_rows: list[Row] = []
        line_rows: list[Row] = []
        entry_rows: list[Row] = []
        now, issued, charge = self.clock.now(), BillStatus.ISSUED.value, EntryKind.CHARGE.value
        for bill_id, bill, bill_lines in zip(bill_ids, bills, lines, strict=True):
            bill_rows.append((bill_id, *bill))
            line_rows.extend((bill_id, seq, line.kind, line.tier, line.register, line.kwh,
                              line.unit_price, line.amount_fen, line.description)
                             for seq, line in enumerate(bill_lines, start=1))
            account_id, total_fen, status, due = bill[0], bill[10], bill[11], bill[13]
            if status != issued:
                result.held += 1
                continue
            result.issued += 1
            result.issued_fen += total_fen
            if total_fen > 0:
                entry_rows.append((account_id, bill_id, charge, total_fen, charge_ref(bill_id),
                                   None, due, now))
        self._insert(BILLS, BILL_COLUMNS, bill_rows)
        self._insert(LINES, LINE_COLUMNS, line_rows)
        self._insert(ENTRIES, ENTRY_COLUMNS, entry_rows)

    def _bill_ids(self, n: int) -> list[int]:
        """Ids for ``n`` new bills, in one statement, so their lines can refer to them."""
        if self.session.get_bind().dialect.name != "postgresql":
            # SQLite: the transaction began with BEGIN IMMEDIATE, so nobody else writes now.
            top = self.session.scalar(sa.select(sa.func.max(BILLS.c.id))) or 0
            return list(range(top + 1, top + 1 + n))
        return list(self.session.scalars(
            sa.text("SELECT nextval(pg_get_serial_sequence('bills', 'id')) "
                    "FROM generate_series(1, :n)"), {"n": n}))

    def _insert(self, table: sa.Table, columns: tuple[str, ...], rows: list[Row]) -> None:
        """COPY on PostgreSQL (psycopg 3, in the session's transaction), else one executemany."""
        if not rows:
            return
        if self.session.get_bind().dialect.name != "postgresql":
            self.session.execute(sa.insert(table), [dict(zip(columns, row, strict=True))
                                                    for row in rows])
            return
        quoted = ", ".join(f'"{c}"' for c in columns)
        raw: Any = self.session.connection().connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(
                f"COPY {table.name} ({quoted}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

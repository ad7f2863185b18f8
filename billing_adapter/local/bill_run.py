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
* **Due date**: the ``due_day`` of the month after the period.
* **Writes are set-based**: ids are allocated in one statement, then bills, lines and ledger
  entries are written with ``COPY`` on PostgreSQL and a multi-row INSERT elsewhere.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing_adapter.local.pricing import Quote, Usage, quote
from billing_adapter.local.tariffs import TariffBook, load_tariffs
from billing_adapter.local.verification import Facts, Thresholds, check, encode
from portal.accounts.models import ElectricityAccount, Meter
from portal.bills.models import Bill, BillLine, BillStatus, charge_ref
from portal.kernel.clock import Clock
from portal.ledger.models import EntryKind, LedgerEntry
from portal.readings.models import Reading, ReadingSource, ReadingStatus

REGISTERS = ("peak", "flat", "valley")
BILLS, LINES, ENTRIES = (cast(sa.Table, model.__table__)
                         for model in (Bill, BillLine, LedgerEntry))
ZERO = Decimal(0)


class PeriodError(ValueError):
    """A period that is not YYYY-MM."""


@dataclass(frozen=True)
class RunConfig:
    due_day: int = 25
    thresholds: Thresholds = field(default_factory=Thresholds)
    chunk_size: int = 2000


@dataclass
class RunResult:
    period: str
    accounts: int = 0         # accounts looked at
    issued: int = 0
    held: int = 0             # stored pending_review
    already_billed: int = 0   # had a bill for the period before this run
    issued_fen: int = 0       # the total charged by the bills issued in this run

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

    def bill(self, result: RunResult) -> None:
        billed = set(self.session.scalars(
            sa.select(Bill.account_id).distinct()
            .where(Bill.account_id.between(self.lo, self.hi), Bill.period == self.period)))
        result.already_billed += len(billed)
        current = self._readings(Reading.period == self.period)
        meters = {m.id: m for m in self._meters() if m.id in current and m.account_id not in billed}
        if not meters:
            return
        previous = self._previous(meters)
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

    def _readings(self, *where: sa.ColumnElement[bool]) -> dict[int, Any]:
        """The latest accepted reading per meter (of the chunk's accounts) matching ``where``."""
        rows = self.session.execute(
            sa.select(Reading.meter_id, Reading.value_kwh, Reading.peak_kwh, Reading.flat_kwh,
                      Reading.valley_kwh, Reading.source)
            .join(Meter, Meter.id == Reading.meter_id)
            .where(Meter.account_id.between(self.lo, self.hi),
                   Reading.status == ReadingStatus.ACCEPTED, *where)
            .order_by(Reading.meter_id, Reading.period, Reading.read_on, Reading.id))
        return {row.meter_id: row for row in rows}

    def _previous(self, meters: dict[int, _Meter]) -> dict[int, Any]:
        """Each meter's latest accepted reading before the period: usually last month's."""
        previous = self._readings(Reading.period == self.previous_period)
        missing = [m for m in meters if m not in previous]
        if missing:
            previous.update(self._readings(Reading.period < self.previous_period,
                                           Reading.meter_id.in_(missing)))
        return previous

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
                 history: list[tuple[date, Decimal]]) -> tuple[dict[str, Any], tuple[Any, ...]]:
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
        bill = {
            "account_id": account_id, "period": self.period, "version": 1,
            "period_start": self.start, "period_end": self.end, "kwh": total,
            "peak_kwh": registers["peak"], "flat_kwh": registers["flat"],
            "valley_kwh": registers["valley"], "tariff_code": code,
            "total_fen": priced.total_fen if priced else 0, "status": status,
            "review_reason": reason, "due_date": due_date(self.start, self.config.due_day),
            "issued_at": self.clock.now() if status is BillStatus.ISSUED else None,
            "created_at": self.clock.now(),
        }
        return bill, priced.lines if priced else ()

    # --- writing -----------------------------------------------------------------------------

    def _write(self, bills: list[dict[str, Any]], lines: list[tuple[Any, ...]],
               result: RunResult) -> None:
        bill_ids = self._ids(BILLS, bills)
        line_rows, ledger_rows = [], []
        now = self.clock.now()
        for bill_id, bill, bill_lines in zip(bill_ids, bills, lines, strict=True):
            bill["id"] = bill_id
            for seq, line in enumerate(bill_lines, start=1):
                line_rows.append({
                    "bill_id": bill_id, "seq": seq, "kind": line.kind, "tier": line.tier,
                    "register": line.register, "kwh": line.kwh, "unit_price": line.unit_price,
                    "amount_fen": line.amount_fen, "description": line.description})
            if bill["status"] is BillStatus.ISSUED:
                result.issued += 1
                result.issued_fen += bill["total_fen"]
                if bill["total_fen"] > 0:
                    ledger_rows.append({
                        "account_id": bill["account_id"], "bill_id": bill_id,
                        "kind": EntryKind.CHARGE, "amount_fen": bill["total_fen"],
                        "ref": charge_ref(bill_id), "memo": None,
                        "effective_on": bill["due_date"], "created_at": now})
            else:
                result.held += 1
        self._insert(BILLS, bills)
        self._insert(LINES, line_rows)
        self._insert(ENTRIES, ledger_rows)

    def _is_pg(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    def _ids(self, table: sa.Table, rows: list[dict[str, Any]]) -> list[int]:
        """Allocate ids for ``rows`` in one statement (PostgreSQL: from the table's sequence)."""
        if not self._is_pg():
            # SQLite: the transaction began with BEGIN IMMEDIATE, so nobody else writes now.
            top = self.session.scalar(sa.select(sa.func.max(table.c.id))) or 0
            return list(range(top + 1, top + 1 + len(rows)))
        return list(self.session.scalars(
            sa.text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
                    "FROM generate_series(1, :n)"),
            {"table": table.name, "n": len(rows)}))

    def _insert(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if table is not BILLS and self._is_pg():
            rows = [{"id": i, **row} for i, row in zip(self._ids(table, rows), rows, strict=True)]
        if self._is_pg():
            _copy(self.session, table, rows)
        else:
            self.session.execute(sa.insert(table), rows)


def _copy(session: Session, table: sa.Table, rows: Iterable[dict[str, Any]]) -> None:
    """``COPY table FROM STDIN`` through psycopg 3, in the session's transaction."""
    rows = list(rows)
    columns = list(rows[0])
    quoted = ", ".join(f'"{c}"' for c in columns)
    raw: Any = session.connection().connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({quoted}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([_plain(row[c]) for c in columns])


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, BillStatus | EntryKind) else value

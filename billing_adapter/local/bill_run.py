"""The bill run: compute, verify and issue one period's bills for every account with a reading.

Flask-free; the ``billing run`` command and the demo call :func:`run`. Rules:

* **Which accounts**: every account with an *accepted* reading of the period and no bill for the
  period yet (any version). Rerunning the period therefore changes nothing, and a run that
  crashed resumes where it stopped: accounts are taken in id order, in chunks, and each chunk is
  written and committed in its own transaction.
* **Usage**: per meter, this period's reading minus that meter's latest earlier accepted reading
  (each TOU register likewise; a register that passed its last digit and restarted counts
  through the wrap, ``portal.readings.rules.usage_between``), summed over the account's meters.
  A meter without an earlier reading counts from 0: right for a new meter (a meter change is a
  new ``Meter`` row installed in the period), held for review (``no_previous_reading``)
  otherwise. A register that went down (not a rollover) is held (``reading_went_down``) with
  0 kWh and nothing priced.
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
  entries are written with ``COPY`` on PostgreSQL (rows formatted as COPY text; a quote's lines
  are formatted once per run) and a multi-row INSERT elsewhere.
* **Pipelined on PostgreSQL**: a planner thread reads and computes the next chunk on its own
  connection while the caller's session writes and commits the current one (the database, not
  Python, is the bottleneck of a large run). It only reads and takes ids from the sequence; chunks
  are written, committed and reported to ``progress`` in order, one after the other, so a crash
  leaves whole chunks committed, exactly as without the thread. SQLite plans inline.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing_adapter.local.pricing import Quote, Usage, quote
from billing_adapter.local.tariffs import TariffBook, load_tariffs
from billing_adapter.local.verification import Facts, Thresholds, check, encode
from portal.accounts.models import ElectricityAccount, Meter
from portal.bills.models import Bill, BillLine, BillStatus, charge_ref
from portal.kernel.clock import Clock
from portal.ledger import service as ledger
from portal.ledger.models import EntryKind, LedgerEntry
from portal.readings.models import Reading, ReadingSource, ReadingStatus
from portal.readings.rules import usage_between

if TYPE_CHECKING:
    from portal.settings import Settings

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
ISSUED, HELD = BillStatus.ISSUED.value, BillStatus.PENDING_REVIEW.value
CHARGE = EntryKind.CHARGE.value
NULL = "\\N"  # COPY text's NULL
Row = tuple[Any, ...]  # a row to write
Read = Sequence[Any]  # a row read


class PeriodError(ValueError):
    """A period that is not YYYY-MM."""


@dataclass(frozen=True)
class RunConfig:
    due_day: int = 25
    thresholds: Thresholds = field(default_factory=Thresholds)
    chunk_size: int = 5000
    meter_digits: int = 6  # whole-kWh digits of the registers: past them a register rolls over

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RunConfig:
        """The run the portal's settings ask for (the ``billing run`` command, a reviewer's
        correction)."""
        return cls(**{"due_day": settings.bill_due_day, "meter_digits":
                      settings.reading_meter_digits,
                      "thresholds": Thresholds(
                          low_ratio=settings.review_low_ratio,
                          high_ratio=settings.review_high_ratio,
                          min_history_months=settings.review_min_history_months),
                      **overrides})


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
    planner = _Planner(book, clock, config or RunConfig(), period)
    result = RunResult(period)
    pg = session.get_bind().dialect.name == "postgresql"
    chunks = (_planned_ahead(session.get_bind(), planner) if pg
              else planner.chunks(session.connection))
    with contextlib.closing(chunks):  # on an error too: stops the planner thread now
        for chunk in chunks:
            if pg:
                # A crash may lose the last chunks' commits, which is safe: nothing outside this
                # database has seen them, and the rerun bills those accounts again.
                session.execute(sa.text("SET LOCAL synchronous_commit = off"))
            _write(session, chunk)
            # Prepaid balances pay the chunk's new bills, in the chunk's transaction.
            result.prepaid_fen += ledger.apply_prepaid_in_range(session, clock, chunk.first_id,
                                                                chunk.last_id)
            session.commit()
            chunk.add_to(result)
            if progress is not None:
                progress(chunk.accounts)
    return result


def reprice(session: Session, clock: Clock, book: TariffBook, account_id: int, period: str,
            config: RunConfig | None = None) -> Bill:
    """A new version of one account's bill of ``period``, computed from its accepted readings as
    they are now (a reading corrected in review), by the same planner as a run: verified, then
    issued with its charge or held again with its reason. Earlier versions stay as they were
    (the newest version is the bill). The caller holds the account's lock and commits."""
    tariff = session.scalar(sa.select(ElectricityAccount.tariff_code)
                            .where(ElectricityAccount.id == account_id))
    if tariff is None:
        raise ValueError(f"no account {account_id}")
    version = (session.scalar(sa.select(sa.func.max(Bill.version)).where(
        Bill.account_id == account_id, Bill.period == period)) or 0) + 1
    planner = _Planner(book, clock, config or RunConfig(), period, version=version)
    conn = session.connection()
    planner.text = _is_pg(conn)
    planned = planner._chunk(conn, {account_id: tariff}, rebill=True)
    if not planned.bills:
        raise PeriodError(f"no accepted reading of {period} to bill")
    _write(session, planned)
    ledger.apply_prepaid_in_range(session, clock, account_id, account_id)
    return session.scalars(sa.select(Bill).where(
        Bill.account_id == account_id, Bill.period == period, Bill.version == version)).one()


def count_accounts(session: Session) -> int:
    """How many accounts a run looks at (the progress bar's length)."""
    return session.scalar(sa.select(sa.func.count()).select_from(ElectricityAccount)) or 0


def _planned_ahead(engine: Any, planner: _Planner) -> Generator[_Planned, None, None]:
    """``planner.chunks`` run by a thread on its own connection, at most two chunks ahead."""
    ready: queue.Queue[_Planned | BaseException | None] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(item: _Planned | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def plan() -> None:
        try:
            with engine.connect() as conn:
                for chunk in planner.chunks(lambda: conn):
                    conn.commit()  # no long-lived snapshot
                    if not hand_over(chunk):
                        return
        except BaseException as exc:  # re-raised by the writing thread
            hand_over(exc)
            return
        hand_over(None)

    thread = threading.Thread(target=plan, name="bill-run-planner", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


# --- planning: read a chunk and compute its rows ------------------------------------------------

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(value: object) -> str:
    """One value in PostgreSQL's COPY text format."""
    if value is None:
        return NULL
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    return str(value)


@dataclass
class _Priced:
    """A quote with its lines ready to write after their bill id: COPY text (PostgreSQL) or
    the rest of each row."""

    total_fen: int
    lines: tuple[Any, ...]


@dataclass
class _Planned:
    """One chunk's rows: ``bills`` and ``lines`` as COPY text (PostgreSQL) or tuples."""

    accounts: int
    already_billed: int
    now: datetime  # created_at (and issued_at) of the chunk's rows
    now_text: str
    bills: list[Any] = field(default_factory=list)
    lines: list[Any] = field(default_factory=list)
    entries: list[Any] = field(default_factory=list)
    issued: int = 0
    held: int = 0
    issued_fen: int = 0
    first_id: int = 0  # the chunk's account id range
    last_id: int = 0

    def add_to(self, result: RunResult) -> None:
        result.accounts += self.accounts
        result.already_billed += self.already_billed
        result.issued += self.issued
        result.held += self.held
        result.issued_fen += self.issued_fen


class _Planner:
    """Reads accounts in id order, a chunk at a time, and computes their bills' rows."""

    def __init__(self, book: TariffBook, clock: Clock, config: RunConfig, period: str,
                 version: int = 1) -> None:
        self.book, self.clock, self.config, self.period = book, clock, config, period
        self.version = version
        self.start, self.end = parse_period(period)
        self.previous_period = f"{_month_add(self.start, -1):%Y-%m}"
        self.due = due_date(self.start, config.due_day)
        # a bill's COPY text from period to period_end (in BILL_COLUMNS order)
        self.bill_text = f"{_text(period)}\t{version}\t{self.start}\t{self.end}"
        self.recent_from = _month_add(self.start, -6)
        self.priced: dict[tuple[Any, ...], _Priced | None] = {}
        self.codes: dict[str, str] = {}  # tariff code -> its COPY text
        self.text = False  # rows as COPY text (PostgreSQL) or as tuples

    @functools.cache  # noqa: B019 - one planner per run; it dies with the run
    def tier_year_start(self, code: str) -> date | None:
        tier_year = self.book.tier_year(code, self.start)
        return tier_year[0] if tier_year else None

    def chunks(self, connection: Callable[[], sa.Connection]) -> Generator[_Planned, None, None]:
        """Each chunk's rows; ``connection()`` is only read from (and bill ids taken from the
        sequence)."""
        last_id = 0
        while True:
            conn = connection()
            self.text = _is_pg(conn)
            accounts = conn.execute(
                sa.select(ElectricityAccount.id, ElectricityAccount.tariff_code)
                .where(ElectricityAccount.id > last_id)
                .order_by(ElectricityAccount.id).limit(self.config.chunk_size)).tuples().all()
            if not accounts:
                return
            yield self._chunk(conn, dict(accounts))
            last_id = accounts[-1][0]

    def _chunk(self, conn: sa.Connection, tariffs: dict[int, str],
               rebill: bool = False) -> _Planned:
        lo, hi = min(tariffs), max(tariffs)
        billed = set() if rebill else set(conn.scalars(
            sa.select(Bill.account_id).distinct()
            .where(Bill.account_id.between(lo, hi), Bill.period == self.period)))
        now = self.clock.now()
        planned = _Planned(len(tariffs), len(billed), now, _text(now), first_id=lo, last_id=hi)
        meters: list[Read] = [m for m in conn.execute(
            sa.select(Meter.id, Meter.account_id, Meter.meter_no, Meter.installed_on)
            .where(Meter.account_id.between(lo, hi)).order_by(Meter.id)).all()
            if m[1] not in billed]
        if not meters:
            return planned
        current, previous = self._readings(conn, meters)
        by_account: dict[int, list[Read]] = defaultdict(list)
        for meter in meters:
            if meter[0] in current:
                by_account[meter[1]].append(meter)
        if not by_account:
            return planned
        missing = [m[0] for ms in by_account.values() for m in ms if m[0] not in previous]
        if missing:  # no reading last month: the latest one before it
            previous.update(self._readings_before(conn, missing))
        history = self._history(conn, tariffs, lo, hi)
        account_ids = sorted(by_account)
        bill_ids = _bill_ids(conn, len(account_ids))
        for bill_id, account_id in zip(bill_ids, account_ids, strict=True):
            self._bill(planned, bill_id, account_id, tariffs[account_id],
                       by_account[account_id], current, previous, history.get(account_id, []))
        return planned

    # --- reading -----------------------------------------------------------------------------

    @staticmethod
    def _select_readings(meter_ids: list[int]) -> sa.Select[Any]:
        """Accepted readings of meters with ids in the range of ``meter_ids`` (the caller keeps
        its own): a range on the (meter_id, period) index. A join on the account range, or a
        long IN list, made PostgreSQL scan every reading for every chunk."""
        return (sa.select(Reading.meter_id, Reading.period, Reading.value_kwh, Reading.peak_kwh,
                          Reading.flat_kwh, Reading.valley_kwh,
                          sa.type_coerce(Reading.source, sa.String))
                .where(Reading.meter_id.between(min(meter_ids), max(meter_ids)),
                       Reading.status == ReadingStatus.ACCEPTED)
                .order_by(Reading.meter_id, Reading.period, Reading.read_on, Reading.id))

    def _readings(self, conn: sa.Connection,
                  meters: list[Read]) -> tuple[dict[int, Read], dict[int, Read]]:
        """The latest accepted reading per meter of this period and of the one before."""
        wanted = {m[0] for m in meters}
        current: dict[int, Read] = {}
        previous: dict[int, Read] = {}
        period = self.period
        rows = conn.execute(self._select_readings(list(wanted)).where(
            Reading.period.in_([period, self.previous_period]))).all()
        for row in rows:
            if row[0] in wanted:
                (current if row[1] == period else previous)[row[0]] = row
        return current, previous

    def _readings_before(self, conn: sa.Connection,
                         meter_ids: list[int]) -> dict[int, Read]:
        """Each meter's latest accepted reading before last month."""
        rows = conn.execute(self._select_readings(meter_ids).where(
            Reading.period < self.previous_period, Reading.meter_id.in_(meter_ids)))
        return {row[0]: row for row in rows}

    def _history(self, conn: sa.Connection, tariffs: dict[int, str], lo: int,
                 hi: int) -> dict[int, list[tuple[date, Decimal]]]:
        """(period_start, kWh) of each account's latest bill versions that the run needs: the six
        periods before this one and the tier year so far, oldest first."""
        since = _month_add(self.start, -6)
        for code in set(tariffs.values()):
            try:
                year_start = self.tier_year_start(code)
            except ValueError:  # unknown or not in force: nothing to count
                continue
            if year_start is not None:
                since = min(since, year_start)
        rows = conn.execute(
            sa.select(Bill.account_id, Bill.period_start, Bill.version, Bill.kwh)
            .where(Bill.account_id.between(lo, hi), Bill.period_start >= since,
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

    def _bill(self, planned: _Planned, bill_id: int, account_id: int, code: str,
              meters: list[Read], current: dict[int, Read], previous: dict[int, Read],
              history: list[tuple[date, Decimal]]) -> None:
        total = ZERO
        registers: dict[str, Decimal | None] = dict.fromkeys(REGISTERS)
        estimated, went_down, no_previous = False, None, None
        for meter_id, _account, meter_no, installed_on in meters:
            now, before = current[meter_id], previous.get(meter_id)
            estimated = estimated or now[6] == ReadingSource.ESTIMATED
            if before is None and not self.start <= installed_on <= self.end:
                no_previous = meter_no
            base = before[2] if before is not None else ZERO
            used, _rolled = usage_between(base, now[2], self.config.meter_digits)
            if used is None:
                went_down = (meter_no, base, now[2])
            total += used or ZERO
            for index, name in enumerate(REGISTERS, start=3):
                value = now[index]
                if value is None:
                    continue
                earlier = (before[index] or ZERO) if before is not None else ZERO
                part, _rolled = usage_between(earlier, value, self.config.meter_digits)
                if part is None:
                    went_down = (f"{meter_no}/{name}", earlier, value)
                registers[name] = (registers[name] or ZERO) + (part or ZERO)
        known = self.book.has(code)
        priced: _Priced | None = None
        if known and went_down is None:
            try:
                year_start = self.tier_year_start(code)
            except ValueError:  # not in force for the period: held as cannot_price
                year_start = None
            prior = (sum((kwh for start, kwh in history if start >= year_start), ZERO)
                     if year_start is not None else ZERO)
            priced = self._price(code, total, registers, prior)
        recent_from = self.recent_from
        facts = Facts(
            kwh=total if went_down is None else ZERO,
            history_kwh=[kwh for start, kwh in history if start >= recent_from],
            estimated=estimated, went_down=went_down, no_previous=no_previous,
            tariff_known=known, priced=priced is not None or not known or went_down is not None)
        reason = encode(check(facts, self.config.thresholds))
        if went_down is not None:
            total, registers = ZERO, dict.fromkeys(REGISTERS)
        status = ISSUED if reason is None else HELD
        total_fen = priced.total_fen if priced is not None else 0
        charged = status == ISSUED and total_fen > 0
        if self.text:
            now_text = planned.now_text
            try:
                code_text = self.codes[code]
            except KeyError:
                code_text = self.codes[code] = _text(code)
            peak, flat, valley = registers.values()
            planned.bills.append(
                f"{bill_id}\t{account_id}\t{self.bill_text}\t{total}\t"
                f"{NULL if peak is None else peak}\t{NULL if flat is None else flat}\t"
                f"{NULL if valley is None else valley}\t{code_text}\t{total_fen}\t{status}\t"
                f"{NULL if reason is None else _text(reason)}\t{self.due}\t"
                f"{now_text if status == ISSUED else NULL}\t{now_text}\n")
            if priced is not None:
                prefix = str(bill_id)
                planned.lines.extend(prefix + tail for tail in priced.lines)
            if charged:
                planned.entries.append(
                    f"{account_id}\t{bill_id}\t{CHARGE}\t{total_fen}\t{charge_ref(bill_id)}\t"
                    f"{NULL}\t{self.due}\t{now_text}\n")
        else:
            now_at = planned.now
            bill = (bill_id, account_id, self.period, self.version, self.start, self.end, total,
                    registers["peak"], registers["flat"], registers["valley"], code, total_fen,
                    status, reason, self.due, now_at if status == ISSUED else None, now_at)
            planned.bills.append(bill)
            if priced is not None:
                planned.lines.extend((bill_id, *tail) for tail in priced.lines)
            if charged:
                planned.entries.append((account_id, bill_id, CHARGE, total_fen,
                                        charge_ref(bill_id), None, self.due, now_at))
        if status == ISSUED:
            planned.issued += 1
            planned.issued_fen += total_fen
        else:
            planned.held += 1

    def _price(self, code: str, kwh: Decimal, registers: dict[str, Decimal | None],
               prior: Decimal) -> _Priced | None:
        """``quote`` once per distinct input in a run (many accounts use the same kWh); None
        when the tariff cannot price it (TariffError, UsageError: a person sorts it out)."""
        key = (code, kwh, registers["peak"], registers["flat"], registers["valley"], prior)
        try:
            return self.priced[key]
        except KeyError:
            pass
        priced: _Priced | None
        try:
            quoted: Quote = quote(self.book, code, self.start, self.end,
                                  Usage(kwh, registers["peak"], registers["flat"],
                                        registers["valley"]), prior)
        except ValueError:
            priced = None
        else:
            tails = tuple((seq, line.kind, line.tier, line.register, line.kwh, line.unit_price,
                           line.amount_fen, line.description)
                          for seq, line in enumerate(quoted.lines, start=1))
            priced = _Priced(quoted.total_fen, tuple(
                "\t" + "\t".join(map(_text, tail)) + "\n" for tail in tails) if self.text
                else tails)
        if len(self.priced) < 100_000:  # a bound on memory (about 1 kB an entry)
            self.priced[key] = priced
        return priced


def _is_pg(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _bill_ids(conn: sa.Connection, n: int) -> list[int]:
    """Ids for ``n`` new bills, in one statement, so their lines can refer to them."""
    if not _is_pg(conn):
        # SQLite plans in the writing transaction, which began with BEGIN IMMEDIATE: nobody
        # else writes now.
        top = conn.scalar(sa.select(sa.func.max(BILLS.c.id))) or 0
        return list(range(top + 1, top + 1 + n))
    return list(conn.scalars(
        sa.text("SELECT nextval(pg_get_serial_sequence('bills', 'id')) "
                "FROM generate_series(1, :n)"), {"n": n}).all())


# --- writing ------------------------------------------------------------------------------------

def _write(session: Session, chunk: _Planned) -> None:
    """Bills, then their lines, then the charges: COPY on PostgreSQL, else one executemany."""
    for table, columns, rows in ((BILLS, BILL_COLUMNS, chunk.bills),
                                 (LINES, LINE_COLUMNS, chunk.lines),
                                 (ENTRIES, ENTRY_COLUMNS, chunk.entries)):
        if not rows:
            continue
        if session.get_bind().dialect.name != "postgresql":
            session.execute(sa.insert(table), [dict(zip(columns, row, strict=True))
                                               for row in rows])
            continue
        quoted = ", ".join(f'"{c}"' for c in columns)
        raw: Any = session.connection().connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(
                f"COPY {table.name} ({quoted}) FROM STDIN") as copy:
            copy.write("".join(rows).encode())

"""KPI figures per district, each from one set-based query (GROUP BY district, FILTER/CASE), for
the districts a member of staff may see. The definitions (also in the README):

* **Collection rate (电费回收率)** of billing period P, as of day D: ``collected / billed``.
  *billed* is the sum of ``total_fen`` of the newest version of every account's bill of P, where
  that version is issued (late fees are not billed energy: left out). *collected* is what was
  paid towards any version of those bills with ``effective_on <= D``: payments allocated to the
  bill, prepaid balance allocated to it (``prepaid:`` adjustments), less refunds booked on it.
  Bills held for review are in neither figure.
* **Arrears by age**: what is still owed (ledger sum > 0) on each bill whose due date is before D,
  by days past due on D: 1-30 ("0-30"), 31-90, 91-180, over 180.
* **Self-reading rate** of P: readings of P with source ``customer`` / all readings of P.
* **Flagged-reading rate** of P: readings of P now ``flagged`` or ``rejected`` / all readings of
  P (a flagged reading accepted on review counts as accepted: a reading keeps no history).
* **Bills held for review**: newest bill versions in ``pending_review`` (any period), and their
  computed totals.
* **Payments by channel** in month P (local time): succeeded payment orders paid in the month,
  count and amount per channel.
* **Dispute SLA compliance** in month P: disputes resolved (upheld or adjusted; withdrawn ones
  are not counted) in the month whose local resolution day is on or before their SLA due date,
  out of all resolved in the month; and disputes still open today past their due date.
* **Payment plans**: plans active now (count and total), and plans defaulted in month P.

At a million accounts the collection and arrears queries take seconds (they read every ledger row
of the bills concerned), so the dashboard reads **snapshots**: ``refresh`` (the Celery beat task
``refresh_kpis``, every 15 minutes) computes every figure of last month for every district with
the same queries and stores one ``kpi_snapshots`` row per figure and district. ``board`` returns
the snapshot when it covers the period, today and every district in scope, else computes live
(another period, a new district, before the first refresh).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from payments.models import PaymentOrder
from payments.states import OrderStatus
from portal.accounts.models import District, ElectricityAccount, Meter
from portal.backoffice.models import KpiSnapshot, StaffMember
from portal.backoffice.service import visible_district_ids
from portal.bills.models import Bill, BillStatus
from portal.disputes.models import OPEN_STATUSES as DISPUTE_OPEN
from portal.disputes.models import Dispute, DisputeStatus
from portal.kernel.clock import Clock, local_today
from portal.kernel.errors import NotFound
from portal.kernel.money import fen_to_yuan_str as yuan
from portal.ledger.models import EntryKind, LedgerEntry
from portal.plans.models import PaymentPlan, PlanStatus
from portal.readings.models import Reading, ReadingSource, ReadingStatus

BUCKETS = ("0-30", "31-90", "91-180", ">180")
FIGURES = ("collection", "arrears", "readings", "held", "payments", "disputes", "plans")
Acct = ElectricityAccount


@dataclass(frozen=True)
class Scope:
    """The districts figures are for: the member's visible ones, or one of them."""

    districts: list[District]

    @property
    def ids(self) -> list[int]:
        return [d.id for d in self.districts]


def scope(session: Session, staff: StaffMember, district_code: str | None) -> Scope:
    """The visible districts (all for admins); one of them when ``district_code`` is given,
    NotFound when it is not visible (as if it did not exist)."""
    visible = visible_district_ids(session, staff)
    stmt = sa.select(District).order_by(District.code)
    if visible is not None:
        stmt = stmt.where(District.id.in_(sorted(visible)))
    if district_code:
        stmt = stmt.where(District.code == district_code)
    districts = list(session.scalars(stmt))
    if district_code and not districts:
        raise NotFound()
    return Scope(districts)


def rate(part: int, whole: int) -> Decimal | None:
    """A percentage with one decimal (None when there is nothing to divide by)."""
    if not whole:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), ROUND_HALF_UP)


def _in_scope(scope: Scope) -> sa.ColumnElement[bool]:
    return Acct.district_id.in_(scope.ids)


def _newest_issued(period: str) -> sa.ColumnElement[bool]:
    newer = aliased(Bill)
    return sa.and_(Bill.period == period, Bill.status == BillStatus.ISSUED, ~sa.exists().where(
        newer.account_id == Bill.account_id, newer.period == Bill.period,
        newer.version > Bill.version))


# --- the figures: one query each, rows per district ---------------------------------------------

@dataclass
class Collection:
    bills: int = 0
    billed_fen: int = 0
    collected_fen: int = 0

    @property
    def rate(self) -> Decimal | None:
        return rate(self.collected_fen, self.billed_fen)


def collection(session: Session, scope: Scope, period: str, as_of: date) -> dict[int, Collection]:
    billed = session.execute(
        sa.select(Acct.district_id, sa.func.count(), sa.func.sum(Bill.total_fen))
        .join(Acct, Acct.id == Bill.account_id)
        .where(_newest_issued(period), _in_scope(scope)).group_by(Acct.district_id))
    out: dict[int, Collection] = defaultdict(Collection)
    for district_id, n, fen in billed:
        out[district_id].bills, out[district_id].billed_fen = n, int(fen or 0)
    collected = session.execute(
        sa.select(Acct.district_id, sa.func.sum(LedgerEntry.amount_fen))
        .join(Bill, Bill.id == LedgerEntry.bill_id).join(Acct, Acct.id == Bill.account_id)
        .where(Bill.period == period, _in_scope(scope), LedgerEntry.effective_on <= as_of,
               sa.or_(LedgerEntry.kind.in_([EntryKind.PAYMENT, EntryKind.REFUND]),
                      sa.and_(LedgerEntry.kind == EntryKind.ADJUSTMENT,
                              LedgerEntry.ref.startswith("prepaid:"))))
        .group_by(Acct.district_id))
    for district_id, fen in collected:
        out[district_id].collected_fen = -int(fen or 0)
    return dict(out)


@dataclass
class Arrears:
    bills: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    owed_fen: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))


def arrears(session: Session, scope: Scope, today: date) -> dict[int, Arrears]:
    # one pass over the ledger rows of bills due before today: owed per bill (with its district
    # and due date carried along), then bucketed
    owed = (sa.select(Acct.district_id, Bill.due_date,
                      sa.func.sum(LedgerEntry.amount_fen).label("owed"))
            .select_from(LedgerEntry).join(Bill, Bill.id == LedgerEntry.bill_id)
            .join(Acct, Acct.id == Bill.account_id)
            .where(Bill.due_date < today, _in_scope(scope))
            .group_by(LedgerEntry.bill_id, Acct.district_id, Bill.due_date)
            .having(sa.func.sum(LedgerEntry.amount_fen) > 0).subquery())
    bucket = sa.case(
        (owed.c.due_date >= today - timedelta(days=30), BUCKETS[0]),
        (owed.c.due_date >= today - timedelta(days=90), BUCKETS[1]),
        (owed.c.due_date >= today - timedelta(days=180), BUCKETS[2]),
        else_=BUCKETS[3]).label("bucket")
    rows = session.execute(
        sa.select(owed.c.district_id, bucket, sa.func.count(), sa.func.sum(owed.c.owed))
        .group_by(owed.c.district_id, bucket))
    out: dict[int, Arrears] = defaultdict(Arrears)
    for district_id, name, n, fen in rows:
        out[district_id].bills[name] = n
        out[district_id].owed_fen[name] = int(fen or 0)
    return dict(out)


@dataclass
class Readings:
    total: int = 0
    self_read: int = 0
    flagged: int = 0

    @property
    def self_rate(self) -> Decimal | None:
        return rate(self.self_read, self.total)

    @property
    def flagged_rate(self) -> Decimal | None:
        return rate(self.flagged, self.total)


def readings(session: Session, scope: Scope, period: str) -> dict[int, Readings]:
    rows = session.execute(
        sa.select(Acct.district_id, sa.func.count(),
                  sa.func.count().filter(Reading.source == ReadingSource.CUSTOMER),
                  sa.func.count().filter(Reading.status.in_([ReadingStatus.FLAGGED,
                                                             ReadingStatus.REJECTED])))
        .join(Meter, Meter.id == Reading.meter_id).join(Acct, Acct.id == Meter.account_id)
        .where(Reading.period == period, _in_scope(scope)).group_by(Acct.district_id))
    return {d: Readings(n, s, f) for d, n, s, f in rows}


@dataclass
class Held:
    bills: int = 0
    total_fen: int = 0


def held(session: Session, scope: Scope) -> dict[int, Held]:
    newer = aliased(Bill)
    rows = session.execute(
        sa.select(Acct.district_id, sa.func.count(), sa.func.sum(Bill.total_fen))
        .join(Acct, Acct.id == Bill.account_id)
        .where(Bill.status == BillStatus.PENDING_REVIEW, _in_scope(scope), ~sa.exists().where(
            newer.account_id == Bill.account_id, newer.period == Bill.period,
            newer.version > Bill.version))
        .group_by(Acct.district_id))
    return {d: Held(n, int(fen or 0)) for d, n, fen in rows}


@dataclass
class Payments:
    count: dict[str, int] = field(default_factory=dict)
    amount_fen: dict[str, int] = field(default_factory=dict)


def month_bounds(period: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants the calendar month ``period`` starts and ends at, in ``zone``."""
    first = date(int(period[:4]), int(period[5:7]), 1)
    after = (first + timedelta(days=32)).replace(day=1)
    return (datetime.combine(first, time(), zone), datetime.combine(after, time(), zone))


def payments(session: Session, scope: Scope, period: str, zone: ZoneInfo) -> dict[int, Payments]:
    start, end = month_bounds(period, zone)
    rows = session.execute(
        sa.select(Acct.district_id, PaymentOrder.channel, sa.func.count(),
                  sa.func.sum(PaymentOrder.amount_fen))
        .join(Acct, Acct.id == PaymentOrder.account_id)
        .where(PaymentOrder.status == OrderStatus.SUCCEEDED, PaymentOrder.paid_at >= start,
               PaymentOrder.paid_at < end, _in_scope(scope))
        .group_by(Acct.district_id, PaymentOrder.channel))
    out: dict[int, Payments] = defaultdict(Payments)
    for district_id, channel, n, fen in rows:
        out[district_id].count[channel] = n
        out[district_id].amount_fen[channel] = int(fen or 0)
    return dict(out)



# --- figures of the disputes and plans branches -------------------------------------------------

def _local_day(session: Session, column: Any, zone: ZoneInfo) -> Any:
    """The utility's local date of a UTC timestamp column. SQLite: a fixed offset (China keeps
    no daylight saving time)."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.cast(sa.func.timezone(zone.key, column), sa.Date)
    offset = datetime(2000, 1, 1, tzinfo=zone).utcoffset() or timedelta(0)
    return sa.func.date(column, f"+{int(offset.total_seconds())} seconds")


@dataclass
class DisputeSla:
    resolved: int = 0       # resolved (upheld or adjusted) in the month
    on_time: int = 0        # of those, resolved by their SLA due date (local day)
    open_overdue: int = 0   # still open today, past their SLA due date

    @property
    def rate(self) -> Decimal | None:
        return rate(self.on_time, self.resolved)


def dispute_sla(session: Session, scope: Scope, period: str, today: date,
                zone: ZoneInfo) -> dict[int, DisputeSla]:
    start, end = month_bounds(period, zone)
    resolved = sa.and_(Dispute.status.in_([DisputeStatus.UPHELD, DisputeStatus.ADJUSTED]),
                       Dispute.resolved_at >= start, Dispute.resolved_at < end)
    rows = session.execute(
        sa.select(Acct.district_id, sa.func.count().filter(resolved),
                  sa.func.count().filter(resolved, _local_day(session, Dispute.resolved_at, zone)
                                         <= Dispute.sla_due_on),
                  sa.func.count().filter(Dispute.status.in_(DISPUTE_OPEN),
                                         Dispute.sla_due_on < today))
        .join(Acct, Acct.id == Dispute.account_id)
        .where(_in_scope(scope), sa.or_(resolved, Dispute.status.in_(DISPUTE_OPEN)))
        .group_by(Acct.district_id))
    return {d: DisputeSla(r, o, late) for d, r, o, late in rows}


@dataclass
class Plans:
    active: int = 0
    active_fen: int = 0
    defaulted: int = 0      # defaulted in the month


def plans(session: Session, scope: Scope, period: str, zone: ZoneInfo) -> dict[int, Plans]:
    start, end = month_bounds(period, zone)
    active = PaymentPlan.status == PlanStatus.ACTIVE
    defaulted = sa.and_(PaymentPlan.status == PlanStatus.DEFAULTED,
                        PaymentPlan.defaulted_at >= start, PaymentPlan.defaulted_at < end)
    rows = session.execute(
        sa.select(Acct.district_id, sa.func.count().filter(active),
                  sa.func.coalesce(sa.func.sum(PaymentPlan.total_fen).filter(active), 0),
                  sa.func.count().filter(defaulted))
        .join(Acct, Acct.id == PaymentPlan.account_id)
        .where(_in_scope(scope), sa.or_(active, defaulted))
        .group_by(Acct.district_id))
    return {d: Plans(a, int(fen), n) for d, a, fen, n in rows}


# --- the dashboard and its CSV files --------------------------------------------------------------

@dataclass(frozen=True)
class Dashboard:
    scope: Scope
    period: str
    today: date
    collection: dict[int, Collection]
    arrears: dict[int, Arrears]
    readings: dict[int, Readings]
    held: dict[int, Held]
    payments: dict[int, Payments]
    disputes: dict[int, DisputeSla]
    plans: dict[int, Plans]
    computed_at: datetime | None = None  # when the snapshot was taken; None: computed live

    @property
    def channels(self) -> list[str]:
        return sorted({c for p in self.payments.values() for c in p.count})

    def total_collection(self) -> Collection:
        return Collection(*(sum(getattr(c, f) for c in self.collection.values())
                            for f in ("bills", "billed_fen", "collected_fen")))

    def total_arrears(self) -> Arrears:
        out = Arrears()
        for a in self.arrears.values():
            for b in BUCKETS:
                out.bills[b] += a.bills[b]
                out.owed_fen[b] += a.owed_fen[b]
        return out

    def total_readings(self) -> Readings:
        return Readings(*(sum(getattr(r, f) for r in self.readings.values())
                          for f in ("total", "self_read", "flagged")))

    def total_held(self) -> Held:
        return Held(sum(h.bills for h in self.held.values()),
                    sum(h.total_fen for h in self.held.values()))

    def total_disputes(self) -> DisputeSla:
        return DisputeSla(*(sum(getattr(d, f) for d in self.disputes.values())
                            for f in ("resolved", "on_time", "open_overdue")))

    def total_plans(self) -> Plans:
        return Plans(*(sum(getattr(p, f) for p in self.plans.values())
                       for f in ("active", "active_fen", "defaulted")))

    def total_payments(self) -> Payments:
        out = Payments()
        for p in self.payments.values():
            for c, n in p.count.items():
                out.count[c] = out.count.get(c, 0) + n
                out.amount_fen[c] = out.amount_fen.get(c, 0) + p.amount_fen[c]
        return out


def dashboard(session: Session, scope: Scope, period: str, today: date,
              zone: ZoneInfo) -> Dashboard:
    """Every figure, computed live."""
    return Dashboard(scope, period, today, collection(session, scope, period, today),
                     arrears(session, scope, today), readings(session, scope, period),
                     held(session, scope), payments(session, scope, period, zone),
                     dispute_sla(session, scope, period, today, zone),
                     plans(session, scope, period, zone))


# --- snapshots ------------------------------------------------------------------------------------

KINDS: dict[str, type[Any]] = {"collection": Collection, "arrears": Arrears,
                               "readings": Readings, "held": Held, "payments": Payments,
                               "disputes": DisputeSla, "plans": Plans}


def last_month(today: date) -> str:
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year:04d}-{month:02d}"


def refresh(session: Session, clock: Clock, zone: ZoneInfo, period: str | None = None) -> int:
    """Compute every figure of ``period`` (default: last month) as of today for every district
    and replace the period's snapshot rows (in the caller's transaction). Returns the rows."""
    today = local_today(clock, zone)
    period = period or last_month(today)
    everything = Scope(list(session.scalars(sa.select(District).order_by(District.id))))
    board = dashboard(session, everything, period, today, zone)
    now = clock.now()
    session.execute(sa.delete(KpiSnapshot).where(KpiSnapshot.period == period))
    rows = [KpiSnapshot(period=period, figure=figure, district_id=d.id, as_of=today,
                        values=asdict(getattr(board, figure).get(d.id, kind())),
                        computed_at=now)
            for figure, kind in KINDS.items() for d in everything.districts]
    session.add_all(rows)
    session.flush()
    return len(rows)


def snapshot(session: Session, scope: Scope, period: str, today: date) -> Dashboard | None:
    """The figures from the snapshot of ``period`` taken today, when it has every figure of
    every district in scope; else None."""
    rows = list(session.scalars(sa.select(KpiSnapshot).where(
        KpiSnapshot.period == period, KpiSnapshot.as_of == today,
        KpiSnapshot.district_id.in_(scope.ids))))
    if not rows or len(rows) != len(KINDS) * len(scope.ids):
        return None
    figures: dict[str, dict[int, Any]] = {figure: {} for figure in KINDS}
    for row in rows:
        kind = KINDS[row.figure]
        if row.values != asdict(kind()):  # as live: a district without any rows is left out
            figures[row.figure][row.district_id] = kind(**row.values)
    return Dashboard(scope, period, today, **figures,
                     computed_at=min(row.computed_at for row in rows))


def board(session: Session, scope: Scope, period: str, today: date,
          zone: ZoneInfo) -> Dashboard:
    """What the dashboard and its CSV files show: today's snapshot, else computed live."""
    return snapshot(session, scope, period, today) or dashboard(session, scope, period, today,
                                                                zone)


def _pct(value: Decimal | None) -> str:
    return "" if value is None else str(value)


def csv_rows(board: Dashboard, figure: str) -> list[Sequence[Any]]:
    """The rows of one figure's CSV file: a header, one row per district, then the total."""
    names: list[tuple[str, int | None]] = [(d.code, d.id) for d in board.scope.districts]
    names.append(("all", None))
    rows: list[Sequence[Any]] = []
    if figure == "collection":
        rows.append(["district", "period", "bills", "billed_yuan", "collected_yuan",
                     "collection_rate_pct"])
        for code, did in names:
            c = board.total_collection() if did is None else board.collection.get(did,
                                                                                  Collection())
            rows.append([code, board.period, c.bills, yuan(c.billed_fen),
                         yuan(c.collected_fen), _pct(c.rate)])
    elif figure == "arrears":
        rows.append(["district", "as_of", "bucket_days", "bills", "owed_yuan"])
        for code, did in names:
            a = board.total_arrears() if did is None else board.arrears.get(did, Arrears())
            rows.extend([code, board.today.isoformat(), b, a.bills[b], yuan(a.owed_fen[b])]
                        for b in BUCKETS)
    elif figure == "readings":
        rows.append(["district", "period", "readings", "self_readings", "self_reading_rate_pct",
                     "flagged", "flagged_rate_pct"])
        for code, did in names:
            r = board.total_readings() if did is None else board.readings.get(did, Readings())
            rows.append([code, board.period, r.total, r.self_read, _pct(r.self_rate), r.flagged,
                         _pct(r.flagged_rate)])
    elif figure == "held":
        rows.append(["district", "bills_held", "held_yuan"])
        for code, did in names:
            h = board.total_held() if did is None else board.held.get(did, Held())
            rows.append([code, h.bills, yuan(h.total_fen)])
    elif figure == "payments":
        rows.append(["district", "month", "channel", "payments", "amount_yuan"])
        for code, did in names:
            p = board.total_payments() if did is None else board.payments.get(did, Payments())
            rows.extend([code, board.period, c, p.count.get(c, 0), yuan(p.amount_fen.get(c, 0))]
                        for c in board.channels)
    elif figure == "disputes":
        rows.append(["district", "month", "resolved", "resolved_on_time", "sla_compliance_pct",
                     "open_past_due"])
        for code, did in names:
            d = board.total_disputes() if did is None else board.disputes.get(did, DisputeSla())
            rows.append([code, board.period, d.resolved, d.on_time, _pct(d.rate),
                         d.open_overdue])
    elif figure == "plans":
        rows.append(["district", "month", "active_now", "active_yuan", "defaulted_in_month"])
        for code, did in names:
            plan = board.total_plans() if did is None else board.plans.get(did, Plans())
            rows.append([code, board.period, plan.active, yuan(plan.active_fen), plan.defaulted])
    else:
        raise NotFound()
    return rows


def to_csv(rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


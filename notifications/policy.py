"""The arrears reminder ladder, quiet hours, and the set-based sweep that queues reminders.

Each step of the ladder is an event sent once per bill (dedup key
``notify:<event>:bill:<id>``), on the day ``due_date + days`` or, if the sweep missed that day,
on a later one until the next step's day. ``bill_issued`` is the first step, counted from the
day the bill was issued. A bill is reminded while something is still owed on it beyond what
holds (disputes, plans: ``portal.bills.holds``) cover; at delivery the handler checks again, so a
payment after the sweep cancels what is queued.

The sweep is one ``INSERT ... SELECT`` per run into the outbox (topic ``notify``, the contract's
payload with ``customer_id`` null: every customer linked to the account is told); its params are
filled in when the row is delivered, from the bill as it is then.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from notifications.config import BILL_ISSUED, ReminderPolicy
from portal.bills.holds import held_by_bill
from portal.bills.models import Bill, BillStatus
from portal.kernel import audit
from portal.kernel.clock import Clock
from portal.kernel.outbox import OutboxMessage, OutboxStatus
from portal.ledger.models import LedgerEntry


def owed_beyond_holds(bill_ids: sa.ColumnElement[Any] | None = None) -> sa.Subquery:
    """``(bill_id, owed_fen)`` for bills owing more than their holds cover (set-based)."""
    held = held_by_bill()
    owed = sa.select(LedgerEntry.bill_id, sa.func.sum(LedgerEntry.amount_fen).label("owed"))
    if bill_ids is not None:
        owed = owed.where(LedgerEntry.bill_id.in_(bill_ids))
    owed_sq = owed.where(LedgerEntry.bill_id.is_not(None)).group_by(LedgerEntry.bill_id) \
        .subquery("owed")
    beyond = owed_sq.c.owed - sa.func.coalesce(held.c.held_fen, 0)
    return (sa.select(owed_sq.c.bill_id, beyond.label("owed_fen"))
            .outerjoin(held, held.c.bill_id == owed_sq.c.bill_id)
            .where(beyond > 0).subquery("owed_beyond"))


def json_object(dialect: str, **values: Any) -> sa.ColumnElement[Any]:
    """A JSON object built in SQL (PostgreSQL ``json_build_object``, SQLite ``json_object``)."""
    build = sa.func.json_build_object if dialect == "postgresql" else sa.func.json_object
    args: list[Any] = []
    for key, value in values.items():
        args += [sa.literal(key, sa.String), value]
    return build(*args)


def step_windows(policy: ReminderPolicy, today: date) -> list[tuple[str, date, date]]:
    """``(event, first, last)`` due dates for which each due-date step is sent today."""
    steps = sorted((s for s in policy.ladder if s.event != BILL_ISSUED), key=lambda s: s.days)
    windows = []
    for n, step in enumerate(steps):
        until = steps[n + 1].days if n + 1 < len(steps) else step.days + policy.catch_up_days
        # sent on days step.days .. until-1 after the due date
        windows.append((step.event, today - timedelta(days=until - 1),
                        today - timedelta(days=step.days)))
    return windows


def sweep(session: Session, clock: Clock, policy: ReminderPolicy, zone: tzinfo) -> int:
    """Queue today's reminders for every bill that owes (one INSERT ... SELECT per step kind);
    returns how many rows were written. The caller commits."""
    now = clock.now()
    today = now.astimezone(zone).date()
    available = policy.not_before(now, zone)
    dialect = session.get_bind().dialect.name
    windows = step_windows(policy, today)
    written = 0
    if windows:
        lowest, highest = min(w[1] for w in windows), max(w[2] for w in windows)
        event = sa.case(*[(Bill.due_date.between(first, last), sa.literal(name))
                          for name, first, last in windows], else_=sa.null())
        in_window = sa.select(Bill.id).where(Bill.status == BillStatus.ISSUED,
                                             Bill.due_date.between(lowest, highest))
        written += _insert(session, dialect, now, available, event, in_window,
                           Bill.due_date.between(lowest, highest))
    issued = policy.step(BILL_ISSUED)
    if issued is not None:
        start = datetime.combine(today - timedelta(days=issued.days + policy.catch_up_days - 1),
                                 time(0), zone)
        recent = Bill.issued_at >= start
        in_window = sa.select(Bill.id).where(Bill.status == BillStatus.ISSUED, recent)
        written += _insert(session, dialect, now, available, sa.literal(BILL_ISSUED), in_window,
                           recent)
    if written:
        audit.record(session, clock, "reminders.sweep", "reminder_run", today.isoformat(),
                     details={"queued": written, "not_before": available.isoformat()})
    return written


def _insert(session: Session, dialect: str, now: datetime, available: datetime,
            event: sa.ColumnElement[Any], in_window: sa.Select[Any],
            when: sa.ColumnElement[bool]) -> int:
    owed = owed_beyond_holds(in_window.scalar_subquery())
    rows = (
        sa.select(Bill.id.label("bill_id"), Bill.account_id, event.label("event"))
        .join(owed, owed.c.bill_id == Bill.id)
        .where(Bill.status == BillStatus.ISSUED, when)
        .subquery("due")
    )
    key = sa.literal("notify:") + rows.c.event + sa.literal(":bill:") + \
        sa.cast(rows.c.bill_id, sa.String)
    payload = json_object(dialect, customer_id=sa.null(), account_id=rows.c.account_id,
                          event=rows.c.event, bill_id=rows.c.bill_id,
                          params=json_object(dialect))
    return insert_outbox(session, dialect, now, available, payload, key,
                         rows.c.event.is_not(None))


def insert_outbox(session: Session, dialect: str, now: datetime, available: datetime,
                  payload: sa.ColumnElement[Any], key: sa.ColumnElement[str],
                  where: sa.ColumnElement[bool]) -> int:
    """INSERT INTO the outbox (topic ``notify``) SELECT ``payload``, ``key`` WHERE ``where``,
    skipping keys that exist; how many rows were written."""
    select = sa.select(
        sa.literal("notify"), payload, key, sa.literal(OutboxStatus.PENDING.value),
        sa.literal(0), sa.literal(now, OutboxMessage.created_at.type),
        sa.literal(available, OutboxMessage.available_at.type),
    ).where(where)
    table = cast(sa.Table, OutboxMessage.__table__)
    columns = ["topic", "payload", "dedup_key", "status", "attempts", "created_at",
               "available_at"]
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    stmt = insert(table).from_select(columns, select).on_conflict_do_nothing(
        index_elements=["dedup_key"])
    if dialect != "postgresql":
        return int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]
    # psycopg reports no rowcount for INSERT ... SELECT with parameters: count what it returns
    written = stmt.returning(table.c.id).cte("written")
    return int(session.scalar(sa.select(sa.func.count()).select_from(written)) or 0)

"""Celery tasks of the portal itself. Each takes ids or nothing, and is safe to run twice."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from celery import shared_task
from flask import current_app

from payments import janitor
from portal import context
from portal.celery_app import sqlite_broker_path
from portal.extensions import db
from portal.kernel import outbox
from portal.payment_channels import channels

# Topic -> handler. Later issues add their topics (billing posting, notifications) here.
OUTBOX_HANDLERS_KEY = "dianfei.outbox_handlers"


@shared_task(name="portal.tasks.dispatch_outbox")
def dispatch_outbox() -> int:
    handlers = current_app.extensions.get(OUTBOX_HANDLERS_KEY, {})
    return outbox.dispatch(db.session, context.clock(), handlers)


@shared_task(name="portal.tasks.payment_janitor")
def payment_janitor() -> int:
    """Query due open orders, close expired ones (at the channel first), push refunds on."""
    settings = context.settings()
    report = janitor.run(db.session, context.clock(), channels(), settings.payments,
                         settings.zone)
    return report.queried + report.refunds


@shared_task(name="portal.tasks.purge_broker_messages")
def purge_broker_messages(older_than_hours: int = 24) -> int:
    """kombu's SQLAlchemy transport keeps consumed messages in its table; delete old ones."""
    path = sqlite_broker_path(context.settings().broker_url)
    if path is None or not path.exists():
        return 0
    # kombu stamps rows with the machine's local naive time (datetime.now())
    cutoff = (context.clock().now() - timedelta(hours=older_than_hours)).astimezone()
    cutoff = cutoff.replace(tzinfo=None)
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            result = conn.execute(
                sa.text("DELETE FROM kombu_message WHERE visible = 0 AND timestamp < :cutoff"),
                {"cutoff": cutoff},
            )
            return result.rowcount
    finally:
        engine.dispose()


@shared_task(name="portal.tasks.plan_sweep")
def plan_sweep() -> int:
    """Daily: record paid installments, complete plans, default those past the grace period,
    remind installments due soon (portal.plans.service.sweep). Commits once."""
    from portal.plans import service as plans

    settings = context.settings()
    report = plans.sweep(db.session, context.clock(), settings.plans, settings.zone)
    db.session.commit()
    return report.completed + report.defaulted


@shared_task(name="portal.tasks.reconcile_statement")
def reconcile_statement(channel_name: str, day: str | None = None) -> int:
    """Fetch, keep and match one channel's statement of ``day`` (default: yesterday in the
    utility's zone); the same file again changes nothing. Returns the differences found."""
    from datetime import date

    from payments.reconcile import service as reconcile
    from portal.kernel.clock import local_today

    settings = context.settings()
    channel = channels().get(channel_name)
    if channel is None:
        return 0  # not enabled here
    when = date.fromisoformat(day) if day else local_today(context.clock(), settings.zone) - \
        timedelta(days=1)
    result = reconcile.run_day(db.session, context.clock(), channel_name, when,
                               channel.fetch_statement(when), directory=settings.reconcile_dir,
                               zone=settings.zone, channel=channel)
    return sum(result.found.values())


@shared_task(name="portal.tasks.accrue_late_fees")
def accrue_late_fees() -> int:
    """Post today's late fees (idempotent per bill per day)."""
    from portal import notifying

    return notifying.accrue_late_fees()


@shared_task(name="portal.tasks.sweep_reminders")
def sweep_reminders() -> int:
    """Queue today's arrears reminders (each step once per bill)."""
    from portal import notifying

    return notifying.sweep_reminders()


@shared_task(name="portal.tasks.sweep_receipts")
def sweep_receipts() -> int:
    """Queue payment and refund receipts for recent successes (each once)."""
    from portal import notifying

    return notifying.sweep_receipts()


@shared_task(name="portal.tasks.refresh_kpis")
def refresh_kpis() -> int:
    """Recompute the KPI dashboard's snapshot of last month (``portal.backoffice.kpi``)."""
    from portal.backoffice import kpi

    settings = context.settings()
    rows = kpi.refresh(db.session, context.clock(), settings.zone)
    db.session.commit()
    return rows

"""The Celery app, configured from settings, and the one beat schedule.

Embedded default: kombu's SQLAlchemy transport on a SQLite file (no server to install); the
connect hook in ``portal.kernel.db`` puts it in WAL mode like the portal's own database.
Production: Redis, when ``DIANFEI_BROKER_URL`` says so. Tasks run inside an app context, take
ids, and are acknowledged late so a killed worker's task runs again.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.schedules import crontab
from flask import Flask

from portal import context

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "dispatch-outbox": {"task": "portal.tasks.dispatch_outbox",
                        "schedule": timedelta(seconds=30)},
    "payment-janitor": {"task": "portal.tasks.payment_janitor",
                        "schedule": timedelta(minutes=1)},
    "purge-consumed-broker-messages": {"task": "portal.tasks.purge_broker_messages",
                                       "schedule": timedelta(hours=1)},
    # daily at 01:30 Beijing time (the schedule is in UTC): plans' defaults, completions, reminders
    "plan-sweep": {"task": "portal.tasks.plan_sweep", "schedule": crontab(minute=30, hour=17)},
    # T-1 statements: WeChat's and Alipay's are ready after 10:00 Beijing (02:00 UTC)
    **{f"reconcile-{name}": {"task": "portal.tasks.reconcile_statement", "args": (name,),
                             "schedule": crontab(hour=2, minute=30 + 5 * i)}
       for i, name in enumerate(("wechat", "alipay", "stripe"))},
    # daily at 00:30 Asia/Shanghai (16:30 UTC): fees for the day just begun
    "accrue-late-fees": {"task": "portal.tasks.accrue_late_fees",
                         "schedule": crontab(hour=16, minute=30)},
    # hourly: a run inside quiet hours queues for 08:00; each step is sent once per bill
    "sweep-reminders": {"task": "portal.tasks.sweep_reminders",
                        "schedule": crontab(minute=5)},
    "sweep-receipts": {"task": "portal.tasks.sweep_receipts",
                       "schedule": timedelta(minutes=1)},
    # the KPI dashboard reads this snapshot ("as of HH:MM")
    "refresh-kpis": {"task": "portal.tasks.refresh_kpis", "schedule": timedelta(minutes=15)},
}


def sqlite_broker_path(broker_url: str) -> Path | None:
    prefix = "sqla+sqlite:///"
    return Path(broker_url[len(prefix):]) if broker_url.startswith(prefix) else None


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    settings = app.extensions[context.SETTINGS_KEY]
    celery = Celery(app.name, task_cls=FlaskTask)
    celery.conf.update(
        broker_url=settings.broker_url,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        timezone="UTC",
        beat_schedule=BEAT_SCHEDULE,
        imports=("portal.tasks",),
    )
    celery.set_default()
    app.extensions["celery"] = celery
    return celery

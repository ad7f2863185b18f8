"""The wiring: notifiers built from settings, and the daily jobs as Celery task bodies."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from notifications.channels.console import ConsoleNotifier
from notifications.channels.email import EmailNotifier
from notifications.channels.sms import SmsNotifier
from notifications.channels.wechat_subscribe import WechatSubscribeNotifier
from notifications.config import NotificationSettings
from portal import tasks
from portal.bills import service as bills
from portal.celery_app import BEAT_SCHEDULE
from portal.kernel.outbox import OutboxMessage
from portal.notifying import build_notifiers
from portal.settings import Settings
from tests import factories


def test_a_channel_is_enabled_exactly_when_its_settings_exist() -> None:
    assert build_notifiers(NotificationSettings()) == {}
    configured = build_notifiers(NotificationSettings.model_validate({
        "wechat": {"appid": "wx1", "secret": "s"},
        "sms": {"secret_id": "id", "secret_key": "k", "sdk_app_id": "1400000000"},
        "email": {"host": "smtp.example.cn"}}))
    assert [type(n) for n in configured.values()] == [WechatSubscribeNotifier, SmsNotifier,
                                                      EmailNotifier]
    demo = build_notifiers(NotificationSettings(console=True, email={"host": "localhost"}))
    assert isinstance(demo["email"], EmailNotifier)
    assert {type(demo[c]) for c in ("wechat", "sms", "console")} == {ConsoleNotifier}


def test_settings_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("DIANFEI_REMINDERS__QUIET_START", "22:30")
    monkeypatch.setenv("DIANFEI_NOTIFICATIONS__CONSOLE", "1")
    monkeypatch.setenv("DIANFEI_REMINDERS__LADDER",
                       '[{"event": "reminder_overdue", "days": 5, "channels": ["sms"]}]')
    settings = Settings()
    assert settings.reminders.quiet_start.hour == 22 and settings.notifications.console
    assert [s.event for s in settings.reminders.ladder] == ["reminder_overdue"]
    monkeypatch.setenv("DIANFEI_REMINDERS__FINAL_NOTICE_WARNING_DAYS", "3")
    with pytest.raises(ValueError):
        Settings()


def test_the_daily_jobs_run_as_tasks(app, session, clock) -> None:
    assert {"accrue-late-fees", "sweep-reminders", "sweep-receipts"} <= set(BEAT_SCHEDULE)
    bill = factories.bill(session, clock, factories.account(session, clock),
                          due=date(2026, 11, 25))
    bills.issue(session, clock, bill)
    session.commit()
    clock.set(datetime(2026, 12, 3, 2, tzinfo=UTC))  # 10:00 in Beijing, 8 days late
    assert tasks.accrue_late_fees() == 1
    assert tasks.accrue_late_fees() == 0
    assert tasks.sweep_reminders() == 2  # bill issued (today), overdue
    assert tasks.sweep_reminders() == 0
    assert tasks.sweep_receipts() == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 2

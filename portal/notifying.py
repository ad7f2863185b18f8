"""Wires notifications into the app: the outbox handlers of ``notify``, ``notify_staff`` and
``notify.deliver``, the notifiers built from settings, and the bodies of the daily jobs (late
fees, the reminder sweep) that ``portal.tasks`` schedules."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask

from notifications import policy
from notifications.channels.base import Notifier
from notifications.channels.console import ConsoleNotifier
from notifications.channels.email import EmailNotifier
from notifications.channels.sms import SmsNotifier
from notifications.channels.wechat_subscribe import WechatSubscribeNotifier
from notifications.config import NotificationSettings
from notifications.service import CHANNELS, DELIVER_TOPIC, STAFF_TOPIC, TOPIC, Notifications
from portal import context, receipts
from portal.bills import late_fees
from portal.extensions import db
from portal.kernel.clock import local_today

NOTIFIERS_KEY = "dianfei.notifiers"


def build_notifiers(settings: NotificationSettings) -> dict[str, Notifier]:
    notifiers: dict[str, Notifier] = {}
    if settings.wechat is not None:
        notifiers["wechat"] = WechatSubscribeNotifier(settings.wechat)
    if settings.sms is not None:
        notifiers["sms"] = SmsNotifier(settings.sms)
    if settings.email is not None:
        notifiers["email"] = EmailNotifier(settings.email)
    if settings.console:
        console = ConsoleNotifier()
        for channel in CHANNELS:
            notifiers.setdefault(channel, console)
    return notifiers


def service(app: Flask | None = None) -> Notifications:
    from flask import current_app

    app = app or current_app
    settings = context.settings()
    notifiers = app.extensions.get(NOTIFIERS_KEY)
    if notifiers is None:
        notifiers = app.extensions[NOTIFIERS_KEY] = build_notifiers(settings.notifications)
    return Notifications(db.session, context.clock(), settings.notifications, settings.reminders,
                         settings.zone, settings.default_locale, notifiers, receipts.receipt_params)


def _fan_out(payload: dict[str, Any]) -> None:
    service().fan_out(payload)


def _fan_out_staff(payload: dict[str, Any]) -> None:
    service().fan_out_staff(payload)


def _deliver(payload: dict[str, Any]) -> None:
    service().deliver(payload)


def sweep_reminders() -> int:
    settings = context.settings()
    written = policy.sweep(db.session, context.clock(), settings.reminders, settings.zone)
    db.session.commit()
    return written


def sweep_receipts() -> int:
    settings = context.settings()
    written = receipts.sweep_receipts(db.session, context.clock(),
                                      timedelta(hours=settings.reminders.receipt_lookback_hours))
    db.session.commit()
    return written


def accrue_late_fees() -> int:
    settings = context.settings()
    report = late_fees.accrue(db.session, context.clock(),
                              local_today(context.clock(), settings.zone))
    db.session.commit()
    return report.posted


def init_app(app: Flask) -> None:
    from portal.tasks import OUTBOX_HANDLERS_KEY

    handlers = app.extensions.setdefault(OUTBOX_HANDLERS_KEY, {})
    handlers[TOPIC] = _fan_out
    handlers[STAFF_TOPIC] = _fan_out_staff
    handlers[DELIVER_TOPIC] = _deliver

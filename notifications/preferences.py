"""Which channels a customer wants per event: their stored choice, else the defaults (the
reminder step's channels for reminders, the default order for the rest)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from notifications.config import NotificationSettings, ReminderPolicy
from notifications.models import NotificationPreference
from portal.kernel import audit
from portal.kernel.clock import Clock
from portal.kernel.db import insert_new

CHOOSABLE = ("wechat", "sms", "email")  # the console is the demo's, not a customer's choice


def defaults(settings: NotificationSettings, policy: ReminderPolicy,
             events: Sequence[str]) -> dict[str, tuple[str, ...]]:
    out = {}
    for event in events:
        step = policy.step(event)
        out[event] = step.channels if step is not None else settings.default_channels
    return out


def chosen(session: Session, customer_id: int, settings: NotificationSettings,
           policy: ReminderPolicy, events: Sequence[str]) -> dict[str, tuple[str, ...]]:
    out = defaults(settings, policy, events)
    rows = session.execute(
        sa.select(NotificationPreference.event, NotificationPreference.channels)
        .where(NotificationPreference.customer_id == customer_id))
    out.update({event: tuple(c for c in channels.split(",") if c)
                for event, channels in rows if event in out})
    return out


def save(session: Session, clock: Clock, customer_id: int,
         choice: Mapping[str, Sequence[str]], order: Sequence[str]) -> None:
    """Store the channels per event, in ``order`` (the caller commits); an event with no channel
    is stored as "do not tell me"."""
    now = clock.now()
    audit.record(session, clock, "notifications.preferences", "customer", customer_id,
                 customer_id=customer_id,
                 details={event: list(channels) for event, channels in choice.items()})
    for event, channels in choice.items():
        unknown = set(channels) - set(CHOOSABLE)
        if unknown:
            raise ValueError(f"unknown channels: {', '.join(sorted(unknown))}")
        value = ",".join(c for c in [*order, *CHOOSABLE] if c in channels)
        value = ",".join(dict.fromkeys(value.split(","))) if value else ""
        row = {"customer_id": customer_id, "event": event, "channels": value, "updated_at": now}
        if not insert_new(session, NotificationPreference, [row], unique=["customer_id", "event"]):
            session.execute(sa.update(NotificationPreference)
                            .where(NotificationPreference.customer_id == customer_id,
                                   NotificationPreference.event == event)
                            .values(channels=value, updated_at=now))

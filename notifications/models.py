"""What customers chose to be told on which channel, and every delivery attempt we made.

Flask-free: imported by ``portal.models`` so the metadata (and Alembic) sees the tables.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.kernel.db import Base, IdMixin, str_enum

_STAFF_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class Outcome(enum.StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"    # retried by the outbox with backoff
    PERMANENT = "permanent"    # the channel refused: not retried on this channel
    SKIPPED = "skipped"        # not sent on this channel (no address, no consent left)
    CANCELLED = "cancelled"    # no longer true when its turn came (the bill was paid or held)


class NotificationPreference(IdMixin, Base):
    """The channels a customer wants for one event, in order (``"wechat,sms"``); an empty
    string means "do not tell me". Events without a row use the defaults in settings."""

    __tablename__ = "notification_preferences"
    __table_args__ = (sa.UniqueConstraint("customer_id", "event"),)

    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"))
    event: Mapped[str] = mapped_column(sa.String(64))
    channels: Mapped[str] = mapped_column(sa.String(64))
    updated_at: Mapped[datetime]


class DeliveryAttempt(IdMixin, Base):
    """One try at one delivery (an outbox row of topic ``notify.deliver``), whatever came of it."""

    __tablename__ = "notification_attempts"
    __table_args__ = (sa.Index("ix_notification_attempts_dedup_key", "dedup_key"),)

    dedup_key: Mapped[str] = mapped_column(sa.String(200))
    event: Mapped[str] = mapped_column(sa.String(64))
    channel: Mapped[str] = mapped_column(sa.String(16))
    customer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(_STAFF_ID, sa.ForeignKey("staff_members.id"))
    address: Mapped[str | None] = mapped_column(sa.String(254))
    outcome: Mapped[Outcome] = mapped_column(str_enum(Outcome, "notification_outcome"))
    provider_ref: Mapped[str | None] = mapped_column(sa.String(128))
    error: Mapped[str | None] = mapped_column(sa.String(500))
    at: Mapped[datetime]


class StaffMessage(IdMixin, Base):
    """A ``notify_staff`` message as the staff member's back-office inbox keeps it: written
    with its outbox row (``notifications.staff.notify_staff``), rendered when shown."""

    __tablename__ = "staff_messages"
    __table_args__ = (sa.Index("ix_staff_messages_staff_id_id", "staff_id", "id"),)

    staff_id: Mapped[int] = mapped_column(_STAFF_ID, sa.ForeignKey("staff_members.id"))
    event: Mapped[str] = mapped_column(sa.String(64))
    params: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    dedup_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    created_at: Mapped[datetime]
    read_at: Mapped[datetime | None]

"""The transactional outbox: a message we mean to send is a row written with its cause.

``enqueue`` adds the row inside the caller's transaction (so it exists exactly when the cause
does); ``dispatch`` hands due rows to the handler for their topic and records the outcome. A
handler that raises is retried with backoff (capped at an hour); one that raises ``Deferred``
waits till the time it names, the attempt not counted; one that raises ``PermanentFailure``, or
runs out of attempts (``MAX_ATTEMPTS``, or the handler's own ``max_attempts`` attribute), leaves
the row ``dead`` for a person. The ``dedup_key`` is unique: enqueueing the same message twice
writes one row.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from portal.kernel.clock import Clock
from portal.kernel.db import Base, IdMixin, NewRows, insert_new_together, str_enum

MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)

Handler = Callable[[dict[str, Any]], None]


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


class PermanentFailure(Exception):
    """Raised by a handler when retrying cannot help (a rejected message, a missing template)."""


class Deferred(Exception):
    """Raised by a handler that must not run yet (a reminder due in quiet hours): the row waits
    till ``until`` and the attempt is not counted."""

    def __init__(self, until: datetime) -> None:
        super().__init__(f"deferred till {until.isoformat()}")
        self.until = until


class OutboxMessage(IdMixin, Base):
    __tablename__ = "outbox_messages"
    __table_args__ = (
        sa.Index("ix_outbox_messages_due", "status", "available_at"),
        sa.CheckConstraint("attempts >= 0", name="attempts_non_negative"),
    )

    topic: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    dedup_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    status: Mapped[OutboxStatus] = mapped_column(str_enum(OutboxStatus, "outbox_status"),
                                                 default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    available_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.String(2000))


def enqueue(session: Session, clock: Clock, topic: str, payload: dict[str, Any],
            dedup_key: str, not_before: datetime | None = None) -> bool:
    """Write one message in the caller's transaction; False if its dedup_key already exists."""
    return bool(insert_new_together(session, [message(clock, topic, payload, dedup_key,
                                                      not_before)])[0])


def message(clock: Clock, topic: str, payload: dict[str, Any], dedup_key: str,
            not_before: datetime | None = None) -> NewRows:
    """The row ``enqueue`` writes, for a caller that writes it together with others."""
    now = clock.now()
    return NewRows(OutboxMessage, [{
        "topic": topic, "payload": payload, "dedup_key": dedup_key,
        "status": OutboxStatus.PENDING, "attempts": 0, "created_at": now,
        "available_at": not_before or now,
    }], unique=["dedup_key"])


def backoff(attempts: int) -> timedelta:
    """Delay before attempt ``attempts + 1``: 30 s, 1 min, 2 min ... doubling, at most an hour."""
    return min(BACKOFF_BASE * (1 << min(max(attempts - 1, 0), 16)), BACKOFF_MAX)


def dispatch(session: Session, clock: Clock, handlers: Mapping[str, Handler],
             limit: int = 100) -> int:
    """Deliver up to ``limit`` due messages; returns how many were sent. Commits per message.

    On PostgreSQL rows are claimed with ``FOR UPDATE SKIP LOCKED`` so several workers can run
    this at once without sending a message twice.
    """
    now = clock.now()
    query = (
        sa.select(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.available_at <= now)
        .order_by(OutboxMessage.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    sent = 0
    for _ in range(limit):
        message = session.scalars(query).first()
        if message is None:
            break
        handler = handlers.get(message.topic)
        message.attempts += 1
        try:
            if handler is None:
                raise PermanentFailure(f"no handler for topic {message.topic!r}")
            handler(dict(message.payload))
        except Deferred as exc:
            message.attempts -= 1
            message.available_at = exc.until
        except PermanentFailure as exc:
            message.status, message.last_error = OutboxStatus.DEAD, str(exc)[:2000]
        except Exception as exc:  # retried: any other error is taken as transient
            message.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            if message.attempts >= getattr(handler, "max_attempts", MAX_ATTEMPTS):
                message.status = OutboxStatus.DEAD
            else:
                message.available_at = now + backoff(message.attempts)
        else:
            message.status, message.sent_at, message.last_error = OutboxStatus.SENT, now, None
            sent += 1
        session.commit()
    return sent

"""WeChat subscribe-message consents: one consent allows one message, and WeChat does not say how
many a user has left, so we count them per customer and event.

The mini-program records each consent the user gave (``record_consents``); the sender takes one
before each WeChat message (``take_consent``), with a guarded UPDATE, so two senders racing for
the last consent cannot both win.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from portal.kernel.clock import Clock
from portal.kernel.db import Base, IdMixin, insert_new

# The events a customer can subscribe to in the mini-program (one template each); the names
# are those of the notification contract's events.
EVENTS = ("bill_issued", "payment_reminder", "payment_received", "reading_result")
MAX_PER_EVENT = 1000  # a cap against a client looping on "accept"


class UnknownEvent(ValueError):
    pass


class SubscribeConsent(IdMixin, Base):
    """How many messages of ``event`` the customer has allowed and not yet received."""

    __tablename__ = "subscribe_consents"
    __table_args__ = (
        sa.UniqueConstraint("customer_id", "event"),
        sa.CheckConstraint("remaining >= 0", name="remaining_non_negative"),
    )

    # (customer_id, event) is unique: that index serves look-ups by customer too
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"))
    event: Mapped[str] = mapped_column(sa.String(40))
    remaining: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime]


def record_consents(session: Session, clock: Clock, customer_id: int,
                    events: Iterable[str]) -> dict[str, int]:
    """Add one consent per event given (an event listed twice counts twice); what each of those
    events now has left. Unknown events raise ``UnknownEvent`` before anything is written."""
    counts = Counter(events)
    unknown = sorted(set(counts) - set(EVENTS))
    if unknown:
        raise UnknownEvent(", ".join(unknown))
    if not counts:
        return {}
    now = clock.now()
    insert_new(session, SubscribeConsent,
               [{"customer_id": customer_id, "event": event, "remaining": 0, "updated_at": now}
                for event in sorted(counts)],
               unique=["customer_id", "event"])
    column = SubscribeConsent.remaining
    left = {}
    for event, count in sorted(counts.items()):
        left[event] = session.execute(
            sa.update(SubscribeConsent)
            .where(SubscribeConsent.customer_id == customer_id, SubscribeConsent.event == event)
            .values(remaining=sa.case((column + count > MAX_PER_EVENT, MAX_PER_EVENT),
                                      else_=column + count),
                    updated_at=now)
            .returning(column)
            .execution_options(synchronize_session=False)).scalar_one()
    return left


def take_consent(session: Session, customer_id: int, event: str) -> bool:
    """Use one consent for a message of ``event``; False (nothing changed) when none is left."""
    result = session.execute(
        sa.update(SubscribeConsent)
        .where(SubscribeConsent.customer_id == customer_id, SubscribeConsent.event == event,
               SubscribeConsent.remaining > 0)
        .values(remaining=SubscribeConsent.remaining - 1)
        .execution_options(synchronize_session=False))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def remaining(session: Session, customer_id: int) -> dict[str, int]:
    """Consents left per event (0 for events never consented to)."""
    rows = session.execute(sa.select(SubscribeConsent.event, SubscribeConsent.remaining)
                           .where(SubscribeConsent.customer_id == customer_id))
    found = {event: left for event, left in rows}
    return {event: found.get(event, 0) for event in EVENTS}

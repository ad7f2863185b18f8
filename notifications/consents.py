"""WeChat subscribe-message consents: one consent lets us send one message (WeChat keeps no count
we can read, so we keep it). The mini-program records what the customer accepted in
``wx.requestSubscribeMessage``; the notifier takes one before each subscribe message.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from portal.kernel.clock import Clock
from portal.kernel.db import Base, IdMixin, insert_new


class SubscribeConsent(IdMixin, Base):
    __tablename__ = "subscribe_consents"
    __table_args__ = (
        sa.UniqueConstraint("customer_id", "event"),
        sa.CheckConstraint("remaining >= 0", name="remaining_non_negative"),
    )

    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"))
    event: Mapped[str] = mapped_column(sa.String(64))
    remaining: Mapped[int]
    updated_at: Mapped[datetime]


def record_consents(session: Session, clock: Clock, customer_id: int,
                    events: Iterable[str]) -> None:
    """One more message allowed for each event the customer accepted (in the caller's
    transaction)."""
    now = clock.now()
    for event in dict.fromkeys(events):
        row = {"customer_id": customer_id, "event": event, "remaining": 1, "updated_at": now}
        if not insert_new(session, SubscribeConsent, [row], unique=["customer_id", "event"]):
            session.execute(
                sa.update(SubscribeConsent)
                .where(SubscribeConsent.customer_id == customer_id,
                       SubscribeConsent.event == event)
                .values(remaining=SubscribeConsent.remaining + 1, updated_at=now))


def take_consent(session: Session, customer_id: int, event: str) -> bool:
    """Use one consent; False when none is left. A guarded UPDATE, so two senders racing for the
    last consent cannot both get it."""
    result = session.execute(
        sa.update(SubscribeConsent)
        .where(SubscribeConsent.customer_id == customer_id, SubscribeConsent.event == event,
               SubscribeConsent.remaining > 0)
        .values(remaining=SubscribeConsent.remaining - 1)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def remaining(session: Session, customer_id: int, event: str) -> int:
    return session.scalar(
        sa.select(SubscribeConsent.remaining).where(SubscribeConsent.customer_id == customer_id,
                                                    SubscribeConsent.event == event)) or 0

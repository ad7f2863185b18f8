"""Messages for staff (topic ``notify_staff``, ``notifications/contract.md``): emailed by the
``notify_staff`` handler when the staff member has an address, and always kept in their
back-office inbox. ``notify_staff`` writes both, in the caller's transaction; the inbox
functions only ever see the staff member's own messages (another's id is ``NotFound``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from notifications.models import StaffMessage
from portal.kernel import outbox
from portal.kernel.clock import Clock
from portal.kernel.errors import NotFound

TOPIC = "notify_staff"
INBOX_LIMIT = 200


def notify_staff(session: Session, clock: Clock, staff_id: int, event: str,
                 params: dict[str, Any], dedup_key: str) -> bool:
    """The outbox row and the inbox row, together; False (and neither) if already written."""
    if not outbox.enqueue(session, clock, TOPIC,
                          {"staff_id": staff_id, "event": event, "params": params}, dedup_key):
        return False
    session.add(StaffMessage(staff_id=staff_id, event=event, params=params,
                             dedup_key=dedup_key, created_at=clock.now()))
    return True


def inbox(session: Session, staff_id: int) -> list[StaffMessage]:
    """The staff member's messages, newest first (the latest ``INBOX_LIMIT``)."""
    return list(session.scalars(
        sa.select(StaffMessage).where(StaffMessage.staff_id == staff_id)
        .order_by(StaffMessage.created_at.desc(), StaffMessage.id.desc()).limit(INBOX_LIMIT)))


def unread_count(session: Session, staff_id: int) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(StaffMessage)
                          .where(StaffMessage.staff_id == staff_id,
                                 StaffMessage.read_at.is_(None))) or 0


def mark_read(session: Session, clock: Clock, staff_id: int, message_id: int) -> datetime:
    """Marks one of the staff member's own messages read (once: the first time is kept)."""
    message = session.scalar(sa.select(StaffMessage).where(StaffMessage.id == message_id,
                                                           StaffMessage.staff_id == staff_id))
    if message is None:
        raise NotFound()
    if message.read_at is None:
        message.read_at = clock.now()
    return message.read_at

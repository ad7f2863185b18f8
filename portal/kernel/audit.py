"""The audit log: who did what to which object, and when. Append-only (database triggers).

Every staff action writes one row with ``record`` in the same transaction as the action itself,
so an action exists exactly when its audit row does. Money movements are not copied here: the
ledger (``portal.ledger``) is their append-only record, and the audit pages read both.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from portal.kernel.clock import Clock
from portal.kernel.db import Base, IdMixin, str_enum


class Actor(enum.StrEnum):
    STAFF = "staff"
    CUSTOMER = "customer"
    SYSTEM = "system"  # a job: the janitor, reconciliation, the reminder sweep


class AuditEntry(IdMixin, Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        sa.Index("ix_audit_log_at", "at"),
        sa.Index("ix_audit_log_staff_at", "staff_id", "at"),
        sa.Index("ix_audit_log_account_at", "account_id", "at"),
        sa.CheckConstraint("(actor = 'staff') = (staff_id IS NOT NULL)", name="staff_actor"),
    )

    at: Mapped[datetime]
    actor: Mapped[Actor] = mapped_column(str_enum(Actor, "audit_actor"))
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_members.id"))
    customer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customers.id"))
    action: Mapped[str] = mapped_column(sa.String(64))       # e.g. "refund.approve"
    object_type: Mapped[str] = mapped_column(sa.String(32))  # e.g. "refund"
    object_id: Mapped[str | None] = mapped_column(sa.String(64))
    # the account the object belongs to: searching by account, and district scoping
    account_id: Mapped[int | None] = mapped_column(sa.ForeignKey("electricity_accounts.id"))
    amount_fen: Mapped[int | None] = mapped_column(sa.BigInteger)
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)


def record(session: Session, clock: Clock, action: str, object_type: str,
           object_id: int | str | None = None, *, staff_id: int | None = None,
           customer_id: int | None = None, account_id: int | None = None,
           amount_fen: int | None = None, details: dict[str, Any] | None = None) -> AuditEntry:
    """Add one audit row to the caller's transaction (the caller commits with its action).

    The actor is the staff member when ``staff_id`` is given, else the customer, else the system.
    ``details`` holds what a reader needs to understand the decision (the reason, old and new
    values); never secrets.
    """
    actor = Actor.STAFF if staff_id else Actor.CUSTOMER if customer_id else Actor.SYSTEM
    entry = AuditEntry(
        at=clock.now(), actor=actor, staff_id=staff_id, customer_id=customer_id, action=action,
        object_type=object_type, object_id=None if object_id is None else str(object_id),
        account_id=account_id, amount_fen=amount_fen, details=details or {},
    )
    session.add(entry)
    return entry

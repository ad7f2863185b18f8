"""Disputes of a bill: the dispute, its timeline (who, when, why of every step) and the files a
customer attached. The state machine is data (``DISPUTE_MACHINE``); the README draws it."""

from __future__ import annotations

import enum
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.bills.models import Bill
from portal.kernel.audit import Actor
from portal.kernel.db import Base, IdMixin, str_enum
from portal.kernel.statemachine import StateMachine


class DisputeStatus(enum.StrEnum):
    OPEN = "open"
    ASSIGNED = "assigned"
    INVESTIGATING = "investigating"
    AWAITING_CUSTOMER = "awaiting_customer"
    UPHELD = "upheld"        # the bill stands, with the reason
    ADJUSTED = "adjusted"    # a credit or debit through the billing system: a corrected version
    WITHDRAWN = "withdrawn"  # by the customer


S = DisputeStatus
DISPUTE_MACHINE = StateMachine(
    "dispute",
    DisputeStatus,
    {
        S.OPEN: {S.ASSIGNED, S.WITHDRAWN},
        S.ASSIGNED: {S.INVESTIGATING, S.AWAITING_CUSTOMER, S.UPHELD, S.ADJUSTED, S.WITHDRAWN},
        S.INVESTIGATING: {S.AWAITING_CUSTOMER, S.UPHELD, S.ADJUSTED, S.WITHDRAWN},
        S.AWAITING_CUSTOMER: {S.INVESTIGATING, S.UPHELD, S.ADJUSTED, S.WITHDRAWN},
    },
    initial=S.OPEN,
)
# Not final yet: the disputed amount is held from reminders and late fees.
OPEN_STATUSES = tuple(s for s in DisputeStatus if not DISPUTE_MACHINE.is_final(s))


class DisputeCategory(enum.StrEnum):
    READING = "reading"      # the meter reading looks wrong
    TARIFF = "tariff"        # the wrong tariff or price
    USAGE = "usage"          # usage far from what the household used
    PAYMENT = "payment"      # a payment is missing from the bill
    OTHER = "other"


class EventKind(enum.StrEnum):
    OPENED = "opened"
    ASSIGNED = "assigned"
    INVESTIGATING = "investigating"
    INFO_REQUESTED = "info_requested"
    CUSTOMER_REPLIED = "customer_replied"
    STAFF_MESSAGE = "staff_message"
    UPHELD = "upheld"
    ADJUSTED = "adjusted"
    WITHDRAWN = "withdrawn"


class Dispute(IdMixin, Base):
    __tablename__ = "disputes"
    __table_args__ = (
        sa.Index("ix_disputes_account_id", "account_id"),
        sa.Index("ix_disputes_customer_id", "customer_id"),
        sa.Index("ix_disputes_status_sla", "status", "sla_due_on"),
        # one dispute at a time per bill
        sa.Index("uq_disputes_open_bill", "bill_id", unique=True,
                 sqlite_where=sa.text("status NOT IN ('upheld', 'adjusted', 'withdrawn')"),
                 postgresql_where=sa.text("status NOT IN ('upheld', 'adjusted', 'withdrawn')")),
        sa.CheckConstraint("disputed_fen > 0", name="disputed_positive"),
    )

    bill_id: Mapped[int] = mapped_column(sa.ForeignKey("bills.id"))  # the version disputed
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("electricity_accounts.id"))
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"))
    category: Mapped[DisputeCategory] = mapped_column(str_enum(DisputeCategory,
                                                               "dispute_category"))
    description: Mapped[str] = mapped_column(sa.String(2000))
    disputed_fen: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[DisputeStatus] = mapped_column(str_enum(DisputeStatus, "dispute_status"),
                                                  default=DisputeStatus.OPEN)
    assigned_to_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_members.id"))
    opened_at: Mapped[datetime]
    sla_due_on: Mapped[date]  # the last working day to resolve it by
    updated_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    resolved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_members.id"))
    resolution_note: Mapped[str | None] = mapped_column(sa.String(2000))
    # an ``adjusted`` outcome: signed fen (credit < 0), the key the billing system applied once,
    # and the corrected bill version it made
    adjustment_fen: Mapped[int | None] = mapped_column(sa.BigInteger)
    adjustment_no: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    corrected_bill_id: Mapped[int | None] = mapped_column(sa.ForeignKey("bills.id"))

    bill: Mapped[Bill] = relationship(foreign_keys=[bill_id])
    corrected_bill: Mapped[Bill | None] = relationship(foreign_keys=[corrected_bill_id])
    events: Mapped[list[DisputeEvent]] = relationship(back_populates="dispute",
                                                      order_by="DisputeEvent.id")


class DisputeEvent(IdMixin, Base):
    """One step of a dispute's timeline: who (staff, customer or system), when and why."""

    __tablename__ = "dispute_events"
    __table_args__ = (
        sa.Index("ix_dispute_events_dispute_id", "dispute_id"),
        sa.CheckConstraint("(actor = 'staff') = (staff_id IS NOT NULL)", name="staff_actor"),
    )

    dispute_id: Mapped[int] = mapped_column(sa.ForeignKey("disputes.id"))
    at: Mapped[datetime]
    actor: Mapped[Actor] = mapped_column(str_enum(Actor, "dispute_actor"))
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_members.id"))
    customer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customers.id"))
    kind: Mapped[EventKind] = mapped_column(str_enum(EventKind, "dispute_event_kind"))
    from_status: Mapped[DisputeStatus | None] = mapped_column(
        str_enum(DisputeStatus, "dispute_event_from"))
    to_status: Mapped[DisputeStatus | None] = mapped_column(
        str_enum(DisputeStatus, "dispute_event_to"))
    body: Mapped[str | None] = mapped_column(sa.String(2000))

    dispute: Mapped[Dispute] = relationship(back_populates="events")
    attachments: Mapped[list[DisputeAttachment]] = relationship(
        back_populates="event", order_by="DisputeAttachment.id")


class DisputeAttachment(IdMixin, Base):
    """A file a customer attached (an image or a PDF), stored under the instance folder with a
    random name; ``original_name`` is only shown, never used as a path."""

    __tablename__ = "dispute_attachments"
    __table_args__ = (sa.Index("ix_dispute_attachments_dispute_id", "dispute_id"),)

    dispute_id: Mapped[int] = mapped_column(sa.ForeignKey("disputes.id"))
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("dispute_events.id"))
    stored_name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    original_name: Mapped[str] = mapped_column(sa.String(120))
    content_type: Mapped[str] = mapped_column(sa.String(64))
    size_bytes: Mapped[int]
    sha256: Mapped[str] = mapped_column(sa.String(64))
    uploaded_at: Mapped[datetime]

    event: Mapped[DisputeEvent] = relationship(back_populates="attachments")

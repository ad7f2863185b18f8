"""Payment orders, the bills each covers, raw channel events, and refunds.

Flask-free: imported by ``portal.models`` so the metadata (and Alembic) sees the tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from payments.channels.base import Scene
from payments.states import OrderStatus, RefundStatus
from portal.kernel.db import Base, IdMixin, str_enum


class PaymentOrder(IdMixin, Base):
    """One attempt to pay, written (committed) before any call to a channel."""

    __tablename__ = "payment_orders"
    __table_args__ = (
        sa.CheckConstraint("amount_fen > 0", name="amount_positive"),
        sa.CheckConstraint("query_attempts >= 0", name="query_attempts_non_negative"),
        sa.Index("ix_payment_orders_due_query", "status", "next_query_at"),
        # every query on paid_at also asks for status = succeeded (the receipts sweep, the KPIs'
        # month, reconciliation's day): this one index serves them all
        sa.Index("ix_payment_orders_status_paid_at", "status", "paid_at"),
    )

    order_no: Mapped[str] = mapped_column(sa.String(32), unique=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("electricity_accounts.id"), index=True)
    customer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    channel: Mapped[str] = mapped_column(sa.String(16))
    scene: Mapped[Scene] = mapped_column(str_enum(Scene, "payment_scene"))
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3), default="CNY")
    status: Mapped[OrderStatus] = mapped_column(str_enum(OrderStatus, "payment_order_status"),
                                                default=OrderStatus.CREATED)
    channel_ref: Mapped[str | None] = mapped_column(sa.String(128))
    channel_trade_no: Mapped[str | None] = mapped_column(sa.String(64))
    # What the customer's device needs to pay (QR URL, redirect URL, client secret), kept so the
    # pay page can be shown again without a second order.
    checkout: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    expires_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    next_query_at: Mapped[datetime | None]
    query_attempts: Mapped[int] = mapped_column(default=0)
    review_reason: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    bills: Mapped[list[PaymentOrderBill]] = relationship(
        back_populates="order", order_by="PaymentOrderBill.seq", cascade="all, delete-orphan")


class PaymentOrderBill(IdMixin, Base):
    """A bill an order pays, with the amount meant for it; ``seq`` is oldest first."""

    __tablename__ = "payment_order_bills"
    __table_args__ = (
        sa.UniqueConstraint("order_id", "bill_id"),
        sa.CheckConstraint("amount_fen > 0", name="amount_positive"),
    )

    order_id: Mapped[int] = mapped_column(sa.ForeignKey("payment_orders.id"), index=True)
    bill_id: Mapped[int] = mapped_column(sa.ForeignKey("bills.id"), index=True)
    seq: Mapped[int]
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)

    order: Mapped[PaymentOrder] = relationship(back_populates="bills")


class PaymentEvent(IdMixin, Base):
    """A verified event from a channel, exactly as received, recorded before we answer."""

    __tablename__ = "payment_events"
    __table_args__ = (sa.UniqueConstraint("channel", "event_id"),)

    channel: Mapped[str] = mapped_column(sa.String(16))
    event_id: Mapped[str] = mapped_column(sa.String(128))
    event_type: Mapped[str] = mapped_column(sa.String(64))
    order_no: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    outcome: Mapped[str | None] = mapped_column(sa.String(32))
    received_at: Mapped[datetime]


# The type of ``IdMixin.id``, for columns that refer to a staff member.
_STAFF_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class Refund(IdMixin, Base):
    """A refund of part or all of a succeeded order; ``refund_no`` is sent on every retry.

    ``requested_by_id`` / ``approved_by_id`` are ``staff_members`` ids (a string foreign key:
    payments does not import the back office). The two must differ. A declined request records
    ``declined_by_id``, ``declined_at`` and the reason in ``failure_reason``.
    """

    __tablename__ = "refunds"
    __table_args__ = (
        sa.CheckConstraint("amount_fen > 0", name="amount_positive"),
        sa.CheckConstraint("approved_by_id IS NULL OR approved_by_id <> requested_by_id",
                           name="four_eyes"),
        sa.CheckConstraint("query_attempts >= 0", name="query_attempts_non_negative"),
        # the receipts sweep, every minute: refunds that succeeded since a moment
        sa.Index("ix_refunds_status_finished_at", "status", "finished_at"),
    )

    refund_no: Mapped[str] = mapped_column(sa.String(32), unique=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("payment_orders.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[RefundStatus] = mapped_column(str_enum(RefundStatus, "refund_status"),
                                                 default=RefundStatus.REQUESTED)
    reason: Mapped[str] = mapped_column(sa.String(255))
    requested_by_id: Mapped[int] = mapped_column(_STAFF_ID, sa.ForeignKey("staff_members.id"),
                                                 index=True)
    approved_by_id: Mapped[int | None] = mapped_column(_STAFF_ID,
                                                       sa.ForeignKey("staff_members.id"))
    declined_by_id: Mapped[int | None] = mapped_column(_STAFF_ID,
                                                       sa.ForeignKey("staff_members.id"))
    channel_refund_no: Mapped[str | None] = mapped_column(sa.String(64))
    failure_reason: Mapped[str | None] = mapped_column(sa.String(255))
    send_attempts: Mapped[int] = mapped_column(default=0)
    query_attempts: Mapped[int] = mapped_column(default=0)
    accepted: Mapped[bool] = mapped_column(default=False)  # the channel acknowledged the send
    next_query_at: Mapped[datetime | None]
    requested_at: Mapped[datetime]
    approved_at: Mapped[datetime | None]
    declined_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    order: Mapped[PaymentOrder] = relationship()

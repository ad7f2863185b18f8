"""Deferred payment plans (分期缴费): a customer asks to pay chosen owed bills in 2-12 monthly
installments; staff propose terms (a supervisor approves above a threshold); the customer
accepts; the installments are paid through the normal payment channels.

State machine (``PLAN_MACHINE``)::

    requested -> proposed (a collector's terms, at or under the approval threshold, or a
                           supervisor's)
              -> awaiting_approval (a collector's terms above the threshold) -> proposed
    requested | awaiting_approval -> declined (staff, with a reason)
    requested | awaiting_approval | proposed -> cancelled (the customer withdraws or says no)
    proposed -> active (the customer accepts: the installments are written)
    active -> completed (every installment paid, or the covered bills owe nothing)
    active -> defaulted (an installment unpaid past the grace period)

While a plan is ``active`` (in good standing) its covered bills are held
(``portal.bills.holds``): reminders and late fees leave them alone. A defaulted plan holds
nothing: the bills are back on the normal ladder, their late fees counted from their own due
dates as if the plan had never existed.

Whether an installment is paid derives from the plan's payment orders (``PlanOrder``): what its
succeeded orders paid, less refunds, covers the installments in sequence, and an installment is
paid once that running total reaches what is due through it (``service.installments_paid``);
``PlanInstallment.paid_at`` records it when the plan is next settled (``service.settle``), so
the payment success path stays the payments package's own.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.bills import holds
from portal.kernel.db import Base, IdMixin, str_enum
from portal.kernel.statemachine import StateMachine

# The type of ``IdMixin.id``, for columns that refer to another table's id without a relationship.
_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class PlanStatus(enum.StrEnum):
    REQUESTED = "requested"
    AWAITING_APPROVAL = "awaiting_approval"
    PROPOSED = "proposed"
    ACTIVE = "active"
    COMPLETED = "completed"
    DEFAULTED = "defaulted"
    DECLINED = "declined"
    CANCELLED = "cancelled"


PLAN_MACHINE = StateMachine(
    "payment_plan",
    PlanStatus,
    {
        PlanStatus.REQUESTED: {PlanStatus.AWAITING_APPROVAL, PlanStatus.PROPOSED,
                               PlanStatus.DECLINED, PlanStatus.CANCELLED},
        PlanStatus.AWAITING_APPROVAL: {PlanStatus.PROPOSED, PlanStatus.DECLINED,
                                       PlanStatus.CANCELLED},
        PlanStatus.PROPOSED: {PlanStatus.ACTIVE, PlanStatus.CANCELLED},
        PlanStatus.ACTIVE: {PlanStatus.COMPLETED, PlanStatus.DEFAULTED},
    },
    initial=PlanStatus.REQUESTED,
)

# A bill in a plan in one of these states cannot be put in another plan.
OPEN_STATUSES = (PlanStatus.REQUESTED, PlanStatus.AWAITING_APPROVAL, PlanStatus.PROPOSED,
                 PlanStatus.ACTIVE)


class PaymentPlan(IdMixin, Base):
    """One plan: what the customer asked for, the terms staff set, and who decided what when."""

    __tablename__ = "payment_plans"
    __table_args__ = (
        sa.CheckConstraint("total_fen > 0", name="total_positive"),
        sa.CheckConstraint("installment_count BETWEEN 2 AND 12", name="installments_2_to_12"),
        sa.Index("ix_payment_plans_status", "status"),
    )

    account_id: Mapped[int] = mapped_column(sa.ForeignKey("electricity_accounts.id"), index=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    status: Mapped[PlanStatus] = mapped_column(str_enum(PlanStatus, "payment_plan_status"),
                                               default=PlanStatus.REQUESTED)
    total_fen: Mapped[int] = mapped_column(sa.BigInteger)  # what the bills owed when requested
    reason: Mapped[str] = mapped_column(sa.String(1000))
    hardship: Mapped[bool] = mapped_column(default=False)  # a resident declares hardship
    requested_installments: Mapped[int]
    requested_first_due_on: Mapped[date]
    # the terms: the request's at first, then staff's proposal
    installment_count: Mapped[int]
    first_due_on: Mapped[date]
    attachment_key: Mapped[str | None] = mapped_column(sa.String(64))  # file name in the store
    attachment_type: Mapped[str | None] = mapped_column(sa.String(32))
    attachment_name: Mapped[str | None] = mapped_column(sa.String(255))
    staff_note: Mapped[str | None] = mapped_column(sa.String(1000))  # the terms' why, for all
    decline_reason: Mapped[str | None] = mapped_column(sa.String(1000))
    requested_at: Mapped[datetime]
    proposed_by_id: Mapped[int | None] = mapped_column(_ID, sa.ForeignKey("staff_members.id"))
    proposed_at: Mapped[datetime | None]
    approved_by_id: Mapped[int | None] = mapped_column(_ID, sa.ForeignKey("staff_members.id"))
    approved_at: Mapped[datetime | None]
    declined_by_id: Mapped[int | None] = mapped_column(_ID, sa.ForeignKey("staff_members.id"))
    declined_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    defaulted_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    bills: Mapped[list[PlanBill]] = relationship(order_by="PlanBill.seq",
                                                 cascade="all, delete-orphan")
    installments: Mapped[list[PlanInstallment]] = relationship(
        order_by="PlanInstallment.seq", cascade="all, delete-orphan")


class PlanBill(IdMixin, Base):
    """A bill a plan covers, oldest first, with what it owed when the plan was requested."""

    __tablename__ = "payment_plan_bills"
    __table_args__ = (
        sa.UniqueConstraint("plan_id", "bill_id"),
        sa.CheckConstraint("amount_fen > 0", name="amount_positive"),
    )

    plan_id: Mapped[int] = mapped_column(sa.ForeignKey("payment_plans.id"))
    bill_id: Mapped[int] = mapped_column(sa.ForeignKey("bills.id"), index=True)
    seq: Mapped[int]
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)


class PlanInstallment(IdMixin, Base):
    """One installment of an accepted plan (``seq`` from 1); ``paid_at`` and ``order_id`` once
    the plan's paid orders cover it (the order that did; recorded by ``service.settle``)."""

    __tablename__ = "payment_plan_installments"
    __table_args__ = (
        sa.UniqueConstraint("plan_id", "seq"),
        sa.CheckConstraint("amount_fen > 0", name="amount_positive"),
    )

    plan_id: Mapped[int] = mapped_column(sa.ForeignKey("payment_plans.id"))
    seq: Mapped[int]
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)
    due_on: Mapped[date]
    paid_at: Mapped[datetime | None]
    order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("payment_orders.id"))


class PlanOrder(IdMixin, Base):
    """A payment order opened to pay an installment (an installment may have several: one
    abandoned, the next one paid; if both are paid, the second counts for the next one)."""

    __tablename__ = "payment_plan_orders"

    order_id: Mapped[int] = mapped_column(sa.ForeignKey("payment_orders.id"), unique=True)
    installment_id: Mapped[int] = mapped_column(sa.ForeignKey("payment_plan_installments.id"),
                                                index=True)


@holds.register("plans")
def held_by_active_plans() -> sa.Select[Any]:
    """An active plan holds each covered bill for what it owed when the plan was requested
    (never less than it owes now: payments only lower what a bill owes)."""
    return (sa.select(PlanBill.bill_id.label("bill_id"), PlanBill.amount_fen.label("held_fen"))
            .join(PaymentPlan, PaymentPlan.id == PlanBill.plan_id)
            .where(PaymentPlan.status == PlanStatus.ACTIVE))

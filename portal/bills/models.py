"""Bills and their lines. A bill's lifecycle is stored; whether it is paid derives from the
ledger."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.accounts.models import ElectricityAccount
from portal.kernel.db import Base, IdMixin, str_enum
from portal.kernel.statemachine import StateMachine

KWH = sa.Numeric(14, 2)
PRICE = sa.Numeric(10, 5)  # yuan per kWh


class BillStatus(enum.StrEnum):
    DRAFT = "draft"
    PENDING_REVIEW = "pending_review"
    ISSUED = "issued"


BILL_MACHINE = StateMachine(
    "bill",
    BillStatus,
    {
        BillStatus.DRAFT: {BillStatus.PENDING_REVIEW, BillStatus.ISSUED},
        BillStatus.PENDING_REVIEW: {BillStatus.ISSUED},
    },
    initial=BillStatus.DRAFT,
)


def charge_ref(bill_id: int) -> str:
    """The ledger ref of an issued bill's charge: one entry per bill, whoever issues it."""
    return f"bill:{bill_id}:charge"


class LineKind(enum.StrEnum):
    ENERGY = "energy"          # kWh x price, one line per tier (and per TOU register)
    TIER_INCREMENT = "tier_increment"  # kWh above a tier threshold x the tier's extra price
    FIXED = "fixed"            # a fixed monthly charge, where a tariff has one
    ADJUSTMENT = "adjustment"


class Bill(IdMixin, Base):
    __tablename__ = "bills"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "period", "version"),
        sa.CheckConstraint("total_fen >= 0", name="total_non_negative"),
        sa.CheckConstraint("version >= 1", name="version_positive"),
        # KPIs: a period's issued bills, and the bills held for review (any period)
        sa.Index("ix_bills_status_period", "status", "period"),
    )

    # no index of its own: the unique (account_id, period, version) index starts with it
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("electricity_accounts.id"))
    period: Mapped[str] = mapped_column(sa.String(7))  # YYYY-MM
    version: Mapped[int] = mapped_column(default=1)
    period_start: Mapped[date]
    period_end: Mapped[date]
    kwh: Mapped[Decimal] = mapped_column(KWH)
    peak_kwh: Mapped[Decimal | None] = mapped_column(KWH)
    flat_kwh: Mapped[Decimal | None] = mapped_column(KWH)
    valley_kwh: Mapped[Decimal | None] = mapped_column(KWH)
    tariff_code: Mapped[str] = mapped_column(sa.String(64))
    total_fen: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[BillStatus] = mapped_column(str_enum(BillStatus, "bill_status"),
                                               default=BillStatus.DRAFT)
    review_reason: Mapped[str | None] = mapped_column(sa.String(255))
    due_date: Mapped[date]
    issued_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    account: Mapped[ElectricityAccount] = relationship()
    lines: Mapped[list[BillLine]] = relationship(back_populates="bill", order_by="BillLine.seq",
                                                 cascade="all, delete-orphan")


class BillLine(IdMixin, Base):
    """One line a customer can recompute by hand: kWh x price = amount (rounded half up)."""

    __tablename__ = "bill_lines"
    __table_args__ = (sa.UniqueConstraint("bill_id", "seq"),)

    bill_id: Mapped[int] = mapped_column(sa.ForeignKey("bills.id"))
    seq: Mapped[int]
    kind: Mapped[LineKind] = mapped_column(str_enum(LineKind, "line_kind"))
    tier: Mapped[int | None]
    register: Mapped[str | None] = mapped_column(sa.String(8))  # peak / flat / valley
    kwh: Mapped[Decimal | None] = mapped_column(KWH)
    unit_price: Mapped[Decimal | None] = mapped_column(PRICE)
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)
    description: Mapped[str] = mapped_column(sa.String(200))

    bill: Mapped[Bill] = relationship(back_populates="lines")

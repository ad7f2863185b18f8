"""Meter readings: the utility's, staff-entered, imported and self-reported ones.

A self-reading (``source=customer``) carries a photo (``photo_key``: a random file name under
``DIANFEI_READING_PHOTO_DIR``); one that ``portal.readings.rules`` finds implausible is stored
``flagged`` with ``flag_reason`` (machine-readable codes, worded by ``portal.readings.text``) and
waits for staff, whose decision is kept on the row (who, when, why, and the value before a
correction) and in the audit log.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.accounts.models import Meter
from portal.kernel.db import Base, IdMixin, str_enum
from portal.kernel.statemachine import StateMachine

KWH = sa.Numeric(14, 2)


class ReadingSource(enum.StrEnum):
    UTILITY = "utility"        # read by the utility (meter reader or AMI)
    CUSTOMER = "customer"      # self-reported
    STAFF = "staff"
    IMPORT = "import"
    ESTIMATED = "estimated"


class ReadingStatus(enum.StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    FLAGGED = "flagged"
    REJECTED = "rejected"


READING_MACHINE = StateMachine(
    "reading",
    ReadingStatus,
    {
        ReadingStatus.SUBMITTED: {ReadingStatus.ACCEPTED, ReadingStatus.FLAGGED},
        ReadingStatus.FLAGGED: {ReadingStatus.ACCEPTED, ReadingStatus.REJECTED},
    },
    initial=ReadingStatus.SUBMITTED,
)


class Reading(IdMixin, Base):
    """A cumulative register reading (kWh) of one meter for one billing period."""

    __tablename__ = "readings"
    __table_args__ = (
        sa.Index("ix_readings_meter_period", "meter_id", "period"),
        sa.Index("ix_readings_period", "period"),  # KPIs: a period's readings
        sa.CheckConstraint("value_kwh >= 0", name="value_non_negative"),
    )

    meter_id: Mapped[int] = mapped_column(sa.ForeignKey("meters.id"))
    period: Mapped[str] = mapped_column(sa.String(7))  # YYYY-MM
    read_on: Mapped[date]
    value_kwh: Mapped[Decimal] = mapped_column(KWH)
    peak_kwh: Mapped[Decimal | None] = mapped_column(KWH)
    flat_kwh: Mapped[Decimal | None] = mapped_column(KWH)
    valley_kwh: Mapped[Decimal | None] = mapped_column(KWH)
    source: Mapped[ReadingSource] = mapped_column(str_enum(ReadingSource, "reading_source"))
    status: Mapped[ReadingStatus] = mapped_column(str_enum(ReadingStatus, "reading_status"),
                                                  default=ReadingStatus.SUBMITTED)
    submitted_by_customer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customers.id"))
    created_at: Mapped[datetime]
    photo_key: Mapped[str | None] = mapped_column(sa.String(40))
    flag_reason: Mapped[str | None] = mapped_column(sa.String(255))
    billing_ref: Mapped[str | None] = mapped_column(sa.String(64))  # the billing system's id
    decided_by_staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_members.id"))
    decided_at: Mapped[datetime | None]
    decision_note: Mapped[str | None] = mapped_column(sa.String(255))
    corrected_from_kwh: Mapped[Decimal | None] = mapped_column(KWH)

    meter: Mapped[Meter] = relationship()

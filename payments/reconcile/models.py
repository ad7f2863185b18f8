"""Reconciliation tables: each statement version as fetched (the file kept on disk with its
hash), its lines in fen, and the differences found against our orders and refunds.

Flask-free: imported by ``portal.models`` so the metadata (and Alembic) sees the tables.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.kernel.db import Base, IdMixin, str_enum
from portal.kernel.statemachine import StateMachine

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class Statement(IdMixin, Base):
    """One version of a channel's statement of one day. The same bytes again are the same
    version (nothing changes); different bytes are a new version, matched on their own."""

    __tablename__ = "recon_statements"
    __table_args__ = (sa.UniqueConstraint("channel", "bill_date", "version"),
                      sa.UniqueConstraint("channel", "bill_date", "sha256"))

    channel: Mapped[str] = mapped_column(sa.String(16))
    bill_date: Mapped[date]
    version: Mapped[int]
    sha256: Mapped[str] = mapped_column(sa.String(64))  # of the file as kept ("" bytes: no file)
    path: Mapped[str | None] = mapped_column(sa.String(500))  # None: the channel had no statement
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    line_count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    payment_fen: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    refund_fen: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    differences: Mapped[int] = mapped_column(default=0)
    fetched_at: Mapped[datetime]
    matched_at: Mapped[datetime | None]


class StatementLine(Base):
    """A statement line in fen; written in bulk (COPY on PostgreSQL), matched with SQL joins."""

    __tablename__ = "recon_lines"
    __table_args__ = (sa.Index("ix_recon_lines_order_no", "order_no"),
                      sa.Index("ix_recon_lines_refund_no", "refund_no",
                               postgresql_where=sa.text("refund_no IS NOT NULL"),
                               sqlite_where=sa.text("refund_no IS NOT NULL")))

    # (statement, line number in the file): no sequence, and the key finds a statement's lines.
    # No foreign key: lines are written only by the loader, in the transaction that writes their
    # statement, and a per-row RI trigger would be most of the COPY's cost.
    statement_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)
    line_no: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(sa.String(8))  # payment | refund
    order_no: Mapped[str] = mapped_column(sa.String(64))
    channel_trade_no: Mapped[str] = mapped_column(sa.String(64))
    refund_no: Mapped[str | None] = mapped_column(sa.String(64))
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)
    fee_fen: Mapped[int] = mapped_column(sa.BigInteger)
    occurred_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(sa.String(32))


class DifferenceKind(enum.StrEnum):
    CHANNEL_ONLY = "channel_only"        # 长款: the channel has it, we have no success/refund
    LOCAL_ONLY = "local_only"            # 短款: we have a success/refund, the channel does not
    AMOUNT_MISMATCH = "amount_mismatch"  # both have it, amounts differ
    STATUS_MISMATCH = "status_mismatch"  # both have it, we say closed/failed/declined/review


class DifferenceStatus(enum.StrEnum):
    RECHECK = "recheck"              # local_only: re-checked against the next day's statement
    OPEN = "open"                    # on the staff worklist
    AUTO_RESOLVED = "auto_resolved"  # 补单 through the normal path, or found the next day
    RESOLVED = "resolved"            # a member of staff decided, with a note
    SUPERSEDED = "superseded"        # a newer version of the statement was matched


DIFFERENCE_MACHINE = StateMachine(
    "recon_difference",
    DifferenceStatus,
    {
        DifferenceStatus.RECHECK: {DifferenceStatus.OPEN, DifferenceStatus.AUTO_RESOLVED,
                                   DifferenceStatus.SUPERSEDED},
        DifferenceStatus.OPEN: {DifferenceStatus.AUTO_RESOLVED, DifferenceStatus.RESOLVED,
                                DifferenceStatus.SUPERSEDED},
    },
    initial=DifferenceStatus.OPEN,
)


class Difference(IdMixin, Base):
    """One difference between a statement version and our books. ``key`` is
    ``payment:<order_no>`` or ``refund:<refund_no>``: one difference per key per version, so
    matching a version twice cannot add any."""

    __tablename__ = "recon_differences"
    __table_args__ = (sa.UniqueConstraint("statement_id", "key"),
                      sa.Index("ix_recon_differences_status", "status", "channel", "bill_date"))

    statement_id: Mapped[int] = mapped_column(sa.ForeignKey("recon_statements.id"))
    channel: Mapped[str] = mapped_column(sa.String(16))
    bill_date: Mapped[date]
    key: Mapped[str] = mapped_column(sa.String(80))
    kind: Mapped[DifferenceKind] = mapped_column(str_enum(DifferenceKind, "recon_difference_kind"))
    status: Mapped[DifferenceStatus] = mapped_column(
        str_enum(DifferenceStatus, "recon_difference_status"), default=DifferenceStatus.OPEN)
    order_no: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    refund_no: Mapped[str | None] = mapped_column(sa.String(64))
    channel_trade_no: Mapped[str | None] = mapped_column(sa.String(64))
    channel_amount_fen: Mapped[int | None] = mapped_column(sa.BigInteger)
    local_amount_fen: Mapped[int | None] = mapped_column(sa.BigInteger)
    channel_status: Mapped[str | None] = mapped_column(sa.String(32))
    local_status: Mapped[str | None] = mapped_column(sa.String(32))
    # The account of the order, when we have the order: staff see it by district.
    account_id: Mapped[int | None] = mapped_column(sa.ForeignKey("electricity_accounts.id"),
                                                   index=True)
    resolution: Mapped[str | None] = mapped_column(sa.String(500))
    resolved_by_id: Mapped[int | None] = mapped_column(_ID, sa.ForeignKey("staff_members.id"))
    resolved_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class DifferenceNote(IdMixin, Base):
    """A note a member of staff left on a difference (the resolving note is one too)."""

    __tablename__ = "recon_difference_notes"

    difference_id: Mapped[int] = mapped_column(sa.ForeignKey("recon_differences.id"), index=True)
    staff_id: Mapped[int] = mapped_column(_ID, sa.ForeignKey("staff_members.id"))
    body: Mapped[str] = mapped_column(sa.String(500))
    created_at: Mapped[datetime]

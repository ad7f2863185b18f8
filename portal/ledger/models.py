"""The append-only ledger. Every money movement is one row; balances and bill status derive from it.

Sign convention: ``amount_fen`` > 0 is owed by the customer (charge, late fee, refund paid out),
< 0 is in the customer's favour (payment). ``SUM(amount_fen)`` over an account is what it owes
(negative: prepaid). An entry with ``bill_id`` counts towards that bill. ``ref`` is an
idempotency key: posting the same movement twice writes one row. The migration adds triggers
that refuse UPDATE and DELETE on this table.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.kernel.db import Base, IdMixin, str_enum


class EntryKind(enum.StrEnum):
    CHARGE = "charge"          # a bill's total
    LATE_FEE = "late_fee"
    PAYMENT = "payment"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"


class LedgerEntry(IdMixin, Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        sa.CheckConstraint(
            "(kind IN ('charge', 'late_fee', 'refund') AND amount_fen > 0)"
            " OR (kind = 'payment' AND amount_fen < 0)"
            " OR (kind = 'adjustment' AND amount_fen <> 0)",
            name="sign_matches_kind",
        ),
        sa.Index("ix_ledger_entries_account_bill", "account_id", "bill_id"),
        # KPIs (arrears): owed per bill read from the index alone (PostgreSQL)
        sa.Index("ix_ledger_entries_bill_amount", "bill_id", postgresql_include=["amount_fen"]),
    )

    account_id: Mapped[int] = mapped_column(sa.ForeignKey("electricity_accounts.id"))
    bill_id: Mapped[int | None] = mapped_column(sa.ForeignKey("bills.id"), index=True)
    kind: Mapped[EntryKind] = mapped_column(str_enum(EntryKind, "entry_kind"))
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)
    ref: Mapped[str] = mapped_column(sa.String(120), unique=True)
    memo: Mapped[str | None] = mapped_column(sa.String(255))
    effective_on: Mapped[date]
    created_at: Mapped[datetime]

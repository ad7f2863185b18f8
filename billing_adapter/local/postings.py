"""Payment postings (销账) in the embedded billing system, and their reversals (refunds).

A posting records that the billing system has written the payment off against the account; the
money itself is in the portal's ledger, written by the payments service. ``order_no`` is unique,
so posting the same order twice writes one row. A refund reverses all or part of a posting: one
``BillingReversal`` row per refund, unique on ``reversal_no``; together they never exceed the
posting (``LocalBillingSystem.reverse_payment`` checks it with the posting row locked).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.kernel.db import Base, IdMixin


class BillingPosting(IdMixin, Base):
    __tablename__ = "billing_postings"
    __table_args__ = (sa.CheckConstraint("amount_fen > 0", name="amount_positive"),)

    order_no: Mapped[str] = mapped_column(sa.String(64), unique=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("electricity_accounts.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)
    paid_at: Mapped[datetime]
    channel: Mapped[str] = mapped_column(sa.String(32))
    bill_periods: Mapped[str] = mapped_column(sa.String(255), default="")  # "2026-10,2026-11"
    created_at: Mapped[datetime]


class BillingReversal(IdMixin, Base):
    __tablename__ = "billing_reversals"
    __table_args__ = (sa.CheckConstraint("amount_fen > 0", name="amount_positive"),)

    reversal_no: Mapped[str] = mapped_column(sa.String(64), unique=True)
    posting_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_postings.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)
    reason: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime]

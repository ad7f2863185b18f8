"""Payment postings (销账) in the embedded billing system: one row per order number.

The row records that the billing system has written the payment off against the account; the
money itself is in the portal's ledger, written by the payments service. ``order_no`` is unique,
so posting the same order twice writes one row; a reversal (refund) stamps ``reversed_at`` once.
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
    reversed_at: Mapped[datetime | None]
    reversal_reason: Mapped[str | None] = mapped_column(sa.String(255))

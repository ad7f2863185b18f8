"""The boundary to the utility's billing system (营销系统): one Protocol, two implementations.

``billing_adapter.local`` is the embedded engine (tariffs, bill computation, late fees) working on
the portal's own tables; ``billing_adapter.http`` speaks a documented JSON contract to an external
system. The portal keeps its own copy of accounts and bills; the adapter feeds it. Money is integer
fen; kWh and prices are ``Decimal``. This module imports neither Flask nor the portal's web code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable


class BillingError(Exception):
    """Base of the adapter's errors."""


class BillingUnavailable(BillingError):
    """The billing system cannot be reached or keeps failing (timeouts, 5xx): try again later.

    The portal shows a friendly "billing is temporarily unavailable" page; the outbox retries."""


class BillingRejected(BillingError):
    """The billing system refused the request (unknown account, invalid reading, ...): retrying the
    same request will not help. ``code`` is machine-readable, ``message`` for people."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AccountInfo:
    account_no: str
    holder_name: str
    address: str
    customer_class: str  # "residential" | "business"
    tariff_code: str
    district_code: str


@dataclass(frozen=True)
class BillLineInfo:
    kind: str  # "energy" | "tier_increment" | "fixed" | "adjustment"
    amount_fen: int
    description: str
    tier: int | None = None
    register: str | None = None  # "peak" | "flat" | "valley"
    kwh: Decimal | None = None
    unit_price: Decimal | None = None  # yuan per kWh


@dataclass(frozen=True)
class BillInfo:
    account_no: str
    period: str  # YYYY-MM
    version: int
    period_start: date
    period_end: date
    kwh: Decimal
    tariff_code: str
    total_fen: int
    status: str  # "draft" | "pending_review" | "issued"
    due_date: date
    lines: tuple[BillLineInfo, ...] = ()
    review_reason: str | None = None
    peak_kwh: Decimal | None = None
    flat_kwh: Decimal | None = None
    valley_kwh: Decimal | None = None


@dataclass(frozen=True)
class ReadingSubmission:
    account_no: str
    meter_no: str
    period: str  # YYYY-MM
    read_on: date
    value_kwh: Decimal  # cumulative register
    source: str  # "utility" | "customer" | "staff" | "import" | "estimated"
    peak_kwh: Decimal | None = None
    flat_kwh: Decimal | None = None
    valley_kwh: Decimal | None = None


@dataclass(frozen=True)
class ReadingReceipt:
    reading_ref: str  # the billing system's id for the reading
    accepted: bool
    reason: str | None = None  # why it was not accepted as is


@dataclass(frozen=True)
class PaymentPosting:
    """A payment to write off (销账) against an account: idempotent on ``order_no``."""

    order_no: str
    account_no: str
    amount_fen: int
    paid_at: datetime
    channel: str
    bill_periods: tuple[str, ...] = field(default=())  # bills it covers, oldest first


@dataclass(frozen=True)
class PostingReceipt:
    order_no: str
    billing_ref: str  # the billing system's id for the posting
    duplicate: bool  # True when this order_no had been posted before (nothing changed)


@dataclass(frozen=True)
class Adjustment:
    """A credit (negative) or debit (positive) to a bill, e.g. the outcome of a dispute."""

    adjustment_no: str  # our idempotency key
    account_no: str
    period: str
    amount_fen: int
    reason: str


@runtime_checkable
class BillingSystem(Protocol):
    def get_account(self, account_no: str) -> AccountInfo:
        """Raises ``BillingRejected("unknown_account")`` when there is no such account."""
        ...

    def list_bills(self, account_no: str, since: str) -> list[BillInfo]:
        """The latest version of every bill of the account for periods >= ``since`` (YYYY-MM)."""
        ...

    def submit_reading(self, reading: ReadingSubmission) -> ReadingReceipt: ...

    def post_payment(self, posting: PaymentPosting) -> PostingReceipt:
        """Write off a payment; a second call with the same ``order_no`` changes nothing and
        returns ``duplicate=True``."""
        ...

    def reverse_payment(self, order_no: str, reason: str, *, reversal_no: str,
                        amount_fen: int) -> PostingReceipt:
        """Undo ``amount_fen`` of the posting of ``order_no`` (a full or partial refund).

        Idempotent on ``reversal_no`` (our refund number): a repeat changes nothing and returns
        ``duplicate=True``. An order may have several reversals; together they never exceed its
        posting. Raises ``BillingRejected``: ``unknown_order`` (never posted), ``invalid_amount``
        (not above 0), ``reversal_too_large`` (more than is left of the posting),
        ``reversal_conflict`` (this ``reversal_no`` was used with another order or amount)."""
        ...

    def apply_adjustment(self, adjustment: Adjustment) -> BillInfo:
        """Apply once per ``adjustment_no``; returns the corrected bill version."""
        ...

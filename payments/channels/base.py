"""One interface for every payment channel (WeChat Pay v3, Alipay, Stripe).

A channel is built from its credentials and is enabled exactly when its settings exist. It never
touches the database: ``payments.service`` writes the order row before calling ``create`` and
applies what ``parse_notification`` / ``query`` return through the order state machine.
Money crosses this interface as integer fen in CNY; each channel converts at its edge (Alipay's
yuan strings are parsed strictly with ``portal.kernel.money.parse_yuan``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol, runtime_checkable


class ChannelError(Exception):
    """The channel answered with an error we understand (e.g. order already paid)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class ChannelUnavailable(ChannelError):
    """Timeout, connection error or 5xx: the outcome is unknown, query again later."""

    def __init__(self, message: str = "") -> None:
        super().__init__("channel_unavailable", message)


class InvalidNotification(Exception):
    """A notification failed verification (signature, timestamp, decryption, app id, merchant,
    currency). ``status`` is the HTTP status to answer with."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Scene(enum.StrEnum):
    DESKTOP = "desktop"          # WeChat Native QR code, Alipay page pay, Stripe card form
    MOBILE = "mobile"            # Alipay wap pay, Stripe card form
    MINIPROGRAM = "miniprogram"  # WeChat JSAPI (wx.requestPayment parameters)


@dataclass(frozen=True)
class OrderRequest:
    order_no: str          # ours, 6-32 characters [A-Za-z0-9_-]
    amount_fen: int
    description: str
    scene: Scene
    notify_url: str
    return_url: str        # where the customer's browser comes back to (Alipay, Stripe)
    expires_at: datetime   # aware UTC
    payer_openid: str | None = None  # WeChat JSAPI only
    currency: str = "CNY"


@dataclass(frozen=True)
class Checkout:
    """What the customer's device needs to pay; exactly one of the fields is set."""

    code_url: str | None = None                  # WeChat Native: render as a QR code
    pay_params: Mapping[str, str] | None = None  # WeChat JSAPI: wx.requestPayment(...)
    redirect_url: str | None = None              # Alipay page/wap pay
    client_secret: str | None = None             # Stripe PaymentIntent
    channel_ref: str | None = None               # e.g. Stripe's PaymentIntent id


class TradeState(enum.StrEnum):
    PENDING = "pending"      # created, not paid yet (NOTPAY, WAIT_BUYER_PAY, requires_*)
    SUCCEEDED = "succeeded"  # SUCCESS, TRADE_SUCCESS/FINISHED, succeeded
    CLOSED = "closed"        # CLOSED, TRADE_CLOSED, canceled
    FAILED = "failed"        # PAYERROR, payment_failed
    REFUNDED = "refunded"    # WeChat REFUND: paid, then (partly) refunded
    NOT_FOUND = "not_found"  # the channel has never heard of the order


@dataclass(frozen=True)
class Trade:
    """A verified statement about one of our orders, from a notification or a query."""

    order_no: str
    state: TradeState
    amount_fen: int | None = None   # what the channel says was paid (None when unknown)
    currency: str = "CNY"
    channel_trade_no: str | None = None
    paid_at: datetime | None = None


@dataclass(frozen=True)
class Notification:
    """A verified, decrypted notification. ``event_id`` is the channel's id of this event (for
    de-duplication and the raw-event record); ``trade`` is None for events we do not act on."""

    event_id: str
    event_type: str
    trade: Trade | None
    raw: Mapping[str, Any] = field(default_factory=dict)


class RefundState(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class RefundRequest:
    order_no: str
    refund_no: str        # ours; reused verbatim on every retry
    amount_fen: int       # this refund
    order_amount_fen: int
    reason: str
    channel_ref: str | None = None  # e.g. the Stripe PaymentIntent id


@dataclass(frozen=True)
class RefundResult:
    refund_no: str
    state: RefundState
    channel_refund_no: str | None = None
    amount_fen: int | None = None


@dataclass(frozen=True)
class StatementFile:
    """A channel's daily statement exactly as downloaded (already checked against the hash the
    channel gave, where it gives one); ``payments.reconcile`` keeps it and parses it."""

    content: bytes
    suffix: str           # ".csv.gz" (WeChat), ".zip" (Alipay), ".json" (Stripe)


@runtime_checkable
class PaymentChannel(Protocol):
    name: str  # "wechat" | "alipay" | "stripe"

    def create(self, order: OrderRequest) -> Checkout: ...

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify and decode; raise ``InvalidNotification`` on anything unverifiable."""
        ...

    def ack(self, ok: bool) -> tuple[int, Mapping[str, str], bytes]:
        """The reply the channel expects: (status, headers, body)."""
        ...

    def query(self, order_no: str, channel_ref: str | None = None) -> Trade: ...

    def close(self, order_no: str, channel_ref: str | None = None) -> None:
        """Close an unpaid order at the channel; closing a closed or unknown order is fine;
        raise ``ChannelError("already_paid")`` when it was paid."""
        ...

    def refund(self, request: RefundRequest) -> RefundResult: ...

    def query_refund(self, request: RefundRequest) -> RefundResult: ...

    def fetch_statement(self, day: date) -> StatementFile | None:
        """The statement of ``day`` (the channel's business day) as a file; None when the
        channel says there is none (no trade that day)."""
        ...

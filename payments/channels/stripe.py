"""Stripe card payments through PaymentIntents (stripe-python 16).

One PaymentIntent per order, in CNY fen, tagged with ``metadata.order_no`` and created with an
idempotency key derived from the order number, so a retried ``create`` returns the same intent.
The customer's browser confirms it with Stripe.js (``StripeSettings.js_url``, the publishable key
and the client secret); no card data ever reaches our server. Every call goes through a
per-instance ``stripe.StripeClient``: the module-global ``stripe.api_key`` is never set.

Webhooks are verified with ``Webhook.construct_event`` on the raw body (HMAC-SHA256 of
``"{t}.{body}"``; timestamps older than 300 s are refused against the wall clock, as Stripe's
library does) and then checked: live/test mode matches our key, no Connect account, the intent's
currency is ``cny`` and it carries our order number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pydantic
import stripe

from payments.channels.base import (
    ChannelError,
    ChannelUnavailable,
    Checkout,
    InvalidNotification,
    Notification,
    OrderRequest,
    RefundRequest,
    RefundResult,
    RefundState,
    StatementFile,
    Trade,
    TradeState,
)

TOLERANCE_SECONDS = 300

_TRADE_STATES = {
    "requires_payment_method": TradeState.PENDING,
    "requires_confirmation": TradeState.PENDING,
    "requires_action": TradeState.PENDING,
    "processing": TradeState.PENDING,
    "requires_capture": TradeState.PENDING,
    "succeeded": TradeState.SUCCEEDED,
    "canceled": TradeState.CLOSED,
}
# The events we act on; any other verified event is acknowledged with ``trade=None``.
_EVENT_STATES = {
    "payment_intent.succeeded": TradeState.SUCCEEDED,
    "payment_intent.payment_failed": TradeState.FAILED,
    "payment_intent.canceled": TradeState.CLOSED,
}
_REFUND_STATES = {
    "pending": RefundState.PENDING,
    "requires_action": RefundState.PENDING,
    "succeeded": RefundState.SUCCEEDED,
    "failed": RefundState.FAILED,
    "canceled": RefundState.FAILED,
}

class StripeSettings(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)

    secret_key: str = pydantic.Field(pattern=r"^(sk|rk)_(test|live)_\S+$")
    publishable_key: str = pydantic.Field(pattern=r"^pk_(test|live)_\S+$")
    webhook_secret: str = pydantic.Field(pattern=r"^whsec_\S+$")
    api_base: str = "https://api.stripe.com"
    js_url: str = "https://js.stripe.com/v3/"
    connect_timeout_s: float = pydantic.Field(default=5.0, gt=0)
    read_timeout_s: float = pydantic.Field(default=20.0, gt=0)
    max_network_retries: int = pydantic.Field(default=2, ge=0)
    timezone: str = "Asia/Shanghai"  # the business day of ``fetch_statement``

    @property
    def livemode(self) -> bool:
        return "_live_" in self.secret_key


class StripeChannel:
    name = "stripe"

    def __init__(self, settings: StripeSettings,
                 *, http_client: stripe.HTTPClient | None = None) -> None:
        self.settings = settings
        self._client = stripe.StripeClient(
            settings.secret_key,
            base_addresses={"api": settings.api_base},
            max_network_retries=settings.max_network_retries,
            http_client=http_client or stripe.RequestsClient(
                timeout=(settings.connect_timeout_s, settings.read_timeout_s)),
        )

    # -- payments -------------------------------------------------------------------------------

    def create(self, order: OrderRequest) -> Checkout:
        if order.currency.upper() != "CNY":
            raise ChannelError("unsupported_currency", order.currency)
        with _calls():
            intent = self._client.v1.payment_intents.create(
                {
                    "amount": order.amount_fen,
                    "currency": "cny",
                    "description": order.description[:1000],
                    "metadata": {"order_no": order.order_no},
                    "automatic_payment_methods": {"enabled": True},
                },
                {"idempotency_key": f"dianfei-order-{order.order_no}"},
            )
        return Checkout(client_secret=intent.client_secret, channel_ref=intent.id)

    def query(self, order_no: str, channel_ref: str | None = None) -> Trade:
        intent = self._intent(order_no, channel_ref, expand=["latest_charge"])
        if intent is None:
            return Trade(order_no=order_no, state=TradeState.NOT_FOUND)
        return self._trade(order_no, intent, paid_at=None)

    def close(self, order_no: str, channel_ref: str | None = None) -> None:
        intent = self._intent(order_no, channel_ref)
        if intent is None or intent["status"] == "canceled":
            return
        if intent["status"] == "succeeded":
            raise ChannelError("already_paid", intent["id"])
        try:
            with _calls():
                self._client.v1.payment_intents.cancel(intent["id"])
        except ChannelError as exc:
            if exc.code != "payment_intent_unexpected_state":
                raise
            # it moved between our read and the cancel: paid (or canceled) meanwhile
            intent = self._intent(order_no, intent["id"])
            if intent is not None and intent["status"] == "succeeded":
                raise ChannelError("already_paid", intent["id"]) from exc
            if intent is None or intent["status"] != "canceled":
                raise

    # -- refunds --------------------------------------------------------------------------------

    def refund(self, request: RefundRequest) -> RefundResult:
        intent_id = self._intent_id(request.order_no, request.channel_ref)
        # Stripe keeps idempotency keys for 24 h: looking first stops a later retry refunding twice
        existing = self._find_refund(intent_id, request.refund_no)
        if existing is not None:
            return _refund_result(request.refund_no, existing)
        with _calls():
            refund = self._client.v1.refunds.create(
                {
                    "payment_intent": intent_id,
                    "amount": request.amount_fen,
                    "reason": "requested_by_customer",
                    "metadata": {"order_no": request.order_no, "refund_no": request.refund_no,
                                 "reason": request.reason[:500]},
                },
                {"idempotency_key": f"dianfei-refund-{request.refund_no}"},
            )
        return _refund_result(request.refund_no, refund.to_dict())

    def query_refund(self, request: RefundRequest) -> RefundResult:
        refund = self._find_refund(self._intent_id(request.order_no, request.channel_ref),
                                   request.refund_no)
        if refund is None:
            raise ChannelError("refund_not_found", request.refund_no)
        return _refund_result(request.refund_no, refund)

    # -- reconciliation -------------------------------------------------------------------------

    def fetch_statement(self, day: date) -> StatementFile | None:
        """The day's balance transactions (business day in ``settings.timezone``) with their
        sources' PaymentIntents, as a JSON array (``payments.reconcile.stripe`` reads it)."""
        zone = ZoneInfo(self.settings.timezone)
        start = datetime.combine(day, time(), zone)
        end = start + timedelta(days=1)
        with _calls():
            pages = self._client.v1.balance_transactions.list({
                "created": {"gte": int(start.timestamp()), "lt": int(end.timestamp())},
                "limit": 100,
                "expand": ["data.source.payment_intent"],
            })
            transactions = [txn.to_dict() for txn in pages.auto_paging_iter()]
        if not transactions:
            return None
        return StatementFile(json.dumps(transactions, sort_keys=True).encode(), ".json")

    # -- notifications --------------------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        signature = _header(headers, "Stripe-Signature")
        if not signature:
            raise InvalidNotification("missing Stripe-Signature header")
        try:
            self._client.construct_event(body, signature, self.settings.webhook_secret,
                                         tolerance=TOLERANCE_SECONDS)
            event = json.loads(body)
        except stripe.SignatureVerificationError as exc:
            raise InvalidNotification(f"signature: {exc.user_message or exc}") from exc
        except (ValueError, IndexError) as exc:  # undecodable JSON, a header without t=
            raise InvalidNotification(f"malformed: {exc}") from exc
        try:
            return self._notification(event)
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidNotification(f"malformed event: missing {exc}") from exc

    def ack(self, ok: bool) -> tuple[int, Mapping[str, str], bytes]:
        body = {"received": True} if ok else {"received": False}
        return (200 if ok else 400), {"Content-Type": "application/json"}, json.dumps(body).encode()

    # -- helpers --------------------------------------------------------------------------------

    def _notification(self, event: dict[str, Any]) -> Notification:
        if event["object"] != "event" or not isinstance(event["id"], str):
            raise InvalidNotification("malformed event: not an event")
        if event["livemode"] is not self.settings.livemode:
            raise InvalidNotification("livemode does not match our key")
        if event.get("account"):
            raise InvalidNotification("event for a connected account")
        state = _EVENT_STATES.get(event["type"])
        if state is None:
            return Notification(event_id=event["id"], event_type=event["type"], trade=None,
                                raw=event)
        intent = event["data"]["object"]
        if intent["object"] != "payment_intent":
            raise InvalidNotification("malformed event: not a payment_intent")
        order_no = (intent.get("metadata") or {}).get("order_no")
        if not order_no:
            raise InvalidNotification("payment_intent without metadata.order_no")
        if intent["currency"] != "cny":
            raise InvalidNotification(f"currency {intent['currency']!r} is not cny")
        if type(intent["amount_received"]) is not int or intent["amount_received"] < 0:
            raise InvalidNotification("malformed amount_received")
        paid_at = datetime.fromtimestamp(event["created"], UTC)
        trade = self._trade(order_no, intent, paid_at=paid_at)
        return Notification(event_id=event["id"], event_type=event["type"],
                            trade=Trade(order_no=trade.order_no, state=state,
                                        amount_fen=trade.amount_fen, currency=trade.currency,
                                        channel_trade_no=trade.channel_trade_no,
                                        paid_at=trade.paid_at if state is TradeState.SUCCEEDED
                                        else None),
                            raw=event)

    def _trade(self, order_no: str, intent: dict[str, Any], *,
               paid_at: datetime | None) -> Trade:
        if intent["currency"] != "cny":
            raise ChannelError("currency_mismatch", intent["id"])
        if (intent.get("metadata") or {}).get("order_no") != order_no:
            raise ChannelError("order_mismatch", intent["id"])
        state = _TRADE_STATES.get(intent["status"], TradeState.PENDING)
        received = int(intent["amount_received"])
        if state is TradeState.SUCCEEDED and paid_at is None:  # queried with latest_charge expanded
            paid_at = datetime.fromtimestamp(intent["latest_charge"]["created"], UTC)
        return Trade(order_no=order_no, state=state,
                     amount_fen=received if state is TradeState.SUCCEEDED else None,
                     currency="CNY", channel_trade_no=intent["id"],
                     paid_at=paid_at if state is TradeState.SUCCEEDED else None)

    def _intent(self, order_no: str, channel_ref: str | None,
                expand: list[str] | None = None) -> dict[str, Any] | None:
        """The order's PaymentIntent as a plain dict, or None when Stripe has none.

        Without ``channel_ref`` (``create`` timed out before we learnt the id) we search by
        metadata; Stripe's search index can lag about a minute behind a fresh intent."""
        if channel_ref is None:
            with _calls():
                found = self._client.v1.payment_intents.search(
                    {"query": f"metadata['order_no']:'{_quoted(order_no)}'", "limit": 1,
                     "expand": expand or []})
            return found.data[0].to_dict() if found.data else None
        try:
            with _calls():
                return self._client.v1.payment_intents.retrieve(
                    channel_ref, {"expand": expand or []}).to_dict()
        except ChannelError as exc:
            if exc.code == "resource_missing":
                return None
            raise

    def _intent_id(self, order_no: str, channel_ref: str | None) -> str:
        if channel_ref is not None:
            return channel_ref
        intent = self._intent(order_no, None)
        if intent is None:
            raise ChannelError("order_not_found", order_no)
        return str(intent["id"])

    def _find_refund(self, intent_id: str, refund_no: str) -> dict[str, Any] | None:
        with _calls():
            refunds = self._client.v1.refunds.list({"payment_intent": intent_id, "limit": 100})
            for refund in refunds.auto_paging_iter():
                found = refund.to_dict()
                if (found.get("metadata") or {}).get("refund_no") == refund_no:
                    return found
        return None


def _refund_result(refund_no: str, refund: dict[str, Any]) -> RefundResult:
    # in CNY fen: refunds are only made on our own intents, which ``create`` makes in CNY
    return RefundResult(refund_no=refund_no,
                        state=_REFUND_STATES.get(refund["status"], RefundState.PENDING),
                        channel_refund_no=refund["id"], amount_fen=int(refund["amount"]))


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


@contextmanager
def _calls() -> Iterator[None]:
    """Stripe's exceptions as ours: unknown outcome -> ChannelUnavailable, else ChannelError."""
    try:
        yield
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as exc:
        raise ChannelUnavailable(str(exc.user_message or exc)) from exc
    except (stripe.CardError, stripe.InvalidRequestError) as exc:
        raise ChannelError(exc.code or "invalid_request", str(exc.user_message or "")) from exc
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:  # our keys are wrong
        raise ChannelError("authentication_failed", str(exc.user_message or "")) from exc
    except stripe.StripeError as exc:  # e.g. idempotency_error
        code = exc.code or (exc.error.type if exc.error else None) or "stripe_error"
        raise ChannelError(code, str(exc.user_message or "")) from exc

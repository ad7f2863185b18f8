"""Which billing system the portal talks to, and posting payments to it through the outbox.

``billing_system(session)`` is the one place that chooses: the HTTP adapter when
``DIANFEI_BILLING_URL`` (with its token) is set, else the embedded engine on the portal's tables.
A payment is posted (销账) eventually and exactly once: the payments service enqueues
``billing.post_payment`` in the transaction that records the payment, and
``billing.reverse_payment`` in the one that records a succeeded refund (payload and dedup keys:
``payments.service``); the handlers here read exactly those payloads. The outbox retries while the
billing system is unavailable (about two days, backing off to hourly) and leaves a refused message
dead, visible to staff. The billing system is idempotent on the order number (postings) and the
refund number (reversals), so a retry after a lost reply changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from billing_adapter.base import BillingRejected, BillingSystem, PaymentPosting
from billing_adapter.http.client import HttpBillingSystem
from billing_adapter.local.system import LocalBillingSystem
from payments.service import POST_PAYMENT_TOPIC, REVERSE_PAYMENT_TOPIC
from portal import context
from portal.extensions import db
from portal.kernel import outbox
from portal.tasks import OUTBOX_HANDLERS_KEY

# 30 s, 1, 2 ... 32 min, then hourly: 56 attempts span about two days of outage.
POSTING_MAX_ATTEMPTS = 56


def billing_system(session: Session, *, retries: int | None = None) -> BillingSystem:
    """``retries`` overrides DIANFEI_BILLING_RETRIES (the outbox passes 0: it retries itself,
    so one unreachable billing system cannot hold a dispatch round for minutes)."""
    settings = context.settings()
    if settings.billing_url and settings.billing_token:
        return HttpBillingSystem(settings.billing_url, settings.billing_token.get_secret_value(),
                                 timeout=settings.billing_timeout_seconds,
                                 retries=settings.billing_retries if retries is None else retries)
    return LocalBillingSystem(session, context.clock())


def _post(system: BillingSystem, payload: dict[str, Any]) -> None:
    system.post_payment(PaymentPosting(
        order_no=payload["order_no"], account_no=payload["account_no"],
        amount_fen=payload["amount_fen"], paid_at=datetime.fromisoformat(payload["paid_at"]),
        channel=payload["channel"], bill_periods=tuple(payload["bill_periods"])))


class PostingNotLanded(Exception):
    """A reversal overtook its posting (still waiting in the outbox): retry it later."""


def _reverse(system: BillingSystem, payload: dict[str, Any]) -> None:
    """A succeeded refund, as ``payments.service`` writes it: reverse the refunded amount (all or
    part of the order's posting) once, keyed by the refund number."""
    try:
        system.reverse_payment(payload["order_no"], f"refund {payload['refund_no']}",
                               reversal_no=payload["refund_no"], amount_fen=payload["amount_fen"])
    except BillingRejected as exc:
        if exc.code == "unknown_order":
            raise PostingNotLanded(payload["order_no"]) from exc
        raise


@dataclass(frozen=True)
class BillingHandler:
    """An outbox handler calling the billing system: ``BillingUnavailable`` (or any other
    error) is retried by the outbox; ``BillingRejected`` will not get better and goes dead."""

    call: Callable[[BillingSystem, dict[str, Any]], None]
    max_attempts: int = POSTING_MAX_ATTEMPTS

    def __call__(self, payload: dict[str, Any]) -> None:
        try:
            self.call(billing_system(db.session, retries=0), payload)
        except BillingRejected as exc:
            raise outbox.PermanentFailure(
                f"billing system refused {payload.get('order_no')}: {exc}") from exc


def init_app(app: Flask) -> None:
    handlers = app.extensions.setdefault(OUTBOX_HANDLERS_KEY, {})
    handlers[POST_PAYMENT_TOPIC] = BillingHandler(_post)
    handlers[REVERSE_PAYMENT_TOPIC] = BillingHandler(_reverse)

"""Payment and refund receipts: where notifications meet payments (``portal`` composes both;
neither package imports the other). A set-based sweep queues the receipts; their params are
read from the order or refund when the ``notify`` row is fanned out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from notifications.policy import insert_outbox, json_object
from payments.models import PaymentOrder, Refund
from payments.states import OrderStatus, RefundStatus
from portal.accounts.models import ElectricityAccount
from portal.kernel.clock import Clock
from portal.kernel.money import format_yuan


def sweep_receipts(session: Session, clock: Clock, lookback: timedelta) -> int:
    """Queue ``payment_succeeded`` and ``refund_succeeded`` for the orders and refunds that
    succeeded within ``lookback`` (one INSERT ... SELECT each, keys
    ``notify:payment_succeeded:order:<order_no>`` / ``notify:refund_succeeded:refund:<no>``).

    Derived from the payment tables instead of written on the payment notification path, which
    is kept to its minimum: a receipt waits at most one beat interval. The payer is told (or every
    customer linked to the account when the order has no customer); params are filled in at
    delivery from the order or refund."""
    now = clock.now()
    since = now - lookback
    dialect = session.get_bind().dialect.name
    event = sa.literal("payment_succeeded")
    written = insert_outbox(
        session, dialect, now, now,
        json_object(dialect, customer_id=PaymentOrder.customer_id,
                    account_id=PaymentOrder.account_id, event=event,
                    order_id=PaymentOrder.id, params=json_object(dialect)),
        sa.literal("notify:payment_succeeded:order:") + PaymentOrder.order_no,
        sa.and_(PaymentOrder.status == OrderStatus.SUCCEEDED, PaymentOrder.paid_at >= since))
    refunds = (sa.select(Refund.id, Refund.refund_no, PaymentOrder.customer_id,
                         PaymentOrder.account_id)
               .join(PaymentOrder, PaymentOrder.id == Refund.order_id)
               .where(Refund.status == RefundStatus.SUCCEEDED, Refund.finished_at >= since)
               .subquery("refunded"))
    written += insert_outbox(
        session, dialect, now, now,
        json_object(dialect, customer_id=refunds.c.customer_id, account_id=refunds.c.account_id,
                    event=sa.literal("refund_succeeded"), refund_id=refunds.c.id,
                    params=json_object(dialect)),
        sa.literal("notify:refund_succeeded:refund:") + refunds.c.refund_no, sa.true())
    return written


def receipt_params(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
    """A receipt's params from its order (``order_id``) or refund (``refund_id``)."""
    if payload.get("refund_id") is not None:
        query = (sa.select(ElectricityAccount.account_no, Refund.amount_fen,
                           PaymentOrder.order_no)
                 .join(PaymentOrder, PaymentOrder.account_id == ElectricityAccount.id)
                 .join(Refund, Refund.order_id == PaymentOrder.id)
                 .where(Refund.id == payload["refund_id"]))
    else:
        query = (sa.select(ElectricityAccount.account_no, PaymentOrder.amount_fen,
                           PaymentOrder.order_no)
                 .join(PaymentOrder, PaymentOrder.account_id == ElectricityAccount.id)
                 .where(PaymentOrder.id == payload["order_id"]))
    account_no, amount_fen, order_no = session.execute(query).one()
    return {"account_no": account_no, "amount_yuan": format_yuan(amount_fen),
            "order_no": order_no}

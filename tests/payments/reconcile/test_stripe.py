"""Stripe balance transactions: our CNY PaymentIntents' charges and refunds, fees in CNY only."""

import io
import json

import pytest

from payments.reconcile import stripe
from payments.reconcile.lines import BadStatement


def txn(kind: str, amount: int, *, fee: int = 10, currency: str = "cny",
        order_no: str | None = "DF1", refund_no: str | None = None) -> dict:
    intent = {"id": "pi_1", "metadata": {"order_no": order_no} if order_no else {}}
    return {"type": kind, "fee": fee, "currency": currency, "created": 1764720000,
            "source": {"amount": amount, "currency": currency, "status": "succeeded",
                       "payment_intent": intent,
                       "metadata": {"refund_no": refund_no} if refund_no else {}}}


def test_charges_and_refunds_and_what_is_skipped() -> None:
    data = json.dumps([txn("charge", 8000), txn("refund", 1000, fee=0, refund_no="RF1"),
                       txn("charge", 100, currency="usd"), txn("payout", 5),
                       txn("charge", 100, order_no=None)]).encode()
    pay, refund = stripe.parse(io.BytesIO(data))
    assert (pay.kind, pay.amount_fen, pay.fee_fen, pay.channel_trade_no) == (
        "payment", 8000, 10, "pi_1")
    assert (refund.kind, refund.refund_no, refund.amount_fen) == ("refund", "RF1", 1000)


def test_not_a_list_is_refused() -> None:
    with pytest.raises(BadStatement):
        list(stripe.parse(io.BytesIO(b'{"data": []}')))

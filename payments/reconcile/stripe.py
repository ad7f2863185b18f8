"""Stripe's balance transactions of one business day, as fetched (a JSON array of balance
transaction objects with ``source.payment_intent`` expanded). Amounts are already integer fen;
the magnitude comes from the charge or refund itself, ``kind`` gives the direction. Fees are
booked in the settlement currency: ``fee_fen`` is that fee when it settles in CNY, else 0.
Fees, payouts and adjustments, and sources that are not our CNY PaymentIntents, are skipped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

from payments.reconcile.lines import PAYMENT, REFUND, BadStatement, Line

KINDS = {"charge": PAYMENT, "payment": PAYMENT, "refund": REFUND, "payment_refund": REFUND}


def parse(stream: BinaryIO) -> Iterator[Line]:
    try:
        transactions = json.load(stream)
        if not isinstance(transactions, list):
            raise ValueError("not a list of balance transactions")
        return iter([line for txn in transactions if (line := _line(txn)) is not None])
    except (ValueError, KeyError, TypeError) as exc:
        raise BadStatement(f"balance transactions: {exc}") from None


def _line(txn: dict[str, Any]) -> Line | None:
    kind = KINDS.get(txn["type"])
    source = txn.get("source")
    if kind is None or not isinstance(source, dict):
        return None
    intent = source.get("payment_intent")
    if not isinstance(intent, dict) or source.get("currency") != "cny":
        return None  # not one of our PaymentIntents
    order_no = (intent.get("metadata") or {}).get("order_no")
    if not order_no:
        return None
    return Line(kind, order_no, intent["id"],
                (source.get("metadata") or {}).get("refund_no") if kind == REFUND else None,
                int(source["amount"]), abs(int(txn["fee"])) if txn["currency"] == "cny" else 0,
                datetime.fromtimestamp(txn["created"], UTC), str(source.get("status") or ""))

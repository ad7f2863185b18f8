"""What every statement parser yields: one line of a channel's statement, money in fen."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from payments.channels.base import ChannelError

PAYMENT = "payment"
REFUND = "refund"


class BadStatement(ChannelError):
    """The file is not a statement we can trust (format, totals, currency): nothing is kept."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_statement", message[:200])


class Line(NamedTuple):
    """A payment (money in) or a refund (money out; ``amount_fen`` is its magnitude).

    ``status`` is the channel's own word for the row (WeChat ``SUCCESS`` or the refund's
    退款状态; Alipay rows are finished trades, ``SUCCESS``; Stripe the source's status)."""

    kind: str
    order_no: str
    channel_trade_no: str
    refund_no: str | None
    amount_fen: int
    fee_fen: int
    occurred_at: datetime
    status: str


def signed_fen(text: str) -> int:
    """A yuan string that may carry a minus sign (refund rows, fees given back) in fen, by the
    one strict rule (``portal.kernel.money.parse_yuan``)."""
    from portal.kernel.money import parse_yuan

    if text.startswith("-"):
        return -parse_yuan(text[1:])
    return parse_yuan(text)

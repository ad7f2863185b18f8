"""An in-memory channel for the core's unit tests: it keeps what it was asked and answers what
the test scripted. The real channels are exercised against their sandbox gateways over HTTP in
their own suites and in the notify endpoint tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from payments.channels.base import (
    ChannelError,
    Checkout,
    Notification,
    OrderRequest,
    RefundRequest,
    RefundResult,
    RefundState,
    StatementFile,
    Trade,
    TradeState,
)


@dataclass
class FakeChannel:
    name: str = "wechat"
    trades: dict[str, Trade] = field(default_factory=dict)
    created: list[OrderRequest] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    refunds: list[RefundRequest] = field(default_factory=list)
    refund_queries: list[RefundRequest] = field(default_factory=list)
    fail_next: list[Exception | None] = field(default_factory=list)  # per call; None: answer
    refund_state: RefundState = RefundState.PENDING
    query_refund_state: RefundState = RefundState.SUCCEEDED
    statements: dict[date, StatementFile] = field(default_factory=dict)  # what fetch returns

    def _maybe_fail(self) -> None:
        if self.fail_next:
            exc = self.fail_next.pop(0)
            if exc is not None:
                raise exc

    def create(self, order: OrderRequest) -> Checkout:
        self._maybe_fail()
        self.created.append(order)
        return Checkout(code_url=f"weixin://wxpay/bizpayurl?pr={order.order_no}")

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        raise NotImplementedError  # pragma: no cover

    def ack(self, ok: bool) -> tuple[int, Mapping[str, str], bytes]:
        return (204, {}, b"") if ok else (500, {}, b"")  # pragma: no cover

    def query(self, order_no: str, channel_ref: str | None = None) -> Trade:
        self._maybe_fail()
        return self.trades.get(order_no, Trade(order_no, TradeState.NOT_FOUND))

    def close(self, order_no: str, channel_ref: str | None = None) -> None:
        self._maybe_fail()
        trade = self.trades.get(order_no)
        if trade is not None and trade.state == TradeState.SUCCEEDED:
            raise ChannelError("already_paid")
        self.closed.append(order_no)
        self.trades[order_no] = Trade(order_no, TradeState.CLOSED)

    def refund(self, request: RefundRequest) -> RefundResult:
        self._maybe_fail()
        self.refunds.append(request)
        return RefundResult(request.refund_no, self.refund_state, channel_refund_no="CR1")

    def query_refund(self, request: RefundRequest) -> RefundResult:
        self._maybe_fail()
        self.refund_queries.append(request)
        return RefundResult(request.refund_no, self.query_refund_state)

    def fetch_statement(self, day: date) -> StatementFile | None:
        self._maybe_fail()
        return self.statements.get(day)

    def pay(self, order_no: str, amount_fen: int, currency: str = "CNY") -> Trade:
        """The customer pays at the channel: queries now say so; returns the trade."""
        trade = Trade(order_no, TradeState.SUCCEEDED, amount_fen, currency,
                      channel_trade_no=f"T{order_no}")
        self.trades[order_no] = trade
        return trade

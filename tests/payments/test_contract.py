"""One contract for every payment channel, each against its sandbox gateway over real HTTP on
loopback, through the ``PaymentChannel`` interface only: what ``payments.service`` and the janitor
rely on holds the same way for WeChat Pay, Alipay and Stripe."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from payments.channels.alipay import AlipayChannel
from payments.channels.base import (
    ChannelError,
    Checkout,
    InvalidNotification,
    OrderRequest,
    PaymentChannel,
    RefundRequest,
    RefundState,
    Scene,
    TradeState,
)
from payments.channels.stripe import StripeChannel
from payments.channels.wechat import WechatPayChannel
from payments.sandbox import alipay as alipay_sandbox
from payments.sandbox import stripe as stripe_sandbox
from payments.sandbox import wechat as wechat_sandbox
from portal.kernel.clock import FrozenClock

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
AMOUNT = 12_345
Headers = dict[str, str]


@dataclass
class Rig:
    """A channel wired to its sandbox, and what the payer (or the channel) does there."""

    channel: PaymentChannel
    open: Callable[[OrderRequest], Checkout]          # create + the payer reaches the pay page
    pay: Callable[[OrderRequest, Checkout], None]     # the payer confirms
    notification: Callable[[OrderRequest, Checkout], tuple[Headers, bytes]]
    tamper: Callable[[bytes], bytes]                  # change the amount (or the ciphertext)


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {"wechat": wechat_sandbox.generate_keys(), "alipay": alipay_sandbox.generate_keys(),
            "stripe": stripe_sandbox.generate_keys()}


def _wechat(keys: wechat_sandbox.WechatSandboxKeys, serve: Callable[..., str]) -> Rig:
    clock = FrozenClock(NOW)
    built: dict[str, wechat_sandbox.WechatSandbox] = {}

    def build(base: str) -> wechat_sandbox.WechatSandbox:
        built["g"] = wechat_sandbox.make_gateway(keys, base, clock=clock)
        return built["g"]

    url = serve(build)
    channel = WechatPayChannel(wechat_sandbox.channel_settings(keys, url), clock=clock)

    def note(order: OrderRequest, checkout: Checkout) -> tuple[Headers, bytes]:
        return wechat_sandbox.signed_notification(
            keys, out_trade_no=order.order_no, amount_fen=order.amount_fen,
            timestamp=int(clock.now().timestamp()))

    def tamper(body: bytes) -> bytes:  # the amount is inside the AES-GCM ciphertext
        marker = b'"ciphertext": "' if b'"ciphertext": "' in body else b'"ciphertext":"'
        at = body.index(marker) + len(marker)
        flipped = b"A" if body[at:at + 1] != b"A" else b"B"
        return body[:at] + flipped + body[at + 1:]

    def pay(order: OrderRequest, checkout: Checkout) -> None:
        built["g"].pay(order.order_no)

    return Rig(channel, channel.create, pay, note, tamper)


def _alipay(keys: alipay_sandbox.AlipaySandboxKeys, serve: Callable[..., str]) -> Rig:
    clock = FrozenClock(NOW)
    url = serve(lambda base: alipay_sandbox.make_gateway(keys, base, clock))
    channel = AlipayChannel(alipay_sandbox.channel_settings(keys, f"{url}/gateway.do"), clock)

    def open_page(order: OrderRequest) -> Checkout:
        checkout = channel.create(order)
        assert checkout.redirect_url is not None
        assert requests.get(checkout.redirect_url, allow_redirects=False, timeout=5).status_code \
            == 302
        return checkout

    def pay(order: OrderRequest, checkout: Checkout) -> None:
        assert requests.post(f"{url}/sandbox/pay/{order.order_no}", timeout=5).status_code == 200

    def note(order: OrderRequest, checkout: Checkout) -> tuple[Headers, bytes]:
        return alipay_sandbox.signed_notification(
            keys, out_trade_no=order.order_no, amount_fen=order.amount_fen,
            notify_time=clock.now())

    return Rig(channel, open_page, pay, note,
               lambda body: body.replace(b"total_amount=123.45", b"total_amount=1.23"))


def _stripe(keys: stripe_sandbox.StripeSandboxKeys, serve: Callable[..., str]) -> Rig:
    built: dict[str, stripe_sandbox.StripeGateway] = {}

    def build(base: str) -> stripe_sandbox.StripeGateway:
        built["g"] = stripe_sandbox.make_gateway(keys, base)
        return built["g"]

    url = serve(build)
    channel = StripeChannel(stripe_sandbox.channel_settings(keys, url))

    def pay(order: OrderRequest, checkout: Checkout) -> None:
        assert checkout.channel_ref is not None
        built["g"].confirm(checkout.channel_ref)

    def note(order: OrderRequest, checkout: Checkout) -> tuple[Headers, bytes]:
        return stripe_sandbox.signed_event(
            keys, event_type="payment_intent.succeeded", order_no=order.order_no,
            amount_fen=order.amount_fen, pi_id=checkout.channel_ref)

    return Rig(channel, channel.create, pay, note,
               lambda body: body.replace(b'"amount": 12345', b'"amount": 1'))


@pytest.fixture(params=["wechat", "alipay", "stripe"])
def rig(request: pytest.FixtureRequest, keys: dict[str, Any],
        wsgi_server: Callable[..., str]) -> Rig:
    name: str = request.param
    return {"wechat": _wechat, "alipay": _alipay, "stripe": _stripe}[name](keys[name], wsgi_server)


def order(no: str = "D20261203000001", amount_fen: int = AMOUNT) -> OrderRequest:
    return OrderRequest(order_no=no, amount_fen=amount_fen, description="电费 2026-11",
                        scene=Scene.DESKTOP, notify_url="http://127.0.0.1:9/notify",
                        return_url="http://127.0.0.1:9/return",
                        expires_at=NOW + timedelta(minutes=30))


def test_a_paid_order_reads_succeeded_with_its_amount(rig: Rig) -> None:
    assert isinstance(rig.channel, PaymentChannel)
    request = order()
    checkout = rig.open(request)
    before = rig.channel.query(request.order_no, checkout.channel_ref)
    assert before.state is TradeState.PENDING and before.paid_at is None
    rig.pay(request, checkout)
    after = rig.channel.query(request.order_no, checkout.channel_ref)
    assert (after.state, after.amount_fen, after.currency) == (TradeState.SUCCEEDED, AMOUNT, "CNY")
    assert after.paid_at is not None and after.channel_trade_no


def test_an_order_the_channel_never_saw_reads_not_found(rig: Rig) -> None:
    assert rig.channel.query("D20261203999999").state is TradeState.NOT_FOUND


def test_closing_unpaid_closed_and_unknown_orders_is_fine(rig: Rig) -> None:
    request = order()
    checkout = rig.open(request)
    rig.channel.close(request.order_no, checkout.channel_ref)
    assert rig.channel.query(request.order_no, checkout.channel_ref).state is TradeState.CLOSED
    rig.channel.close(request.order_no, checkout.channel_ref)
    rig.channel.close("D20261203999999")  # never created at the channel


def test_closing_a_paid_order_says_already_paid(rig: Rig) -> None:
    request = order()
    checkout = rig.open(request)
    rig.pay(request, checkout)
    with pytest.raises(ChannelError) as err:
        rig.channel.close(request.order_no, checkout.channel_ref)
    assert err.value.code == "already_paid"
    assert rig.channel.query(request.order_no, checkout.channel_ref).state is TradeState.SUCCEEDED


def test_a_refund_retried_with_its_number_moves_money_once(rig: Rig) -> None:
    request = order()
    checkout = rig.open(request)
    rig.pay(request, checkout)

    def refund(no: str, amount_fen: int) -> RefundRequest:
        return RefundRequest(order_no=request.order_no, refund_no=no, amount_fen=amount_fen,
                             order_amount_fen=AMOUNT, reason="多缴",
                             channel_ref=checkout.channel_ref)

    first = rig.channel.refund(refund("R1", 10_000))
    again = rig.channel.refund(refund("R1", 10_000))  # a retry after, say, a timeout
    assert first.state is not RefundState.FAILED and again.state is not RefundState.FAILED
    queried = rig.channel.query_refund(refund("R1", 10_000))
    assert (queried.state, queried.amount_fen) == (RefundState.SUCCEEDED, 10_000)
    # Had the retry refunded again, 20000 > 12345 would already have failed; the rest still fits
    # exactly once.
    rig.channel.refund(refund("R2", AMOUNT - 10_000))
    with pytest.raises(ChannelError):
        rig.channel.refund(refund("R3", 1))


def test_notifications_verify_and_tampering_is_refused(rig: Rig) -> None:
    request = order()
    checkout = rig.open(request)
    headers, body = rig.notification(request, checkout)
    note = rig.channel.parse_notification(headers, body)
    assert note.event_id and note.trade is not None
    assert (note.trade.order_no, note.trade.state, note.trade.amount_fen) == (
        request.order_no, TradeState.SUCCEEDED, AMOUNT)
    tampered = rig.tamper(body)
    assert tampered != body
    with pytest.raises(InvalidNotification) as err:
        rig.channel.parse_notification(headers, tampered)
    assert 400 <= err.value.status < 600
    assert 200 <= rig.channel.ack(True)[0] < 300
    assert not 200 <= rig.channel.ack(False)[0] < 300

"""StripeChannel against the Stripe sandbox over real HTTP on loopback."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from werkzeug.wrappers import Request, Response

from payments.channels.base import (
    ChannelError,
    ChannelUnavailable,
    InvalidNotification,
    OrderRequest,
    PaymentChannel,
    RefundRequest,
    RefundState,
    Scene,
    TradeState,
)
from payments.channels.stripe import StripeChannel, StripeSettings
from payments.reconcile import stripe as reconcile_stripe
from payments.reconcile.lines import Line
from payments.sandbox.stripe import (
    StripeGateway,
    StripeSandboxKeys,
    channel_settings,
    generate_keys,
    make_gateway,
    signature_header,
    signed_event,
)


@dataclass
class Rig:
    keys: StripeSandboxKeys
    gateway: StripeGateway
    url: str
    channel: StripeChannel
    webhooks: list[tuple[dict[str, str], bytes]]

    def pay(self, channel_ref: str, action: str = "confirm") -> requests.Response:
        """What the customer's browser does on the sandbox payment page."""
        secret = self.gateway.objects[channel_ref]["client_secret"]
        return requests.post(f"{self.url}/pay/{channel_ref}", timeout=10, allow_redirects=False,
                             data={"action": action, "client_secret": secret,
                                   "return_url": "https://portal.example/pay/return"})


@pytest.fixture
def rig(wsgi_server: Callable[[Callable[[str], Any]], str]) -> Rig:
    webhooks: list[tuple[dict[str, str], bytes]] = []

    @Request.application
    def receiver(request: Request) -> Response:
        webhooks.append((dict(request.headers), request.get_data()))
        return Response('{"received": true}', mimetype="application/json")

    hook_url = wsgi_server(lambda base: receiver)
    keys = generate_keys()
    holder: dict[str, StripeGateway] = {}

    def build(base: str) -> StripeGateway:
        holder["gateway"] = make_gateway(keys, base, webhook_url=f"{hook_url}/notify/stripe")
        return holder["gateway"]

    url = wsgi_server(build)
    return Rig(keys, holder["gateway"], url, StripeChannel(channel_settings(keys, url)), webhooks)


def order(order_no: str = "D20261203000001", amount_fen: int = 12_345) -> OrderRequest:
    return OrderRequest(order_no=order_no, amount_fen=amount_fen, description="电费 2026-11",
                        scene=Scene.DESKTOP, notify_url="https://portal.example/notify/stripe",
                        return_url="https://portal.example/pay/return",
                        expires_at=datetime(2026, 12, 3, 3, tzinfo=UTC))


def refund_request(rig_order: OrderRequest, channel_ref: str | None, refund_no: str = "R1",
                   amount_fen: int = 2_000) -> RefundRequest:
    return RefundRequest(order_no=rig_order.order_no, refund_no=refund_no,
                         amount_fen=amount_fen, order_amount_fen=rig_order.amount_fen,
                         reason="double payment", channel_ref=channel_ref)


def test_is_a_payment_channel(rig: Rig) -> None:
    assert isinstance(rig.channel, PaymentChannel)
    assert rig.channel.name == "stripe"


def test_create_makes_one_cny_intent_per_order(rig: Rig) -> None:
    checkout = rig.channel.create(order())
    again = rig.channel.create(order())  # a retry after a timeout

    assert checkout.channel_ref is not None and checkout.channel_ref.startswith("pi_")
    assert checkout.client_secret is not None
    assert checkout.client_secret.startswith(f"{checkout.channel_ref}_secret_")
    assert again == checkout
    intents = [o for o in rig.gateway.objects.values() if o["object"] == "payment_intent"]
    assert len(intents) == 1
    assert intents[0]["amount"] == 12_345
    assert intents[0]["currency"] == "cny"
    assert intents[0]["metadata"] == {"order_no": "D20261203000001"}


def test_create_other_order_other_intent_and_refuses_other_currencies(rig: Rig) -> None:
    first = rig.channel.create(order("D1"))
    second = rig.channel.create(order("D2"))
    assert first.channel_ref != second.channel_ref
    with pytest.raises(ChannelError) as caught:
        rig.channel.create(OrderRequest(**{**order("D3").__dict__, "currency": "USD"}))
    assert caught.value.code == "unsupported_currency"
    with pytest.raises(ChannelError) as changed:  # same order number, other amount: a bug of ours
        rig.channel.create(order("D1", 1))
    assert changed.value.code == "idempotency_error"


def test_query_follows_the_intent(rig: Rig) -> None:
    checkout = rig.channel.create(order())
    ref = checkout.channel_ref
    pending = rig.channel.query("D20261203000001", ref)
    assert pending.state is TradeState.PENDING
    assert pending.amount_fen is None

    assert rig.pay(ref or "").status_code == 303
    paid = rig.channel.query("D20261203000001", ref)
    assert paid.state is TradeState.SUCCEEDED
    assert paid.amount_fen == 12_345
    assert paid.channel_trade_no == ref
    assert paid.paid_at is not None and paid.paid_at.tzinfo is not None


def test_query_without_the_intent_id_searches_by_order_no(rig: Rig) -> None:
    ref = rig.channel.create(order()).channel_ref
    rig.pay(ref or "")
    found = rig.channel.query("D20261203000001")
    assert found.state is TradeState.SUCCEEDED and found.channel_trade_no == ref
    assert rig.channel.query("D-never-created").state is TradeState.NOT_FOUND
    assert rig.channel.query("D-never-created", "pi_unknown").state is TradeState.NOT_FOUND


def test_query_refuses_an_intent_of_another_order(rig: Rig) -> None:
    ref = rig.channel.create(order("D1")).channel_ref
    with pytest.raises(ChannelError) as caught:
        rig.channel.query("D2", ref)
    assert caught.value.code == "order_mismatch"


def test_close_cancels_and_is_repeatable(rig: Rig) -> None:
    ref = rig.channel.create(order()).channel_ref
    rig.channel.close("D20261203000001", ref)
    assert rig.channel.query("D20261203000001", ref).state is TradeState.CLOSED
    rig.channel.close("D20261203000001", ref)  # already closed: fine
    rig.channel.close("D-unknown")  # never created: fine
    assert rig.pay(ref or "").status_code == 400  # the customer can no longer pay it


def test_close_after_success_says_already_paid(rig: Rig) -> None:
    ref = rig.channel.create(order()).channel_ref
    rig.pay(ref or "")
    with pytest.raises(ChannelError) as caught:
        rig.channel.close("D20261203000001", ref)
    assert caught.value.code == "already_paid"
    assert rig.channel.query("D20261203000001", ref).state is TradeState.SUCCEEDED


def test_close_racing_a_payment_says_already_paid(rig: Rig,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ref = rig.channel.create(order()).channel_ref
    stale = rig.channel._intent("D20261203000001", ref)
    rig.pay(ref or "")  # paid between our read and our cancel
    reads = iter([stale])
    real = rig.channel._intent
    monkeypatch.setattr(rig.channel, "_intent",
                        lambda *a, **k: next(reads, None) or real(*a, **k))
    with pytest.raises(ChannelError) as caught:
        rig.channel.close("D20261203000001", ref)
    assert caught.value.code == "already_paid"


def test_refund_with_the_same_refund_no_refunds_once(rig: Rig) -> None:
    the_order = order()
    ref = rig.channel.create(the_order).channel_ref
    rig.pay(ref or "")

    first = rig.channel.refund(refund_request(the_order, ref))
    again = rig.channel.refund(refund_request(the_order, ref))
    rig.gateway._idempotency.clear()  # a retry after Stripe forgot the key (24 h)
    later = rig.channel.refund(refund_request(the_order, None))

    assert first.state is RefundState.SUCCEEDED
    assert first.amount_fen == 2_000 and first.refund_no == "R1"
    assert again == first == later
    refunds = [o for o in rig.gateway.objects.values() if o["object"] == "refund"]
    assert [r["amount"] for r in refunds] == [2_000]
    assert refunds[0]["metadata"]["refund_no"] == "R1"
    assert rig.channel.query_refund(refund_request(the_order, ref)) == first


def test_second_refund_and_refund_limits(rig: Rig) -> None:
    the_order = order(amount_fen=5_000)
    ref = rig.channel.create(the_order).channel_ref
    with pytest.raises(ChannelError) as unpaid:
        rig.channel.refund(refund_request(the_order, ref, "R0"))
    assert unpaid.value.code == "payment_intent_unexpected_state"
    rig.pay(ref or "")
    rig.channel.refund(refund_request(the_order, ref, "R1", 3_000))
    with pytest.raises(ChannelError) as too_much:
        rig.channel.refund(refund_request(the_order, ref, "R2", 3_000))
    assert too_much.value.code == "amount_too_large"
    assert rig.channel.refund(refund_request(the_order, ref, "R3", 2_000)).amount_fen == 2_000


def test_query_refund_unknown_and_refund_of_unknown_order(rig: Rig) -> None:
    the_order = order()
    ref = rig.channel.create(the_order).channel_ref
    with pytest.raises(ChannelError) as unknown:
        rig.channel.query_refund(refund_request(the_order, ref, "R-none"))
    assert unknown.value.code == "refund_not_found"
    with pytest.raises(ChannelError) as no_order:
        rig.channel.refund(refund_request(order("D-unknown"), None))
    assert no_order.value.code == "order_not_found"


def test_statement_lists_the_days_payments_and_refunds(rig: Rig) -> None:
    zone = ZoneInfo("Asia/Shanghai")
    day = datetime(2026, 12, 2, 23, 30, tzinfo=zone)
    at = [day]
    rig.gateway.now = lambda: at[0].timestamp()
    paid = order("D1", 10_000)
    ref = rig.channel.create(paid).channel_ref  # created 23:30
    at[0] = day + timedelta(minutes=10)
    rig.pay(ref or "")  # charged 23:40 on 2 Dec
    at[0] = day + timedelta(minutes=40)
    rig.channel.refund(refund_request(paid, ref, "R1", 4_000))  # refunded 00:10 on 3 Dec

    on_2nd = statement(rig, date(2026, 12, 2))
    on_3rd = statement(rig, date(2026, 12, 3))

    assert [(r.kind, r.order_no, r.channel_trade_no, r.amount_fen, r.fee_fen, r.refund_no)
            for r in on_2nd] == [("payment", "D1", ref, 10_000, 300, None)]
    assert on_2nd[0].occurred_at == (day + timedelta(minutes=10)).astimezone(UTC)
    assert [(r.kind, r.order_no, r.amount_fen, r.fee_fen, r.refund_no) for r in on_3rd] == [
        ("refund", "D1", 4_000, 0, "R1")]
    assert rig.channel.fetch_statement(date(2026, 12, 4)) is None


def statement(rig: Rig, day: date) -> list[Line]:
    """The day's balance transactions as fetched, read by the reconciliation parser."""
    fetched = rig.channel.fetch_statement(day)
    assert fetched is not None and fetched.suffix == ".json"
    return list(reconcile_stripe.parse(io.BytesIO(fetched.content)))


def test_statement_pages_through_many_transactions(rig: Rig) -> None:
    for n in range(105):
        ref = rig.channel.create(order(f"D{n:04}", 100 + n)).channel_ref
        rig.gateway.confirm(ref or "")
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    rows = statement(rig, today)
    assert sorted(r.amount_fen for r in rows) == list(range(100, 205))


def test_network_failure_is_unavailable(rig: Rig) -> None:
    dead = StripeChannel(channel_settings(rig.keys, "http://127.0.0.1:9"))
    with pytest.raises(ChannelUnavailable):
        dead.create(order())
    with pytest.raises(ChannelUnavailable):
        dead.query("D1", "pi_1")


def test_wrong_api_key_is_a_channel_error(rig: Rig) -> None:
    other = StripeChannel(channel_settings(generate_keys(), rig.url))
    with pytest.raises(ChannelError) as caught:
        other.create(order())
    assert not isinstance(caught.value, ChannelUnavailable)
    assert caught.value.code == "authentication_failed"


def test_server_error_is_unavailable(wsgi_server: Callable[[Callable[[str], Any]], str]) -> None:
    @Request.application
    def broken(request: Request) -> Response:
        return Response('{"error": {"type": "api_error", "message": "boom"}}', status=500,
                        mimetype="application/json")

    channel = StripeChannel(channel_settings(generate_keys(), wsgi_server(lambda base: broken)))
    with pytest.raises(ChannelUnavailable):
        channel.query("D1", "pi_1")


# -- webhooks ---------------------------------------------------------------------------------


def test_confirmed_payment_webhook_is_verified_and_mapped(rig: Rig) -> None:
    ref = rig.channel.create(order()).channel_ref
    rig.pay(ref or "")

    [(headers, body)] = rig.webhooks
    note = rig.channel.parse_notification(headers, body)

    assert note.event_type == "payment_intent.succeeded"
    assert note.event_id == rig.gateway.events[-1]["id"]
    assert note.trade is not None
    assert note.trade.order_no == "D20261203000001"
    assert note.trade.state is TradeState.SUCCEEDED
    assert note.trade.amount_fen == 12_345
    assert note.trade.channel_trade_no == ref
    assert note.trade.paid_at is not None


def test_failed_and_canceled_webhooks(rig: Rig) -> None:
    declined = rig.channel.create(order("D1")).channel_ref
    rig.pay(declined or "", "fail")
    dropped = rig.channel.create(order("D2")).channel_ref
    rig.channel.close("D2", dropped)

    states = [rig.channel.parse_notification(h, b).trade for h, b in rig.webhooks]
    assert [(t.order_no, t.state, t.amount_fen) for t in states if t] == [
        ("D1", TradeState.FAILED, None), ("D2", TradeState.CLOSED, None)]


def test_other_verified_events_carry_no_trade(rig: Rig) -> None:
    headers, body = signed_event(rig.keys, event_type="charge.refunded", order_no="D1",
                                 amount_fen=100)
    note = rig.channel.parse_notification(headers, body)
    assert note.trade is None and note.event_type == "charge.refunded"
    assert note.raw["id"] == note.event_id


def test_helper_event_is_accepted(rig: Rig) -> None:
    headers, body = signed_event(rig.keys, event_type="payment_intent.succeeded",
                                 order_no="D1", amount_fen=500, event_id="evt_1")
    note = rig.channel.parse_notification({k.lower(): v for k, v in headers.items()}, body)
    assert note.event_id == "evt_1"
    assert note.trade is not None and note.trade.amount_fen == 500


def _tampered(keys: StripeSandboxKeys) -> tuple[dict[str, str], bytes]:
    headers, body = signed_event(keys, event_type="payment_intent.succeeded", order_no="D1",
                                 amount_fen=100)
    return headers, body.replace(b'"amount_received": 100', b'"amount_received": 999')


def _forged(keys: StripeSandboxKeys) -> tuple[dict[str, str], bytes]:
    headers, body = signed_event(keys, event_type="payment_intent.succeeded", order_no="D1",
                                 amount_fen=100)
    t = headers["Stripe-Signature"].split(",")[0]
    return {**headers, "Stripe-Signature": f"{t},v1={'0' * 64}"}, body


def _resigned(keys: StripeSandboxKeys, change: Callable[[dict[str, Any]], Any]
              ) -> tuple[dict[str, str], bytes]:
    _, body = signed_event(keys, event_type="payment_intent.succeeded", order_no="D1",
                           amount_fen=100)
    event = json.loads(body)
    change(event)
    raw = json.dumps(event).encode()
    return {"Stripe-Signature": signature_header(keys.webhook_secret, raw)}, raw


def _raw(body: bytes) -> Callable[[StripeSandboxKeys], tuple[dict[str, str], bytes]]:
    return lambda keys: ({"Stripe-Signature": signature_header(keys.webhook_secret, body)}, body)


REJECTED: dict[str, Callable[[StripeSandboxKeys], tuple[dict[str, str], bytes]]] = {
    "forged signature": _forged,
    "tampered body": _tampered,
    "wrong secret": lambda keys: signed_event(keys, event_type="payment_intent.succeeded",
                                              order_no="D1", amount_fen=100,
                                              secret="whsec_not_ours"),
    "stale timestamp": lambda keys: signed_event(keys, event_type="payment_intent.succeeded",
                                                 order_no="D1", amount_fen=100,
                                                 timestamp=int(time.time()) - 301),
    "no signature": lambda keys: ({}, signed_event(keys, event_type="payment_intent.succeeded",
                                                   order_no="D1", amount_fen=100)[1]),
    "signature without timestamp": lambda keys: ({"Stripe-Signature": "v1=abc"}, b"{}"),
    "wrong currency": lambda keys: signed_event(keys, event_type="payment_intent.succeeded",
                                                order_no="D1", amount_fen=100, currency="usd"),
    "missing order_no": lambda keys: signed_event(keys, event_type="payment_intent.succeeded",
                                                  order_no=None, amount_fen=100),
    "live event for a test key": lambda keys: signed_event(
        keys, event_type="payment_intent.succeeded", order_no="D1", amount_fen=100,
        livemode=True),
    "connected account": lambda keys: _resigned(keys, lambda e: e.update(account="acct_1")),
    "not json": _raw(b"not json"),
    "not utf-8": _raw(b"\xff\xfe"),
    "not an event": _raw(b'{"object": "charge", "id": "ch_1"}'),
    "no data": lambda keys: _resigned(keys, lambda e: e.pop("data")),
    "not a payment intent": lambda keys: _resigned(
        keys, lambda e: e["data"]["object"].update(object="charge")),
    "amount as text": lambda keys: _resigned(
        keys, lambda e: e["data"]["object"].update(amount_received="100")),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_unverifiable_webhooks_are_rejected(rig: Rig, case: str) -> None:
    headers, body = REJECTED[case](rig.keys)
    with pytest.raises(InvalidNotification) as caught:
        rig.channel.parse_notification(headers, body)
    assert caught.value.status == 400


def test_ack_answers_stripe_with_json() -> None:
    keys = generate_keys()
    channel = StripeChannel(channel_settings(keys, "http://127.0.0.1:9"))
    status, headers, body = channel.ack(True)
    assert (status, json.loads(body)) == (200, {"received": True})
    assert headers["Content-Type"] == "application/json"
    assert channel.ack(False)[0] == 400


def test_settings_refuse_keys_of_the_wrong_kind() -> None:
    keys = generate_keys()
    with pytest.raises(ValueError, match="secret_key"):
        StripeSettings(secret_key=keys.publishable_key, publishable_key=keys.publishable_key,
                       webhook_secret=keys.webhook_secret)
    live = StripeSettings(secret_key="sk_live_x", publishable_key="pk_live_x",
                          webhook_secret="whsec_x")
    assert live.livemode and live.js_url == "https://js.stripe.com/v3/"
    assert live.api_base == "https://api.stripe.com"


def _raw_intent(rig: Rig, **form: str) -> str:
    """An intent made behind our back (dashboard, another integration) on the same account."""
    reply = requests.post(f"{rig.url}/v1/payment_intents", data=form, timeout=10,
                          headers={"Authorization": f"Bearer {rig.keys.secret_key}"})
    return str(reply.json()["id"])


def test_foreign_intents_are_not_ours(rig: Rig) -> None:
    dollars = _raw_intent(rig, amount="500", currency="usd", **{"metadata[order_no]": "D9"})
    unmarked = _raw_intent(rig, amount="700", currency="cny")
    ours = rig.channel.create(order("D1", 900)).channel_ref or ""
    for pi_id in (dollars, unmarked, ours):
        rig.gateway.confirm(pi_id)
    rig.gateway._book("payout", -800, 0, "po_1", int(time.time()))

    with pytest.raises(ChannelError) as caught:
        rig.channel.query("D9", dollars)
    assert caught.value.code == "currency_mismatch"
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    assert [(r.order_no, r.amount_fen) for r in statement(rig, today)] == [
        ("D1", 900)]


def test_close_racing_another_close_is_fine(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = rig.channel.create(order()).channel_ref
    stale = rig.channel._intent("D20261203000001", ref)
    rig.channel.close("D20261203000001", ref)  # someone else closed it meanwhile
    reads = iter([stale])
    real = rig.channel._intent
    monkeypatch.setattr(rig.channel, "_intent",
                        lambda *a, **k: next(reads, None) or real(*a, **k))
    rig.channel.close("D20261203000001", ref)
    assert rig.channel.query("D20261203000001", ref).state is TradeState.CLOSED

"""The Stripe sandbox speaks Stripe's wire format and walks a customer through the payment page."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import stripe
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Request, Response

from payments.channels.base import OrderRequest, Scene, TradeState
from payments.channels.stripe import StripeChannel
from payments.sandbox.stripe import (
    STRIPE_JS,
    StripeGateway,
    StripeSandboxKeys,
    _decode,
    channel_settings,
    generate_keys,
    make_gateway,
)

Serve = Callable[[Callable[[str], Any]], str]
RETURN_URL = "https://portal.example/pay/return/D1?x=1"
PAY_JS = Path(__file__).resolve().parents[3] / "portal" / "static" / "js" / "stripe-pay.js"


def order(order_no: str = "D1", amount_fen: int = 12_345) -> OrderRequest:
    return OrderRequest(order_no=order_no, amount_fen=amount_fen, description="电费 <11月>",
                        scene=Scene.DESKTOP, notify_url="https://portal.example/notify/stripe",
                        return_url=RETURN_URL, expires_at=datetime(2026, 12, 3, 3, tzinfo=UTC))


@pytest.fixture
def hooks(wsgi_server: Serve) -> tuple[str, list[tuple[dict[str, str], bytes]]]:
    received: list[tuple[dict[str, str], bytes]] = []

    @Request.application
    def receiver(request: Request) -> Response:
        received.append((dict(request.headers), request.get_data()))
        return Response("{}", mimetype="application/json")

    return wsgi_server(lambda base: receiver) + "/notify/stripe", received


def serve(wsgi_server: Serve, keys: StripeSandboxKeys, webhook_url: str | None
          ) -> tuple[str, StripeGateway]:
    made: list[StripeGateway] = []
    url = wsgi_server(lambda base: made.append(make_gateway(keys, base, webhook_url))
                      or made[0])
    return url, made[0]


def auth(keys: StripeSandboxKeys) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys.secret_key}"}


def test_generated_keys_are_distinct_test_keys() -> None:
    one, two = generate_keys(), generate_keys()
    assert one.secret_key.startswith("sk_test_") and one.publishable_key.startswith("pk_test_")
    assert one.webhook_secret.startswith("whsec_")
    assert one != two


def test_api_needs_our_secret_key(wsgi_server: Serve) -> None:
    keys = generate_keys()
    url, _ = serve(wsgi_server, keys, None)
    reply = requests.get(f"{url}/v1/payment_intents/pi_1", timeout=10,
                         headers={"Authorization": f"Bearer {keys.publishable_key}"})
    assert reply.status_code == 401
    missing = requests.get(f"{url}/v1/payment_intents/pi_1", headers=auth(keys), timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "resource_missing"
    unknown = requests.get(f"{url}/v1/charges", headers=auth(keys), timeout=10)
    assert unknown.status_code == 404 and "error" in unknown.json()


def test_idempotency_key_replays_the_first_answer(wsgi_server: Serve) -> None:
    keys = generate_keys()
    url, gateway = serve(wsgi_server, keys, None)
    form = {"amount": "100", "currency": "cny", "metadata[order_no]": "D1"}
    headers = {**auth(keys), "Idempotency-Key": "k1"}
    first = requests.post(f"{url}/v1/payment_intents", data=form, headers=headers, timeout=10)
    again = requests.post(f"{url}/v1/payment_intents", data=form, headers=headers, timeout=10)
    other = requests.post(f"{url}/v1/payment_intents", data={**form, "amount": "200"},
                          headers=headers, timeout=10)
    assert first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"
    assert len(gateway.objects) == 1
    bad = requests.post(f"{url}/v1/payment_intents", data={"amount": "-1", "currency": "cny"},
                        headers=auth(keys), timeout=10)
    assert bad.json()["error"]["code"] == "parameter_invalid_integer"
    no_currency = requests.post(f"{url}/v1/payment_intents", data={"amount": "1"},
                                headers=auth(keys), timeout=10)
    assert no_currency.json()["error"]["param"] == "currency"
    search = requests.get(f"{url}/v1/payment_intents/search", params={"query": "amount>1"},
                          headers=auth(keys), timeout=10)
    assert search.status_code == 400


def test_form_decoding_follows_stripes_brackets() -> None:
    assert _decode([("metadata[order_no]", "D1"), ("expand[0]", "a.b"), ("expand[1]", "c"),
                    ("created[gte]", "5"), ("tags[]", "x"), ("tags[]", "y"),
                    ("amount", "3")]) == {
        "metadata": {"order_no": "D1"}, "expand": ["a.b", "c"], "created": {"gte": "5"},
        "tags": ["x", "y"], "amount": "3"}


def test_serves_a_stripe_js_look_alike(wsgi_server: Serve) -> None:
    url, _ = serve(wsgi_server, generate_keys(), None)
    reply = requests.get(f"{url}/v3/", timeout=10)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/javascript")
    assert "window.Stripe" in reply.text and "confirmPayment" in reply.text


def _pay(url: str, gateway: StripeGateway, pi_id: str, action: str,
         return_url: str = RETURN_URL) -> requests.Response:
    secret = gateway.objects[pi_id]["client_secret"]
    page = requests.get(f"{url}/pay/{pi_id}", timeout=10,
                        params={"client_secret": secret, "return_url": return_url})
    assert page.status_code == 200
    return requests.post(f"{url}/pay/{pi_id}", timeout=10, allow_redirects=False,
                         data={"action": action, "client_secret": secret,
                               "return_url": return_url})


def test_payment_page_shows_the_order_and_confirm_sends_a_signed_event(
        wsgi_server: Serve, hooks: tuple[str, list[tuple[dict[str, str], bytes]]]) -> None:
    keys = generate_keys()
    url, gateway = serve(wsgi_server, keys, hooks[0])
    checkout = StripeChannel(channel_settings(keys, url)).create(order())
    pi_id = checkout.channel_ref or ""

    page = requests.get(f"{url}/pay/{pi_id}", timeout=10, params={
        "client_secret": checkout.client_secret, "return_url": RETURN_URL})
    assert "123.45" in page.text and "D1" in page.text and "&lt;11月&gt;" in page.text
    done = _pay(url, gateway, pi_id, "confirm")

    assert done.status_code == 303
    target = urlsplit(done.headers["Location"])
    assert target._replace(query="").geturl() == "https://portal.example/pay/return/D1"
    assert parse_qs(target.query) == {"x": ["1"], "payment_intent": [pi_id],
                                      "payment_intent_client_secret": [checkout.client_secret],
                                      "redirect_status": ["succeeded"]}
    [(headers, body)] = hooks[1]
    event = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], keys.webhook_secret)
    assert event.type == "payment_intent.succeeded"
    assert event.data.object.amount_received == 12_345
    assert gateway.deliveries == [(event.id, 200)]


def test_fail_and_abandon(wsgi_server: Serve,
                          hooks: tuple[str, list[tuple[dict[str, str], bytes]]]) -> None:
    keys = generate_keys()
    url, gateway = serve(wsgi_server, keys, hooks[0])
    channel = StripeChannel(channel_settings(keys, url))
    declined = channel.create(order("D1")).channel_ref or ""
    left = channel.create(order("D2")).channel_ref or ""

    failed = _pay(url, gateway, declined, "fail")
    abandoned = _pay(url, gateway, left, "abandon")

    assert "redirect_status=failed" in failed.headers["Location"]
    assert "redirect_status=requires_payment_method" in abandoned.headers["Location"]
    assert [e["type"] for e in gateway.events] == ["payment_intent.payment_failed"]
    assert len(hooks[1]) == 1
    assert channel.query("D1", declined).state is TradeState.PENDING  # may try another card
    assert channel.query("D2", left).state is TradeState.PENDING
    assert _pay(url, gateway, declined, "confirm").status_code == 303
    assert channel.query("D1", declined).state is TradeState.SUCCEEDED
    assert _pay(url, gateway, declined, "fail").status_code == 400


def test_payment_page_refuses_bad_requests(wsgi_server: Serve) -> None:
    keys = generate_keys()
    url, gateway = serve(wsgi_server, keys, None)
    pi_id = StripeChannel(channel_settings(keys, url)).create(order()).channel_ref or ""
    wrong_secret = requests.get(f"{url}/pay/{pi_id}", timeout=10,
                                params={"client_secret": "pi_x_secret_y", "return_url": "/"})
    assert wrong_secret.status_code == 404
    assert _pay(url, gateway, pi_id, "explode").status_code == 400
    assert _pay(url, gateway, pi_id, "confirm", return_url="javascript:alert(1)"
                ).status_code == 400
    assert gateway.events == []


def test_unreachable_webhook_is_recorded_and_the_customer_still_returns(
        wsgi_server: Serve) -> None:
    keys = generate_keys()
    url, gateway = serve(wsgi_server, keys, "http://127.0.0.1:9/notify/stripe")
    pi_id = StripeChannel(channel_settings(keys, url)).create(order()).channel_ref or ""
    assert _pay(url, gateway, pi_id, "confirm").status_code == 303
    [(event_id, outcome)] = gateway.deliveries
    assert event_id == gateway.events[0]["id"] and isinstance(outcome, str)


def test_works_mounted_under_a_prefix(wsgi_server: Serve) -> None:
    keys = generate_keys()
    made: list[StripeGateway] = []

    def mount(base: str) -> Any:
        made.append(make_gateway(keys, f"{base}/stripe"))
        return DispatcherMiddleware(NotFound(), {"/stripe": made[0]})

    base = wsgi_server(mount)
    channel = StripeChannel(channel_settings(keys, f"{base}/stripe/"))
    assert channel.settings.js_url == f"{base}/stripe/v3/"
    pi_id = channel.create(order()).channel_ref or ""
    assert _pay(f"{base}/stripe", made[0], pi_id, "confirm").status_code == 303
    assert channel.query("D1", pi_id).state is TradeState.SUCCEEDED


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_our_page_script_drives_the_look_alike_to_the_payment_page(tmp_path: Path) -> None:
    """portal/static/js/stripe-pay.js with the sandbox's Stripe.js, in node with a minimal DOM:
    the form mounts the element and a submit navigates to the sandbox's payment page."""
    harness = tmp_path / "harness.js"
    harness.write_text(NODE_HARNESS.replace("__STRIPE_JS__", json.dumps(STRIPE_JS))
                       .replace("__PAY_JS__", json.dumps(PAY_JS.read_text(encoding="utf-8"))),
                       encoding="utf-8")
    out = subprocess.run(["node", str(harness)], capture_output=True, text=True, timeout=30,
                         check=True).stdout.splitlines()
    assert out[0] == "mounted"
    target = urlsplit(out[1])
    assert target._replace(query="").geturl() == "http://127.0.0.1:5100/stripe/pay/pi_abc"
    assert parse_qs(target.query) == {"client_secret": ["pi_abc_secret_xyz"],
                                      "return_url": ["http://portal.example/return/D1"],
                                      "key": ["pk_test_1"]}
    assert out[2] == "button disabled"


NODE_HARNESS = """
const vm = require("vm");
const element = { attrs: {}, textContent: "",
  setAttribute(k, v) { this.attrs[k] = v; } };
const button = { disabled: false };
let submit = null;
const form = {
  dataset: { publishableKey: "pk_test_1", clientSecret: "pi_abc_secret_xyz",
             returnUrl: "http://portal.example/return/D1", unavailable: "unavailable" },
  querySelector() { return button; },
  addEventListener(name, fn) { submit = fn; }
};
const message = { hidden: true, textContent: "" };
const navigations = [];
const document = {
  currentScript: { src: "http://127.0.0.1:5100/stripe/v3/" },
  documentElement: { lang: "zh-CN" },
  getElementById(id) { return { "stripe-pay": form, "stripe-pay-error": message }[id]; },
  querySelector(sel) { return sel === "#stripe-payment-element" ? element : null; }
};
const window = { location: { assign(url) { navigations.push(url); } } };
const context = vm.createContext({ window, document, URL, Promise });
vm.runInContext(__STRIPE_JS__, context);
vm.runInContext(__PAY_JS__, context);
console.log("data-stripe-sandbox" in element.attrs ? "mounted" : "not mounted");
submit({ preventDefault() {} });
console.log(navigations[0]);
console.log(button.disabled ? "button disabled" : "button enabled");
"""


def test_refunds_until_nothing_is_left(wsgi_server: Serve) -> None:
    keys = generate_keys()
    url, gateway = serve(wsgi_server, keys, None)
    pi_id = StripeChannel(channel_settings(keys, url)).create(order(amount_fen=300)).channel_ref
    gateway.confirm(pi_id or "")
    full = requests.post(f"{url}/v1/refunds", data={"payment_intent": pi_id}, headers=auth(keys),
                         timeout=10).json()
    again = requests.post(f"{url}/v1/refunds", data={"payment_intent": pi_id},
                          headers=auth(keys), timeout=10)
    fetched = requests.get(f"{url}/v1/refunds/{full['id']}", headers=auth(keys), timeout=10)
    assert full["amount"] == 300 and fetched.json() == full
    assert again.json()["error"]["code"] == "charge_already_refunded"
    assert gateway.objects[full["charge"]]["refunded"] is True

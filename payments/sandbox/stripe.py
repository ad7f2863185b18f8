"""A local, stateful stand-in for the parts of Stripe we use, so the real ``StripeChannel`` (and
``stripe.StripeClient``) runs in the demo and in tests without the internet.

It speaks Stripe's wire format: form-encoded requests with bracketed keys (``metadata[order_no]``),
``Authorization: Bearer sk_...``, ``Idempotency-Key`` (the first response per key is stored and
replayed; the same key with other parameters is an ``idempotency_error``), JSON objects and
``{"error": {...}}`` replies. Endpoints: PaymentIntents create / retrieve / search (by
``metadata['order_no']``) / cancel, Refunds create / list / retrieve, balance transactions list,
with ``expand``.

For the browser it serves a tiny Stripe.js look-alike at ``<public_url>/v3/``: ``Stripe(pk)``
with ``elements({clientSecret}).create("payment").mount(el)`` and ``confirmPayment({elements,
confirmParams: {return_url}})``, which navigates to the sandbox's payment page. There the person
picks confirm / fail / abandon; confirm marks the intent succeeded (charge, balance transaction),
POSTs a signed ``payment_intent.succeeded`` event to the webhook URL and redirects to
``return_url?payment_intent=...&payment_intent_client_secret=...&redirect_status=succeeded``.

Not localstripe (PyPI): it is an aiohttp server needing its own event loop or process, cannot be
mounted beside the other sandboxes as a WSGI app, lags the API stripe-python 16 speaks, and has
no offline Stripe.js; what we need fits in this module.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from payments.channels.stripe import StripeSettings
from portal.kernel.money import fen_to_yuan_str

API_VERSION = "2025-01-01.sandbox"
SANDBOX_FEE_PERMILLE = 30  # the sandbox's card fee: 3.0 %, floored to the fen (fake data only)
WEBHOOK_TIMEOUT_S = 10


@dataclass(frozen=True)
class StripeSandboxKeys:
    secret_key: str
    publishable_key: str
    webhook_secret: str


def generate_keys() -> StripeSandboxKeys:
    return StripeSandboxKeys(secret_key=f"sk_test_{secrets.token_hex(16)}",
                             publishable_key=f"pk_test_{secrets.token_hex(16)}",
                             webhook_secret=f"whsec_{secrets.token_hex(16)}")


def channel_settings(keys: StripeSandboxKeys, gateway_url: str) -> StripeSettings:
    """Settings for a ``StripeChannel`` talking to a gateway served at ``gateway_url``."""
    base = gateway_url.rstrip("/")
    return StripeSettings(secret_key=keys.secret_key, publishable_key=keys.publishable_key,
                          webhook_secret=keys.webhook_secret, api_base=base,
                          js_url=f"{base}/v3/", max_network_retries=0)


def make_gateway(keys: StripeSandboxKeys, public_url: str, webhook_url: str | None = None,
                 *, now: Callable[[], float] = time.time) -> StripeGateway:
    """The sandbox as a WSGI app. ``public_url`` is where browsers reach it (prefix included);
    ``webhook_url`` is our ``/notify/stripe`` (Stripe knows endpoints from its dashboard, not per
    payment); ``now`` dates the objects (webhook signatures always use the wall clock, as
    Stripe's library checks them against it)."""
    return StripeGateway(keys, public_url, webhook_url, now=now)


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """``Stripe-Signature: t=<ts>,v1=<HMAC-SHA256(secret, "<ts>.<body>")>``."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def signed_event(keys: StripeSandboxKeys, *, event_type: str, order_no: str | None,
                 amount_fen: int, pi_id: str | None = None, timestamp: int | None = None,
                 currency: str = "cny", event_id: str | None = None, livemode: bool = False,
                 secret: str | None = None) -> tuple[dict[str, str], bytes]:
    """A webhook delivery as Stripe sends it: (headers, raw body), signed with the keys' webhook
    secret (or ``secret``) at ``timestamp`` (default now). ``order_no=None`` leaves the metadata
    empty."""
    pi_id = pi_id or _new_id("pi")
    status = {"payment_intent.succeeded": "succeeded",
              "payment_intent.canceled": "canceled"}.get(event_type, "requires_payment_method")
    intent = _intent_object(pi_id, amount_fen, currency, {"order_no": order_no} if order_no
                            else {}, "", int(time.time()) if timestamp is None else timestamp)
    intent["status"] = status
    intent["amount_received"] = amount_fen if status == "succeeded" else 0
    event = _event_object(event_type, intent, intent["created"], event_id=event_id)
    event["livemode"] = livemode
    body = json.dumps(event).encode()
    return ({"Content-Type": "application/json; charset=utf-8",
             "Stripe-Signature": signature_header(secret or keys.webhook_secret, body, timestamp)},
            body)


class StripeError(HTTPException):
    def __init__(self, status: int, code: str | None, message: str,
                 kind: str = "invalid_request_error", param: str | None = None) -> None:
        super().__init__(message)
        self.code = status
        self.payload = {"error": {"type": kind, "code": code, "message": message,
                                  "param": param}}

    def get_response(self, environ: Any = None, scope: Any = None) -> Response:
        return _json(self.payload, self.code or 400)


def _missing(kind: str, object_id: str) -> StripeError:
    return StripeError(404, "resource_missing", f"No such {kind}: '{object_id}'", param="id")


class StripeGateway:
    """The sandbox's state (intents, charges, refunds, balance transactions, events) and its WSGI
    entry point. All state changes happen under one lock."""

    def __init__(self, keys: StripeSandboxKeys, public_url: str, webhook_url: str | None,
                 *, now: Callable[[], float]) -> None:
        self.keys = keys
        self.public_url = public_url.rstrip("/")
        self.webhook_url = webhook_url
        self.now = now
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.deliveries: list[tuple[str, int | str]] = []  # (event id, HTTP status or error)
        self._idempotency: dict[str, tuple[str, int, bytes]] = {}
        self._lock = threading.RLock()
        self._urls = Map([
            Rule("/v1/payment_intents", methods=["POST"], endpoint=self._create_intent),
            Rule("/v1/payment_intents/search", methods=["GET"], endpoint=self._search_intents),
            Rule("/v1/payment_intents/<pi_id>", methods=["GET"], endpoint=self._get_intent),
            Rule("/v1/payment_intents/<pi_id>/cancel", methods=["POST"],
                 endpoint=self._cancel_intent),
            Rule("/v1/refunds", methods=["POST"], endpoint=self._create_refund),
            Rule("/v1/refunds", methods=["GET"], endpoint=self._list_refunds),
            Rule("/v1/refunds/<re_id>", methods=["GET"], endpoint=self._get_refund),
            Rule("/v1/balance_transactions", methods=["GET"], endpoint=self._list_balance),
            Rule("/v3/", methods=["GET"], endpoint=self._stripe_js),
            Rule("/pay/<pi_id>", methods=["GET"], endpoint=self._pay_page),
            Rule("/pay/<pi_id>", methods=["POST"], endpoint=self._pay_action),
        ])

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = self._urls.bind_to_environ(environ).match()
            if request.path.startswith("/v1/"):
                response = self._api(request, endpoint, args)
            else:
                response = endpoint(request, **args)
        except StripeError as exc:
            response = exc.get_response()
        except HTTPException as exc:
            response = _json({"error": {"type": "invalid_request_error",
                                        "message": exc.description}}, exc.code or 400)
        return response(environ, start_response)

    # -- the API --------------------------------------------------------------------------------

    def _api(self, request: Request, endpoint: Callable[..., Any],
             args: Mapping[str, Any]) -> Response:
        if request.headers.get("Authorization") != f"Bearer {self.keys.secret_key}":
            raise StripeError(401, None, "Invalid API Key provided")
        source = request.form if request.method == "POST" else request.args
        params = _decode(list(source.items(multi=True)))
        key = request.headers.get("Idempotency-Key")
        with self._lock:
            if request.method == "POST" and key:
                fingerprint = json.dumps([request.path, params], sort_keys=True)
                stored = self._idempotency.get(key)
                if stored is not None:
                    if stored[0] != fingerprint:
                        raise StripeError(400, None, "Keys for idempotent requests can only be "
                                          "used with the same parameters they were first used "
                                          "with.", kind="idempotency_error")
                    replay = Response(stored[2], status=stored[1], mimetype="application/json")
                    replay.headers["Idempotent-Replayed"] = "true"
                    return replay
            try:
                status, payload = 200, endpoint(params, **args)
            except StripeError as exc:
                status, payload = exc.code or 400, exc.payload
            body = json.dumps(payload).encode()
            if request.method == "POST" and key:
                self._idempotency[key] = (fingerprint, status, body)
        return Response(body, status=status, mimetype="application/json")

    def _create_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        amount = _positive_int(params, "amount")
        currency = str(params.get("currency", "")).lower()
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise StripeError(400, "parameter_missing", "Missing required param: currency.",
                              param="currency")
        intent = _intent_object(_new_id("pi"), amount, currency, dict(params.get("metadata", {})),
                                str(params.get("description", "")), int(self.now()))
        self.objects[intent["id"]] = intent
        return self._expanded(intent, params)

    def _get_intent(self, params: dict[str, Any], pi_id: str) -> dict[str, Any]:
        return self._expanded(self._find(pi_id, "payment_intent"), params)

    def _search_intents(self, params: dict[str, Any]) -> dict[str, Any]:
        match = re.fullmatch(r"metadata\['(\w+)'\]:'((?:[^'\\]|\\.)*)'",
                             str(params.get("query", "")))
        if match is None:
            raise StripeError(400, "parameter_invalid", "The sandbox searches only "
                              "metadata['key']:'value'.", param="query")
        key, value = match[1], re.sub(r"\\(.)", r"\1", match[2])
        found = [self._expanded(o, params) for o in reversed(list(self.objects.values()))
                 if o["object"] == "payment_intent" and o["metadata"].get(key) == value]
        return {"object": "search_result", "url": "/v1/payment_intents/search",
                "data": found, "has_more": False, "next_page": None}

    def _cancel_intent(self, params: dict[str, Any], pi_id: str) -> dict[str, Any]:
        intent = self._find(pi_id, "payment_intent")
        if intent["status"] in ("succeeded", "canceled"):
            raise StripeError(400, "payment_intent_unexpected_state",
                              "You cannot cancel this PaymentIntent because it has a status of "
                              f"{intent['status']}.")
        intent.update(status="canceled", canceled_at=int(self.now()),
                      cancellation_reason=params.get("cancellation_reason"))
        self._emit("payment_intent.canceled", intent)
        return self._expanded(intent, params)

    def _create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        intent = self._find(str(params.get("payment_intent", "")), "payment_intent")
        if intent["status"] != "succeeded":
            raise StripeError(400, "payment_intent_unexpected_state",
                              "This PaymentIntent does not have a successful charge to refund.")
        charge = self.objects[intent["latest_charge"]]
        remaining = charge["amount"] - charge["amount_refunded"]
        amount = _positive_int(params, "amount") if "amount" in params else remaining
        if remaining == 0:
            raise StripeError(400, "charge_already_refunded",
                              f"Charge {charge['id']} has already been refunded.")
        if amount > remaining:
            raise StripeError(400, "amount_too_large", f"Refund amount ({amount}) is greater "
                              f"than unrefunded amount on charge ({remaining})", param="amount")
        created = int(self.now())
        refund = {"id": _new_id("re"), "object": "refund", "amount": amount,
                  "currency": charge["currency"], "charge": charge["id"],
                  "payment_intent": intent["id"], "status": "succeeded",
                  "reason": params.get("reason"), "metadata": dict(params.get("metadata", {})),
                  "created": created, "balance_transaction": None}
        refund["balance_transaction"] = self._book("refund", -amount, 0, refund["id"], created)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self.objects[refund["id"]] = refund
        self._emit("charge.refunded", charge)
        return self._expanded(refund, params)

    def _get_refund(self, params: dict[str, Any], re_id: str) -> dict[str, Any]:
        return self._expanded(self._find(re_id, "refund"), params)

    def _list_refunds(self, params: dict[str, Any]) -> dict[str, Any]:
        wanted = params.get("payment_intent")
        return self._page("/v1/refunds", params, [
            o for o in self.objects.values() if o["object"] == "refund"
            and (wanted is None or o["payment_intent"] == wanted)])

    def _list_balance(self, params: dict[str, Any]) -> dict[str, Any]:
        created = params.get("created", {})
        low = int(created.get("gte", 0))
        high = int(created.get("lt", 2**63))
        return self._page("/v1/balance_transactions", params, [
            o for o in self.objects.values()
            if o["object"] == "balance_transaction" and low <= o["created"] < high])

    # -- the customer's side --------------------------------------------------------------------

    def _stripe_js(self, request: Request) -> Response:
        response = Response(STRIPE_JS, mimetype="text/javascript")
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    def _intent_for_secret(self, pi_id: str, client_secret: str) -> dict[str, Any]:
        intent = self.objects.get(pi_id)
        if intent is None or intent["object"] != "payment_intent" or not hmac.compare_digest(
                intent["client_secret"], client_secret):
            raise NotFound("Unknown payment.")
        return intent

    def _pay_page(self, request: Request, pi_id: str) -> Response:
        secret = request.args.get("client_secret", "")
        return_url = request.args.get("return_url", "")
        with self._lock:
            intent = dict(self._intent_for_secret(pi_id, secret))
        fields = "".join(f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
                         for name, value in (("client_secret", secret),
                                             ("return_url", return_url)))
        page = PAY_PAGE.format(
            amount=fen_to_yuan_str(intent["amount"]), currency=intent["currency"].upper(),
            order_no=html.escape(str(intent["metadata"].get("order_no", ""))),
            description=html.escape(intent["description"]), status=intent["status"],
            fields=fields)
        return Response(page, mimetype="text/html")

    def _pay_action(self, request: Request, pi_id: str) -> Response:
        action = request.form.get("action")
        return_url = request.form.get("return_url", "")
        secret = request.form.get("client_secret", "")
        if not return_url.startswith(("http://", "https://")):
            raise StripeError(400, "url_invalid", "return_url must be an absolute URL.")
        with self._lock:
            intent = self._intent_for_secret(pi_id, secret)
            if action == "confirm":
                self.confirm(pi_id)
                redirect_status = "succeeded"
            elif action == "fail":
                self.fail(pi_id)
                redirect_status = "failed"
            elif action == "abandon":
                redirect_status = "requires_payment_method"
            else:
                raise StripeError(400, "parameter_invalid", "action: confirm, fail or abandon.")
            intent_id = intent["id"]
        joiner = "&" if "?" in return_url else "?"
        target = return_url + joiner + urlencode({
            "payment_intent": intent_id, "payment_intent_client_secret": secret,
            "redirect_status": redirect_status})
        return Response("", status=303, headers={"Location": target})

    def confirm(self, pi_id: str) -> None:
        """The card went through: the intent succeeds with a charge and a balance transaction,
        and a ``payment_intent.succeeded`` event is delivered."""
        with self._lock:
            intent = self._find(pi_id, "payment_intent")
            if intent["status"] in ("succeeded", "canceled"):
                raise StripeError(400, "payment_intent_unexpected_state", "You cannot confirm "
                                  f"this PaymentIntent because it has a status of "
                                  f"{intent['status']}.")
            created = int(self.now())
            charge = {"id": _new_id("ch"), "object": "charge", "amount": intent["amount"],
                      "amount_refunded": 0, "currency": intent["currency"], "paid": True,
                      "refunded": False, "status": "succeeded", "payment_intent": intent["id"],
                      "metadata": dict(intent["metadata"]), "created": created,
                      "balance_transaction": None}
            fee = intent["amount"] * SANDBOX_FEE_PERMILLE // 1000
            charge["balance_transaction"] = self._book("charge", intent["amount"], fee,
                                                       charge["id"], created)
            self.objects[charge["id"]] = charge
            intent.update(status="succeeded", amount_received=intent["amount"],
                          latest_charge=charge["id"], last_payment_error=None)
            self._emit("payment_intent.succeeded", intent)

    def fail(self, pi_id: str) -> None:
        """The card was declined: the intent wants another payment method."""
        with self._lock:
            intent = self._find(pi_id, "payment_intent")
            if intent["status"] in ("succeeded", "canceled"):
                raise StripeError(400, "payment_intent_unexpected_state",
                                  f"The PaymentIntent has a status of {intent['status']}.")
            intent.update(status="requires_payment_method", last_payment_error={
                "type": "card_error", "code": "card_declined",
                "message": "Your card was declined."})
            self._emit("payment_intent.payment_failed", intent)

    # -- helpers --------------------------------------------------------------------------------

    def _find(self, object_id: str, kind: str) -> dict[str, Any]:
        found = self.objects.get(object_id)
        if found is None or found["object"] != kind:
            raise _missing(kind, object_id)
        return found

    def _book(self, kind: str, amount: int, fee: int, source: str, created: int) -> str:
        txn: dict[str, Any] = {"id": _new_id("txn"), "object": "balance_transaction", "type": kind,
               "amount": amount, "fee": fee, "net": amount - fee, "currency": "cny",
               "source": source, "created": created, "available_on": created + 2 * 86400,
               "reporting_category": kind, "status": "pending"}
        self.objects[txn["id"]] = txn
        return str(txn["id"])

    def _expanded(self, obj: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        result = json.loads(json.dumps(obj))
        for path in _list(params.get("expand")):
            self._expand(result, str(path).split("."))
        return dict(result)

    def _expand(self, node: Any, path: list[str]) -> None:
        if not path or not isinstance(node, dict):
            return
        head, rest = path[0], path[1:]
        if head == "data" and isinstance(node.get("data"), list):
            for item in node["data"]:
                self._expand(item, rest)
            return
        value = node.get(head)
        if isinstance(value, str) and value in self.objects:
            node[head] = value = json.loads(json.dumps(self.objects[value]))
        self._expand(value, rest)

    def _page(self, url: str, params: dict[str, Any],
              items: list[dict[str, Any]]) -> dict[str, Any]:
        items = sorted(items, key=lambda o: (o["created"], o["id"]), reverse=True)
        after = params.get("starting_after")
        if after is not None:
            ids = [o["id"] for o in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        limit = int(params.get("limit", 10))
        page = items[:limit]
        result = {"object": "list", "url": url, "has_more": len(items) > limit,
                  "data": page}
        return self._expanded(result, params)

    def _emit(self, event_type: str, obj: dict[str, Any]) -> None:
        event = _event_object(event_type, json.loads(json.dumps(obj)), int(self.now()))
        self.events.append(event)
        if self.webhook_url is None:
            return
        body = json.dumps(event).encode()
        try:
            reply = requests.post(self.webhook_url, data=body, timeout=WEBHOOK_TIMEOUT_S,
                                  headers={"Content-Type": "application/json; charset=utf-8",
                                           "Stripe-Signature": signature_header(
                                               self.keys.webhook_secret, body)})
            self.deliveries.append((event["id"], reply.status_code))
        except requests.RequestException as exc:  # Stripe would retry; the janitor queries
            self.deliveries.append((event["id"], str(exc)))


def _intent_object(pi_id: str, amount: int, currency: str, metadata: dict[str, Any],
                   description: str, created: int) -> dict[str, Any]:
    return {"id": pi_id, "object": "payment_intent", "amount": amount, "amount_received": 0,
            "currency": currency, "status": "requires_payment_method",
            "client_secret": f"{pi_id}_secret_{secrets.token_urlsafe(18)}",
            "metadata": metadata, "description": description, "created": created,
            "livemode": False, "latest_charge": None, "last_payment_error": None,
            "payment_method_types": ["card"], "canceled_at": None,
            "cancellation_reason": None}


def _event_object(event_type: str, obj: dict[str, Any], created: int,
                  event_id: str | None = None) -> dict[str, Any]:
    return {"id": event_id or _new_id("evt"), "object": "event", "api_version": API_VERSION,
            "created": created, "livemode": False, "type": event_type,
            "data": {"object": obj}, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None}}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _positive_int(params: dict[str, Any], name: str) -> int:
    value = str(params.get(name, ""))
    if not value.isdigit() or int(value) <= 0:
        raise StripeError(400, "parameter_invalid_integer",
                          f"Invalid positive integer: {name}", param=name)
    return int(value)


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _decode(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (``a[b][c]=v``, ``l[0]=v``, ``l[]=v``) back to nested data."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"^[^\[]+|(?<=\[)[^\]]*(?=\])", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        last = parts[-1]
        if last == "":
            last = str(len(node))
        node[last] = value
    return _lists(root)  # type: ignore[no-any-return]


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_lists(node[k]) for k in sorted(node, key=int)]
    return {k: _lists(v) for k, v in node.items()}


def _json(payload: Any, status: int) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


# The Stripe.js look-alike: the subset of https://js.stripe.com/v3/ our page calls.
STRIPE_JS = """\
(function () {
  "use strict";
  var base = new URL("../", document.currentScript.src);
  window.Stripe = function (publishableKey) {
    return {
      elements: function (options) {
        var clientSecret = options && options.clientSecret;
        return {
          clientSecret: clientSecret,
          create: function () {
            return {
              mount: function (target) {
                var node = typeof target === "string" ? document.querySelector(target) : target;
                node.setAttribute("data-stripe-sandbox", "");
                node.textContent = "Stripe sandbox \\u6a21\\u62df\\u652f\\u4ed8 (test card)";
              }
            };
          }
        };
      },
      confirmPayment: function (args) {
        var secret = args.clientSecret || (args.elements && args.elements.clientSecret);
        var url = new URL("pay/" + encodeURIComponent(secret.split("_secret_")[0]), base);
        url.searchParams.set("client_secret", secret);
        url.searchParams.set("return_url", args.confirmParams.return_url);
        url.searchParams.set("key", publishableKey);
        window.location.assign(url.toString());
        return new Promise(function () {});
      }
    };
  };
})();
"""

PAY_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>Stripe sandbox</title>
<link rel="icon" href="data:,"><meta name="viewport" content="width=device-width">
</head><body style="font-family:sans-serif;max-width:28rem;margin:2rem auto">
<h1>Stripe sandbox</h1>
<p>Order <b id="order-no">{order_no}</b>: {description}</p>
<p id="amount">{currency} {amount}</p><p>Status: <span id="status">{status}</span></p>
<form method="post">{fields}
<button name="action" value="confirm">Pay (confirm)</button>
<button name="action" value="fail">Decline (fail)</button>
<button name="action" value="abandon">Go back (abandon)</button>
</form></body></html>
"""

"""The mini-program API under /api/mp/v1: thin views over the account, bill, usage and payment
services, documented by flask-smorest at /api/mp/v1/openapi.json.

Authentication is a bearer token in the ``Authorization`` header, never a cookie: this API is
exempt from CSRF only because a cross-site page cannot make a browser attach that header, and
nothing here reads the cookie session (``current_user`` is never consulted; ``caller()`` is the
only way a view learns who is calling).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar

from flask import Flask, current_app, g, get_template_attribute, request
from flask_babel import gettext as _
from flask_smorest import Api, Blueprint
from webargs.flaskparser import FlaskParser
from webargs.multidictproxy import MultiDictProxy
from werkzeug.datastructures import CombinedMultiDict

from billing_adapter.local.tariffs import TariffBook
from notifications import consents
from payments import service as payments
from payments.channels.base import Scene
from payments.models import PaymentOrder
from payments.service import ChannelDown
from portal import context
from portal.accounts import service as accounts
from portal.accounts.models import Customer
from portal.bills import explain
from portal.bills import service as bills
from portal.extensions import csrf, db, limiter
from portal.kernel.errors import DomainError, NotFound
from portal.ledger import service as ledger
from portal.miniprogram import URL_PREFIX, schemas, tokens
from portal.miniprogram import service as mp
from portal.miniprogram.errors import Unauthenticated
from portal.miniprogram.wxlogin import (
    CodeRejected,
    LoginUnavailable,
    MiniProgramSettings,
    WxIdentity,
    code_to_session,
)
from portal.payment_channels import channels, notify_url
from portal.settings import INSTANCE
from portal.urls import MAX_ID, IdConverter

MINIPROGRAM_KEY = "dianfei.miniprogram"
TICKET_LIFETIME = timedelta(minutes=10)
BIND_CODE_LIFETIME = timedelta(minutes=10)
BEARER = [{"bearerAuth": []}]


class WxCodeRejected(DomainError):
    code = "wx_code_rejected"


class LoginDown(DomainError):
    code = "wx_unavailable"
    status = 503


class BadTicket(DomainError):
    code = "ticket_invalid"


class BadBindCode(DomainError):
    code = "bind_code_invalid"


class BadCredentials(DomainError):
    code = "bind_credentials"


class MpBlueprint(Blueprint):  # type: ignore[misc]
    """flask-smorest's Blueprint with one more body location: a multipart form whose fields
    and files are read by one schema (wx.uploadFile sends the photo with the values)."""

    ARGUMENTS_PARSER = FlaskParser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING: ClassVar[dict[str, str]] = {
        **Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING, schemas.MULTIPART: "multipart/form-data"}


@MpBlueprint.ARGUMENTS_PARSER.location_loader(schemas.MULTIPART)
def _form_and_files(req: Any, schema: Any) -> MultiDictProxy:
    return MultiDictProxy(CombinedMultiDict([req.form, req.files]), schema)


blp = MpBlueprint("mp", __name__, url_prefix=URL_PREFIX,
                  description="WeChat mini-program API (bearer tokens; errors are Error objects)")
csrf.exempt(blp)  # bearer tokens only, no cookies: see the module docstring


@blp.after_request
def _no_caching(response: Any) -> Any:
    """Answers are personal (bills, tokens): no shared or private cache keeps them."""
    response.headers["Cache-Control"] = "no-store"
    return response


class MiniProgramApi(Api):  # type: ignore[misc]
    """flask-smorest's Api without its app-wide error handler: the portal's handlers answer
    HTML on the website and JSON here (portal.errors -> portal.miniprogram.errors)."""

    ERROR_SCHEMA = schemas.Error

    def _register_error_handlers(self) -> None:
        pass


# --- helpers ---------------------------------------------------------------------------------

def signer(purpose: str) -> tokens.Tokens:
    keys = [k.get_secret_value() for k in context.settings().mp_previous_secret_keys]
    return tokens.Tokens([*keys, current_app.config["SECRET_KEY"]], purpose, context.clock())


def bearer_for(customer: Customer) -> tokens.Issued:
    lifetime = timedelta(minutes=context.settings().mp_token_minutes)
    return signer(tokens.BEARER).issue(
        {"c": customer.id, "o": tokens.fingerprint(customer.wechat_openid)}, lifetime)


def bind_code_for(customer: Customer) -> tokens.Issued:
    """A short-lived code the signed-in website customer hands to the mini-program (QR code)."""
    return signer(tokens.BIND_CODE).issue(
        {"c": customer.id, "o": tokens.fingerprint(customer.wechat_openid)}, BIND_CODE_LIFETIME)


def caller() -> Customer:
    if "mp_customer" in g:
        return g.mp_customer  # type: ignore[no-any-return]
    scheme, _sep, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("token_missing")
    try:
        data = signer(tokens.BEARER).verify(token.strip())
    except tokens.TokenExpired:
        raise Unauthenticated("token_expired") from None
    except tokens.TokenInvalid:
        raise Unauthenticated("token_invalid") from None
    customer_id = data.get("c")
    customer = (db.session.get(Customer, customer_id)
                if isinstance(customer_id, int) and 0 < customer_id <= MAX_ID else None)
    if (customer is None or not customer.is_active or customer.wechat_openid is None
            or data.get("o") != tokens.fingerprint(customer.wechat_openid)):
        raise Unauthenticated("token_invalid")
    g.mp_customer = customer
    return customer


def authenticated(view: Callable[..., Any]) -> Callable[..., Any]:
    """The caller's token is checked before anything else (the body is read after it: an
    anonymous caller learns nothing but 401); placed under ``@blp.doc(security=BEARER)``."""
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caller()
        return view(*args, **kwargs)
    return wrapper


def _failed(response: Any) -> bool:
    return getattr(response, "status_code", 200) >= 400


def _account_row(account: Any, owed: int) -> dict[str, Any]:
    return {"id": account.id, "account_no": account.account_no,
            "holder_name": account.holder_name, "address": account.address,
            "customer_class": account.customer_class.value, "owed_fen": owed}


def _bill_row(summary: bills.BillSummary) -> dict[str, Any]:
    b = summary.bill
    return {"id": b.id, "account_id": b.account_id, "period": b.period,
            "period_start": b.period_start, "period_end": b.period_end, "kwh": str(b.kwh),
            "total_fen": b.total_fen, "owed_fen": summary.owed_fen, "due_date": b.due_date,
            "state": summary.state.value}


def text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _order_row(order: PaymentOrder) -> dict[str, Any]:
    return {"order_no": order.order_no, "account_id": order.account_id,
            "status": order.status.value, "amount_fen": order.amount_fen,
            "created_at": order.created_at, "expires_at": order.expires_at,
            "paid_at": order.paid_at,
            "bills": [{"bill_id": c.bill_id, "amount_fen": c.amount_fen} for c in order.bills]}


def _owned_order(order_no: str) -> PaymentOrder:
    order = payments.order_by_no(db.session, order_no[:40])
    if order is None or not accounts.is_linked(db.session, caller().id, order.account_id):
        raise NotFound()
    return order


def miniprogram_settings() -> MiniProgramSettings | None:
    return current_app.extensions[MINIPROGRAM_KEY]  # type: ignore[no-any-return]


# --- sign-in ---------------------------------------------------------------------------------

def _login_limit() -> str:
    return context.settings().login_rate_limit


def _bind_phone_key() -> str:
    body = request.get_json(silent=True)
    phone = body.get("phone") if isinstance(body, dict) else None
    return "login-phone:" + accounts.normalise_phone(phone if isinstance(phone, str) else "")[:20]


@blp.route("/auth/login", methods=["POST"])
@blp.arguments(schemas.LoginIn)
@blp.response(200, schemas.LoginOut)
@blp.alt_response(400, schema=schemas.Error, description="wx_code_rejected")
@blp.alt_response(503, schema=schemas.Error, description="wx_unavailable")
@limiter.limit(_login_limit, deduct_when=_failed)
def login(data: dict[str, Any]) -> dict[str, Any]:
    """Sign in with a wx.login() code: a bearer token when this WeChat user is bound to a
    customer, otherwise a ticket for /auth/bind."""
    who = _identity(data["code"])
    customer = mp.customer_by_openid(db.session, who.openid)
    if customer is None:
        ticket = signer(tokens.TICKET).issue({"o": who.openid, "u": who.unionid},
                                             TICKET_LIFETIME)
        return {"status": "bind_required", "token": None, "expires_at": ticket.expires_at,
                "ticket": ticket.token}
    customer.last_login_at = context.clock().now()
    if who.unionid and customer.wechat_unionid != who.unionid:
        customer.wechat_unionid = who.unionid
    db.session.commit()
    issued = bearer_for(customer)
    return {"status": "signed_in", "token": issued.token, "expires_at": issued.expires_at,
            "ticket": None}


def _identity(code: str) -> WxIdentity:
    settings = miniprogram_settings()
    if settings is None:
        raise LoginDown()
    try:
        return code_to_session(settings, code)
    except CodeRejected:
        raise WxCodeRejected() from None
    except LoginUnavailable as exc:
        current_app.logger.warning("mini-program login unavailable: %s", exc)
        raise LoginDown() from None


@blp.route("/auth/bind", methods=["POST"])
@blp.arguments(schemas.BindIn)
@blp.response(200, schemas.TokenOut)
@blp.alt_response(400, schema=schemas.Error,
                  description="ticket_invalid, bind_code_invalid or bind_credentials")
@limiter.limit(_login_limit, deduct_when=_failed)
@limiter.limit(_login_limit, key_func=_bind_phone_key, deduct_when=_failed)
def bind(data: dict[str, Any]) -> dict[str, Any]:
    """Bind the WeChat user of a login ticket to a customer, proven by the website's mobile
    number and password, or by a binding code made on the website; answers a bearer token."""
    clock = context.clock()
    try:
        ticket = signer(tokens.TICKET).verify(data["ticket"])
    except (tokens.TokenInvalid, tokens.TokenExpired):
        raise BadTicket() from None
    openid, unionid = ticket.get("o"), ticket.get("u")
    if not isinstance(openid, str) or not openid:
        raise BadTicket()
    if "bind_code" in data:
        customer = _bind_code_customer(data["bind_code"])
    else:
        customer = accounts.authenticate(db.session, clock, data["phone"], data["password"])
        if customer is None:
            raise BadCredentials()
    mp.bind_openid(db.session, clock, customer,
                   WxIdentity(openid, unionid if isinstance(unionid, str) else None))
    db.session.commit()
    issued = bearer_for(customer)
    return {"token": issued.token, "expires_at": issued.expires_at}


def _bind_code_customer(code: str) -> Customer:
    try:
        data = signer(tokens.BIND_CODE).verify(code)
    except (tokens.TokenInvalid, tokens.TokenExpired):
        raise BadBindCode() from None
    customer_id = data.get("c")
    customer = (db.session.get(Customer, customer_id)
                if isinstance(customer_id, int) and 0 < customer_id <= MAX_ID else None)
    # The code carries the binding it was made under: once used (or the binding changed) it
    # no longer matches, so it works once.
    if (customer is None or not customer.is_active
            or data.get("o") != tokens.fingerprint(customer.wechat_openid)):
        raise BadBindCode()
    return customer


# --- accounts --------------------------------------------------------------------------------

@blp.route("/accounts", methods=["GET"])
@blp.doc(security=BEARER)
@authenticated
@blp.response(200, schemas.AccountsOut)
def account_list() -> dict[str, Any]:
    """The customer's linked electricity accounts with what each owes."""
    linked = accounts.linked_accounts(db.session, caller().id)
    owed = ledger.owed_by_account(db.session, [a.id for a in linked])
    return {"accounts": [_account_row(a, owed[a.id]) for a in linked]}


@blp.route("/accounts", methods=["POST"])
@blp.doc(security=BEARER)
@authenticated
@blp.arguments(schemas.LinkIn)
@blp.response(201, schemas.AccountOut)
@blp.alt_response(400, schema=schemas.Error, description="link_mismatch")
@blp.alt_response(409, schema=schemas.Error, description="already_linked")
@limiter.shared_limit(lambda: context.settings().link_rate_limit, accounts.LINK_LIMIT_SCOPE,
                      key_func=lambda: f"link:{caller().id}", deduct_when=_failed)
def account_link(data: dict[str, Any]) -> dict[str, Any]:
    """Link an account (户号 + holder name + last 4 meter digits); the website's rule and its
    rate limit (shared with the website: one counter per customer)."""
    link = accounts.link_account(db.session, context.clock(), caller(), data["account_no"],
                                 data["holder_name"], data["meter_last4"])
    db.session.commit()
    owed = ledger.owed_by_account(db.session, [link.account_id])[link.account_id]
    return _account_row(link.account, owed)


@blp.route("/accounts/<id:account_id>/bills", methods=["GET"])
@blp.doc(security=BEARER)
@authenticated
@blp.response(200, schemas.BillsOut)
@blp.alt_response(404, schema=schemas.Error)
def account_bills(account_id: int) -> dict[str, Any]:
    """The account's bills, newest period first (the newest version of each)."""
    account = accounts.owned_account(db.session, caller().id, account_id)
    rows = bills.summaries(db.session, bills.account_bills(db.session, account.id),
                           context.today())
    return {"bills": [_bill_row(s) for s in rows]}


@blp.route("/accounts/<id:account_id>/usage", methods=["GET"])
@blp.doc(security=BEARER)
@authenticated
@blp.arguments(schemas.UsageQuery, location="query")
@blp.response(200, schemas.UsageOut)
@blp.alt_response(404, schema=schemas.Error)
def usage(query: dict[str, Any], account_id: int) -> dict[str, Any]:
    """Monthly usage for a chart (the website's usage series), oldest period first."""
    account = accounts.owned_account(db.session, caller().id, account_id)
    points = bills.usage_history(db.session, account.id, months=query["months"])
    return {"periods": [p.period for p in points], "kwh": [str(p.kwh) for p in points],
            "peak": [text_or_none(p.peak_kwh) for p in points],
            "flat": [text_or_none(p.flat_kwh) for p in points],
            "valley": [text_or_none(p.valley_kwh) for p in points],
            "total_fen": [p.total_fen for p in points]}


@blp.route("/bills/<id:bill_id>", methods=["GET"])
@blp.doc(security=BEARER)
@authenticated
@blp.response(200, schemas.BillDetailOut)
@blp.alt_response(404, schema=schemas.Error)
def bill_detail(bill_id: int) -> dict[str, Any]:
    """One bill with its lines (label and kWh × price), tier progress and late fee so far."""
    bill = bills.bill_with_lines(db.session, bill_id)
    if bill is None or not accounts.is_linked(db.session, caller().id, bill.account_id):
        raise NotFound()
    (summary,) = bills.summaries(db.session, [bill], context.today())
    progress = explain.tier_progress(db.session, TariffBook.from_db(db.session), bill)
    fee = explain.accrued_late_fee(bill, bill.account, summary.owed_fen, context.today())
    return {**_bill_row(summary), "lines": [_line_row(line) for line in bill.lines],
            "progress": None if progress is None else {
                "annual": progress.annual, "used_kwh": str(progress.used_kwh),
                "bounds": [str(b) for b in progress.bounds], "tier": progress.tier,
                "left_kwh": text_or_none(progress.left_kwh), "start": progress.start,
                "end": progress.end},
            "late_fee": None if fee is None else {
                "days": fee.days, "arrears_fen": fee.arrears_fen, "fee_fen": fee.fee_fen,
                "per_mille": str(fee.per_mille), "waived": fee.waived}}


def _line_row(line: Any) -> dict[str, Any]:
    def macro(name: str) -> str:  # the bill page's words for a line, as plain text
        return str(get_template_attribute("macros/bills.html", name)(line).unescape()).strip()

    return {"seq": line.seq, "kind": line.kind.value, "label": macro("line_label"),
            "derivation": macro("line_derivation"), "tier": line.tier,
            "register": line.register, "kwh": text_or_none(line.kwh),
            "unit_price": text_or_none(line.unit_price), "amount_fen": line.amount_fen}


# --- paying ----------------------------------------------------------------------------------

@blp.route("/accounts/<id:account_id>/pay", methods=["POST"])
@blp.doc(security=BEARER)
@authenticated
@blp.arguments(schemas.PayIn)
@blp.response(201, schemas.PayOut)
@blp.alt_response(400, schema=schemas.Error, description="payment_nothing_to_pay")
@blp.alt_response(404, schema=schemas.Error)
@blp.alt_response(502, schema=schemas.Error, description="payment_channel_refused")
@blp.alt_response(503, schema=schemas.Error, description="payment_channel_unavailable")
def pay(data: dict[str, Any], account_id: int) -> dict[str, Any]:
    """Pay the chosen bills with WeChat Pay (JSAPI): answers the wx.requestPayment()
    parameters; then poll the order (or refresh it) for the outcome."""
    customer = caller()
    account = accounts.owned_account(db.session, customer.id, account_id)
    channel = channels().get("wechat")
    if channel is None:
        raise ChannelDown("wechat is not enabled")
    settings, clock = context.settings(), context.clock()
    order = payments.create_order(
        db.session, clock, account_id=account.id, customer_id=customer.id, channel="wechat",
        scene=Scene.MINIPROGRAM, bill_ids=data["bill_ids"], lifetime=settings.payments.lifetime,
        first_query_after=settings.payments.backoff(0))
    checkout = payments.start_checkout(
        db.session, clock, channel, order,
        description=_("Electricity account %(no)s", no=account.account_no),
        notify_url=notify_url(settings, order.channel),
        return_url=f"{settings.public_url.rstrip('/')}/", payer_openid=customer.wechat_openid)
    return {**_order_row(order), "pay_params": dict(checkout.pay_params or {})}


@blp.route("/orders/<order_no>", methods=["GET"])
@blp.doc(security=BEARER)
@authenticated
@blp.response(200, schemas.OrderOut)
@blp.alt_response(404, schema=schemas.Error)
def order_status(order_no: str) -> dict[str, Any]:
    """A payment order's status as we know it (notifications and the janitor keep it fresh)."""
    return _order_row(_owned_order(order_no))


@blp.route("/orders/<order_no>/refresh", methods=["POST"])
@blp.doc(security=BEARER)
@authenticated
@blp.response(200, schemas.OrderOut)
@blp.alt_response(404, schema=schemas.Error)
def order_refresh(order_no: str) -> dict[str, Any]:
    """Ask WeChat Pay once about an open order (after wx.requestPayment succeeded), then answer
    its status."""
    order = _owned_order(order_no)
    channel = channels().get(order.channel)
    if channel is not None:
        payments.refresh_from_channel(db.session, context.clock(), channel, order,
                                      context.settings().zone)
        db.session.refresh(order)
    return _order_row(order)


# --- subscribe-message consents --------------------------------------------------------------

def _consents_left(customer_id: int) -> dict[str, Any]:
    return {"remaining": {event: consents.remaining(db.session, customer_id, event)
                          for event in schemas.EVENTS}}


@blp.route("/consents", methods=["GET"])
@blp.doc(security=BEARER)
@authenticated
@blp.response(200, schemas.ConsentsOut)
def consent_counts() -> dict[str, Any]:
    """How many messages of each event the customer still allows."""
    return _consents_left(caller().id)


@blp.route("/consents", methods=["POST"])
@blp.doc(security=BEARER)
@authenticated
@blp.arguments(schemas.ConsentsIn)
@blp.response(200, schemas.ConsentsOut)
def consent_record(data: dict[str, Any]) -> dict[str, Any]:
    """Record what wx.requestSubscribeMessage() returned as accepted: one message each."""
    customer_id = caller().id
    consents.record_consents(db.session, context.clock(), customer_id, data["events"])
    db.session.commit()
    return _consents_left(customer_id)


# --- wiring ----------------------------------------------------------------------------------

def init_app(app: Flask) -> None:
    settings = app.extensions[context.SETTINGS_KEY]
    mp_settings = settings.miniprogram
    # The demo: the sandbox's mini-program, with the app id of the sandbox WeChat Pay merchant.
    if mp_settings is None and settings.sandbox and settings.wechatpay is None:
        from payments.sandbox import compose

        keys = compose.load_or_create_keys(INSTANCE / "sandbox")
        mp_settings = MiniProgramSettings(**compose.miniprogram_settings(keys,
                                                                        settings.sandbox_url))
    app.extensions[MINIPROGRAM_KEY] = mp_settings
    app.config.update(
        API_TITLE="Dianfei mini-program API", API_VERSION="v1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=URL_PREFIX, OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={"servers": [{"url": "/"}], "components": {"securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer"}}}},
    )
    from portal.miniprogram import readings  # noqa: F401  (its routes are on blp)

    api = MiniProgramApi(app)
    api.register_converter(IdConverter, lambda _converter: {"type": "integer", "minimum": 1,
                                                            "maximum": MAX_ID})
    api.register_blueprint(blp)

"""Customer payments: pay one bill, all owed bills or a top-up through an enabled channel; the
checkout page (WeChat QR, Alipay link, card form); the return page (queries the channel once);
receipts; payment history. Every route checks that the account is linked to the signed-in
customer and answers 404 otherwise."""

from __future__ import annotations

from urllib.parse import urlsplit

import segno
import sqlalchemy as sa
from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import RadioField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from payments import service
from payments.channels.base import Scene
from payments.models import PaymentOrder
from payments.states import OPEN, OrderStatus
from portal import context
from portal.accounts import service as accounts
from portal.bills.models import Bill
from portal.extensions import db
from portal.i18n import message_for
from portal.kernel.errors import DomainError, NotFound
from portal.kernel.money import MoneyFormatError, parse_yuan
from portal.ledger import service as ledger
from portal.payment_channels import channels, notify_url
from portal.security import CONTENT_SECURITY_POLICY

bp = Blueprint("pay", __name__)

CHANNEL_LABELS = {"wechat": _l("WeChat Pay"), "alipay": _l("Alipay"), "stripe": _l("Bank card")}
STATUS_LABELS = {
    OrderStatus.CREATED: _l("Waiting for payment"), OrderStatus.PENDING: _l("Waiting for payment"),
    OrderStatus.UNKNOWN: _l("Checking with the payment channel"),
    OrderStatus.SUCCEEDED: _l("Paid"), OrderStatus.FAILED: _l("Failed"),
    OrderStatus.CLOSED: _l("Cancelled (not paid)"),
    OrderStatus.REVIEW: _l("Being checked by staff"),
}
MOBILE_HINTS = ("Mobile", "Android", "iPhone")


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _topup(form: FlaskForm, field: StringField) -> None:
    text = (field.data or "").strip()
    if not text:
        field.data = "0"
        return
    try:
        fen = parse_yuan(text)
    except MoneyFormatError as exc:
        raise ValidationError(_l("Enter an amount in yuan with at most two decimals, e.g. "
                                 "50 or 50.00.")) from exc
    if fen < 0 or fen > service.MAX_TOPUP_FEN:
        raise ValidationError(_l("A top-up is between 0.01 and 100000 yuan."))


class PayForm(FlaskForm):
    bills = MultiCheckboxField(_l("Bills to pay"), coerce=int)
    topup = StringField(_l("Add to the prepaid balance (yuan, optional)"),
                        [Length(max=12), _topup])
    channel = RadioField(_l("Pay with"), [DataRequired(_l("Choose how to pay."))])


def _owned_order(order_no: str) -> PaymentOrder:
    order = service.order_by_no(db.session, order_no[:40])
    if order is None or not accounts.is_linked(db.session, current_user.id, order.account_id):
        raise NotFound()
    return order


def _scene() -> Scene:
    agent = request.headers.get("User-Agent", "")
    return Scene.MOBILE if any(hint in agent for hint in MOBILE_HINTS) else Scene.DESKTOP


@bp.route("/accounts/<id:account_id>/pay", methods=["GET", "POST"])
@login_required
def pay(account_id: int) -> ResponseReturnValue:
    account = accounts.owned_account(db.session, current_user.id, account_id)
    owed = ledger.owed_bills(db.session, account.id)
    enabled = channels()
    form = PayForm()
    form.bills.choices = [(b.id, b.period) for b, _a in owed]
    form.channel.choices = [(name, str(CHANNEL_LABELS[name])) for name in enabled]
    if request.method == "GET":
        wanted = request.args.get("bill", type=int)
        ids = [b.id for b, _a in owed]
        form.bills.data = [wanted] if wanted in ids else ids
        if enabled:
            form.channel.data = next(iter(enabled))
    elif form.validate_on_submit():
        settings = context.settings()
        clock = context.clock()
        try:
            order = service.create_order(
                db.session, clock, account_id=account.id, customer_id=current_user.id,
                channel=form.channel.data, scene=_scene(), bill_ids=form.bills.data or [],
                topup_fen=parse_yuan(form.topup.data or "0"),
                lifetime=settings.payments.lifetime,
                first_query_after=settings.payments.backoff(0))
            service.start_checkout(
                db.session, clock, enabled[form.channel.data], order,
                description=_("Electricity account %(no)s", no=account.account_no),
                notify_url=notify_url(settings, order.channel),
                return_url=f"{settings.public_url.rstrip('/')}"
                           f"{url_for('pay.returned', order_no=order.order_no)}")
        except DomainError as exc:
            db.session.rollback()
            form.form_errors.append(message_for(exc))
        else:
            return redirect(url_for("pay.checkout", order_no=order.order_no))
    return render_template("web/pay.html", form=form, account=account, owed=owed,
                           labels=CHANNEL_LABELS,
                           prepaid=ledger.prepaid_balance(db.session, account.id),
                           ), 400 if form.errors or form.form_errors else 200


def _card_policy(js_url: str) -> str:
    parts = urlsplit(js_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    extra = {"script-src": origin, "frame-src": origin, "connect-src": origin}
    if parts.netloc == "js.stripe.com":  # Stripe's documented policy for Stripe.js
        extra = {"script-src": "https://js.stripe.com",
                 "frame-src": "https://js.stripe.com https://hooks.stripe.com",
                 "connect-src": "https://api.stripe.com"}
    out = []
    for directive in CONTENT_SECURITY_POLICY.split("; "):
        name = directive.split(" ", 1)[0]
        out.append(f"{directive} {extra.pop(name)}" if name in extra else directive)
    out += [f"{name} {value}" for name, value in extra.items()]
    return "; ".join(out)


@bp.get("/pay/<order_no>")
@login_required
def checkout(order_no: str) -> ResponseReturnValue:
    order = _owned_order(order_no)
    if order.status == OrderStatus.SUCCEEDED:
        return redirect(url_for("pay.receipt", order_no=order.order_no))
    saved = order.checkout or {}
    qr = None
    if order.status in OPEN and saved.get("code_url"):
        qr = Markup(segno.make(saved["code_url"], error="m").svg_inline(scale=5))  # noqa: S704
    channel = channels().get(order.channel)
    html = render_template("web/pay_checkout.html", order=order, checkout=saved, qr=qr,
                           status=STATUS_LABELS[order.status], labels=CHANNEL_LABELS,
                           sandbox=context.settings().sandbox, channel=channel,
                           is_open=order.status in OPEN,
                           return_url=f"{context.settings().public_url.rstrip('/')}"
                                      f"{url_for('pay.returned', order_no=order.order_no)}")
    response = Response(html)
    stripe_settings = getattr(channel, "settings", None)
    if order.channel == "stripe" and stripe_settings is not None:
        response.headers["Content-Security-Policy"] = _card_policy(stripe_settings.js_url)
    return response


@bp.get("/pay/<order_no>/return")
@login_required
def returned(order_no: str) -> ResponseReturnValue:
    """Back from the channel: ask it once, so the customer sees "paid" without waiting for the
    notification (the notification and the janitor remain the source of truth)."""
    order = _owned_order(order_no)
    channel = channels().get(order.channel)
    if channel is not None:
        service.refresh_from_channel(db.session, context.clock(), channel, order,
                                     context.settings().zone)
    if order.status == OrderStatus.SUCCEEDED:
        flash(_("Payment received. Thank you!"), "success")
        return redirect(url_for("pay.receipt", order_no=order.order_no))
    return redirect(url_for("pay.checkout", order_no=order.order_no))


@bp.get("/pay/<order_no>/receipt")
@login_required
def receipt(order_no: str) -> ResponseReturnValue:
    order = _owned_order(order_no)
    if order.status != OrderStatus.SUCCEEDED:
        return redirect(url_for("pay.checkout", order_no=order.order_no))
    account = accounts.owned_account(db.session, current_user.id, order.account_id)
    covered = {c.bill_id: c for c in order.bills}
    bills = list(db.session.scalars(sa.select(Bill).where(Bill.id.in_(covered))
                                    .order_by(Bill.period)))
    return render_template("web/pay_receipt.html", order=order, account=account, bills=bills,
                           covered=covered, labels=CHANNEL_LABELS, zone=context.settings().zone)


@bp.get("/accounts/<id:account_id>/payments")
@login_required
def history(account_id: int) -> ResponseReturnValue:
    account = accounts.owned_account(db.session, current_user.id, account_id)
    orders = list(db.session.scalars(
        sa.select(PaymentOrder).where(PaymentOrder.account_id == account.id)
        .order_by(PaymentOrder.created_at.desc(), PaymentOrder.id.desc()).limit(100)))
    return render_template("web/payments.html", account=account, orders=orders,
                           statuses=STATUS_LABELS, labels=CHANNEL_LABELS,
                           zone=context.settings().zone)

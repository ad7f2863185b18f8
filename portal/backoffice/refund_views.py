"""Back-office refund pages, on the back office's blueprint: a collector requests a refund of a
paid order of an account in their districts; a second member (supervisor or admin) approves it
(or one who may approve declines it, with a reason). An approved refund is sent to the channel
at once (``payments.service.send_refund``); one the channel has not settled stays ``pending``
and the payment janitor pushes it on (same refund number).

Every query goes through ``portal.backoffice.refunds`` (district scoping: another district's
order or refund is 404). Who requested, approved or declined, and when, are the refund's own
columns.
"""

from __future__ import annotations

from datetime import timedelta

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from payments import service as payments
from payments.models import Refund
from payments.states import RefundStatus
from portal import context
from portal.accounts.models import ElectricityAccount
from portal.backoffice import refunds
from portal.backoffice.auth import current_staff, require
from portal.backoffice.forms import ConfirmForm, RefundDeclineForm, RefundRequestForm
from portal.backoffice.models import Permission
from portal.backoffice.views import bp
from portal.extensions import db
from portal.i18n import message_for
from portal.kernel.errors import DomainError
from portal.payment_channels import channels
from portal.web.payments import CHANNEL_LABELS
from portal.web.payments import STATUS_LABELS as ORDER_STATUS_LABELS

REFUND_STATUS_LABELS = {
    RefundStatus.REQUESTED: _l("Awaiting approval"),
    RefundStatus.APPROVED: _l("Approved, not sent yet"),
    RefundStatus.PENDING: _l("Sent, waiting for the channel"),
    RefundStatus.SUCCEEDED: _l("Refunded"),
    RefundStatus.FAILED: _l("Failed"),
    RefundStatus.DECLINED: _l("Declined"),
}


@bp.app_context_processor
def _refund_labels() -> dict[str, object]:
    return {"refund_status_labels": REFUND_STATUS_LABELS,
            "order_status_labels": ORDER_STATUS_LABELS, "channel_labels": CHANNEL_LABELS,
            "local_zone": context.settings().zone}


@bp.get("/refunds")
@require(Permission.REQUEST_REFUND)
def refund_list() -> ResponseReturnValue:
    staff = current_staff()
    waiting = refunds.awaiting_approval(db.session, staff)
    recent = refunds.recent_refunds(db.session, staff)
    return render_template("backoffice/refunds.html", waiting=waiting, recent=recent,
                           names=refunds.staff_names(db.session, waiting + recent))


@bp.route("/orders/<id:order_id>/refund", methods=["GET", "POST"])
@require(Permission.REQUEST_REFUND)
def refund_new(order_id: int) -> ResponseReturnValue:
    staff = current_staff()
    row = refunds.get_scoped_order(db.session, staff, order_id)
    form = RefundRequestForm()
    status = 200
    if form.validate_on_submit():
        try:
            refund = refunds.request(db.session, context.clock(), staff, row.order,
                                     amount_fen=form.amount_fen, reason=form.reason.data)
        except DomainError as exc:
            db.session.rollback()
            form.form_errors.append(message_for(exc))
            status = exc.status
        else:
            db.session.commit()
            flash(_("Refund %(no)s is requested. A second member of staff must approve it.",
                    no=refund.refund_no), "success")
            return redirect(url_for("backoffice.refund_detail", refund_id=refund.id))
    elif form.errors:
        status = 400
    account = db.session.get(ElectricityAccount, row.order.account_id)
    return render_template("backoffice/refund_form.html", row=row, account=account,
                           form=form), status


def _detail(refund: Refund, error: str | None = None,
            decline_form: RefundDeclineForm | None = None) -> str:
    return render_template("backoffice/refund.html", refund=refund, error=error,
                           account=db.session.get(ElectricityAccount, refund.order.account_id),
                           names=refunds.staff_names(db.session, [refund]),
                           confirm=ConfirmForm(), decline_form=decline_form or RefundDeclineForm())


@bp.get("/refunds/<id:refund_id>")
@require(Permission.REQUEST_REFUND)
def refund_detail(refund_id: int) -> ResponseReturnValue:
    return _detail(refunds.get_scoped_refund(db.session, current_staff(), refund_id))


@bp.post("/refunds/<id:refund_id>/approve")
@require(Permission.APPROVE_REFUND)
def refund_approve(refund_id: int) -> ResponseReturnValue:
    """Approve (CSRFProtect has checked the token), then send at once: the refund is
    ``pending`` before the channel hears of it, and the janitor retries what is left."""
    staff = current_staff()
    refund = refunds.get_scoped_refund(db.session, staff, refund_id)
    enabled = channels()
    clock = context.clock()
    try:
        refunds.approve(db.session, clock, staff, refund, enabled)
    except DomainError as exc:
        db.session.rollback()
        return _detail(refund, error=message_for(exc)), exc.status
    db.session.commit()
    settings = context.settings()
    sent = payments.send_refund(db.session, clock, enabled[refund.order.channel], refund,
                                timedelta(seconds=settings.payments.refund_retry_seconds),
                                settings.zone)
    flash(_("Refund %(no)s is approved and sent: %(status)s.", no=refund.refund_no,
            status=REFUND_STATUS_LABELS[sent]), "success" if sent != RefundStatus.FAILED
          else "error")
    return redirect(url_for("backoffice.refund_detail", refund_id=refund.id))


@bp.post("/refunds/<id:refund_id>/decline")
@require(Permission.APPROVE_REFUND)
def refund_decline(refund_id: int) -> ResponseReturnValue:
    """Decide against a requested refund, with a reason; nothing is sent."""
    staff = current_staff()
    refund = refunds.get_scoped_refund(db.session, staff, refund_id)
    form = RefundDeclineForm()
    if not form.validate_on_submit():
        return _detail(refund, decline_form=form), 400
    try:
        refunds.decline(db.session, context.clock(), staff, refund, form.reason.data)
    except DomainError as exc:
        db.session.rollback()
        return _detail(refund, error=message_for(exc)), exc.status
    db.session.commit()
    flash(_("Refund %(no)s is declined; nothing was sent.", no=refund.refund_no), "success")
    return redirect(url_for("backoffice.refund_detail", refund_id=refund.id))

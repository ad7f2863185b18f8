"""Review pages (核), on the back office's blueprint: the review menu (bills held for review,
refunds awaiting a second approver, flagged self-readings), and the bill review queue with its
two decisions (``portal.backoffice.bill_review``). Another district's bill is 404.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from billing_adapter.local import bill_run
from billing_adapter.local.system import LocalBillingSystem
from billing_adapter.local.tariffs import TariffBook
from portal import context
from portal.backoffice import bill_review, refunds
from portal.backoffice.auth import current_staff, require, signed_in
from portal.backoffice.forms import BillApproveForm, BillCorrectForm
from portal.backoffice.models import Permission
from portal.backoffice.views import bp
from portal.billing import billing_system
from portal.bills.models import Bill, BillStatus
from portal.extensions import db
from portal.i18n import message_for
from portal.kernel.errors import DomainError
from portal.messages import review_reason_text

READINGS_QUEUE = "/staff/readings"  # the readings branch's queue of flagged self-readings


@bp.get("/review")
@signed_in
def review_menu() -> ResponseReturnValue:
    staff = current_staff()
    held = (len(bill_review.queue(db.session, staff))
            if staff.can(Permission.REVIEW_BILLS) else None)
    waiting = (len(refunds.awaiting_approval(db.session, staff))
               if staff.can(Permission.REQUEST_REFUND) else None)
    return render_template("backoffice/review.html", staff=staff, held=held, waiting=waiting,
                           readings_url=READINGS_QUEUE)


@bp.get("/bills/review")
@require(Permission.REVIEW_BILLS)
def bill_review_queue() -> ResponseReturnValue:
    held = bill_review.queue(db.session, current_staff())
    return render_template("backoffice/bill_review_queue.html", bills=held,
                           reasons={b.id: review_reason_text(b.review_reason) for b in held})


def _correct_form(bill: Bill, from_request: bool) -> BillCorrectForm:
    form = BillCorrectForm() if from_request else BillCorrectForm(formdata=None)
    form.meter_id.choices = [(row.meter.id, row.meter.meter_no)
                             for row in bill_review.meter_readings(db.session, bill)]
    return form


def _detail(bill: Bill, *, approve_form: BillApproveForm | None = None,
            correct_form: BillCorrectForm | None = None, error: str | None = None,
            status: int = 200) -> ResponseReturnValue:
    newest = bill_review.is_newest(db.session, bill)
    return render_template(
        "backoffice/bill_review.html", bill=bill, account=bill.account, error=error,
        reasons=review_reason_text(bill.review_reason),
        readings=bill_review.meter_readings(db.session, bill),
        open_decision=newest and bill.status is BillStatus.PENDING_REVIEW,
        approve_form=approve_form or BillApproveForm(formdata=None),
        correct_form=correct_form or _correct_form(bill, False)), status


@bp.get("/bills/review/<id:bill_id>")
@require(Permission.REVIEW_BILLS)
def bill_review_detail(bill_id: int) -> ResponseReturnValue:
    return _detail(bill_review.get_scoped_bill(db.session, current_staff(), bill_id))


@bp.post("/bills/review/<id:bill_id>/approve")
@require(Permission.REVIEW_BILLS)
def bill_review_approve(bill_id: int) -> ResponseReturnValue:
    staff = current_staff()
    bill = bill_review.get_scoped_bill(db.session, staff, bill_id)
    form = BillApproveForm()
    if not form.validate_on_submit():
        return _detail(bill, approve_form=form, status=400)
    try:
        bill_review.approve(db.session, context.clock(), staff, bill, form.note.data)
    except DomainError as exc:
        db.session.rollback()
        return _detail(bill, approve_form=form, error=message_for(exc), status=exc.status)
    db.session.commit()
    flash(_("The bill of %(period)s is issued; the customer can see and pay it.",
            period=bill.period), "success")
    return redirect(url_for("backoffice.bill_review_queue"))


@bp.post("/bills/review/<id:bill_id>/correct")
@require(Permission.REVIEW_BILLS)
def bill_review_correct(bill_id: int) -> ResponseReturnValue:
    staff = current_staff()
    bill = bill_review.get_scoped_bill(db.session, staff, bill_id)
    form = _correct_form(bill, True)
    if not form.validate_on_submit():
        return _detail(bill, correct_form=form, status=400)
    try:
        if not isinstance(billing_system(db.session), LocalBillingSystem):
            raise bill_review.ExternalBilling()
        new = bill_review.correct(
            db.session, context.clock(), staff, bill, TariffBook.from_db(db.session),
            bill_run.RunConfig.from_settings(context.settings()), meter_id=form.meter_id.data,
            value_kwh=form.decimal_value(), registers=form.registers(), reason=form.reason.data)
    except DomainError as exc:
        db.session.rollback()
        return _detail(bill, correct_form=form, error=message_for(exc), status=exc.status)
    db.session.commit()
    if new.status is BillStatus.ISSUED:
        flash(_("The bill is recomputed from the corrected reading and issued."), "success")
        return redirect(url_for("backoffice.bill_review_queue"))
    flash(_("The bill is recomputed from the corrected reading and is held again: check the "
            "new reasons."), "info")
    return redirect(url_for("backoffice.bill_review_detail", bill_id=new.id))

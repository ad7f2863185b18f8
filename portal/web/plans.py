"""Customer payment plans: ask for a plan for chosen unpaid bills of a linked account, follow its
status and installment schedule, accept or refuse the proposed terms, pay the next installment
through the normal payment pages, and see the attachment. A plan of an account not linked to the
signed-in customer is 404. Thin: parse, call ``portal.plans.service``, render."""

from __future__ import annotations

import io
from datetime import timedelta

from flask import Blueprint, flash, redirect, render_template, send_file, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, DateField, RadioField, SelectField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length

from payments import service as payments
from portal import context
from portal.accounts import service as accounts
from portal.extensions import db
from portal.i18n import message_for
from portal.kernel.errors import DomainError
from portal.payment_channels import channels, notify_url
from portal.plans import service as plans
from portal.plans.models import PaymentPlan, PlanStatus
from portal.web.payments import CHANNEL_LABELS, MultiCheckboxField, _scene

bp = Blueprint("plans", __name__)

PLAN_STATUS_LABELS = {
    PlanStatus.REQUESTED: _l("Requested, waiting for staff"),
    PlanStatus.AWAITING_APPROVAL: _l("Waiting for a supervisor's approval"),
    PlanStatus.PROPOSED: _l("Terms proposed: waiting for your answer"),
    PlanStatus.ACTIVE: _l("Running"),
    PlanStatus.COMPLETED: _l("Completed"),
    PlanStatus.DEFAULTED: _l("Ended: an installment was missed"),
    PlanStatus.DECLINED: _l("Declined"),
    PlanStatus.CANCELLED: _l("Cancelled"),
}


@bp.app_context_processor
def _plan_labels() -> dict[str, object]:
    return {"plan_status_labels": PLAN_STATUS_LABELS}


class PlanRequestForm(FlaskForm):
    bills = MultiCheckboxField(_l("Unpaid bills to put in the plan"), coerce=int)
    installments = SelectField(_l("Number of monthly installments"), coerce=int)
    first_due_on = DateField(_l("First installment due on"),
                             [InputRequired(_l("Choose the first due date."))])
    reason = TextAreaField(_l("Why you need a plan"), [
        DataRequired(_l("Tell us briefly why you need a plan.")), Length(max=1000)])
    hardship = BooleanField(_l("I am a resident in financial hardship"))
    attachment = FileField(_l("Supporting document (optional: PDF, PNG or JPEG)"))


class PlanPayForm(FlaskForm):
    channel = RadioField(_l("Pay with"), [DataRequired(_l("Choose how to pay."))])


class ConfirmForm(FlaskForm):
    pass


def _owned(plan_id: int) -> PaymentPlan:
    return plans.owned_plan(db.session, current_user.id, plan_id)


@bp.get("/plans")
@login_required
def index() -> ResponseReturnValue:
    linked = accounts.linked_accounts(db.session, current_user.id)
    return render_template("web/plans.html", accounts=linked,
                           plans=plans.customer_plans(db.session, current_user.id),
                           numbers={a.id: a.account_no for a in linked})


@bp.route("/accounts/<id:account_id>/plans/new", methods=["GET", "POST"])
@login_required
def new(account_id: int) -> ResponseReturnValue:
    account = accounts.owned_account(db.session, current_user.id, account_id)
    settings = context.settings()
    policy = settings.plans
    today = context.today()
    eligible = plans.eligible_bills(db.session, account.id)
    form = PlanRequestForm()
    form.bills.choices = [(bill_id, period) for bill_id, period, _a in eligible]
    form.installments.choices = [(n, str(n)) for n in range(2, policy.max_installments + 1)]
    status = 200
    if form.validate_on_submit():
        clock = context.clock()
        attachment = None
        try:
            upload = form.attachment.data
            if upload and upload.filename:
                attachment = plans.store_attachment(
                    settings.plan_attachment_dir, upload.read(policy.attachment_max_bytes + 1),
                    upload.filename, policy.attachment_max_bytes)
            plan = plans.request_plan(
                db.session, clock, policy, settings.zone, customer_id=current_user.id,
                account=account, bill_ids=form.bills.data or [],
                installments=form.installments.data, first_due_on=form.first_due_on.data,
                reason=form.reason.data, hardship=form.hardship.data, attachment=attachment)
        except DomainError as exc:
            db.session.rollback()
            if attachment is not None:
                (settings.plan_attachment_dir / attachment.key).unlink(missing_ok=True)
            form.form_errors.append(message_for(exc))
            status = exc.status
        else:
            db.session.commit()
            flash(_("Your request is sent. We will tell you when staff have looked at it."),
                  "success")
            return redirect(url_for("plans.detail", plan_id=plan.id))
    elif form.is_submitted():
        status = 400
    else:
        form.bills.data = [bill_id for bill_id, _p, _a in eligible]
        form.installments.data = 3
    return render_template("web/plan_new.html", form=form, account=account, eligible=eligible,
                           policy=policy, latest=today + timedelta(
                               days=policy.first_due_within_days),
                           tomorrow=today + timedelta(days=1)), status


def _detail(plan: PaymentPlan, error: str | None = None, pay_form: PlanPayForm | None = None,
            status: int = 200) -> ResponseReturnValue:
    enabled = channels()
    if pay_form is None:
        pay_form = PlanPayForm()
        if enabled:
            pay_form.channel.data = next(iter(enabled))
    pay_form.channel.choices = [(name, str(CHANNEL_LABELS[name])) for name in enabled]
    account = accounts.owned_account(db.session, current_user.id, plan.account_id)
    return render_template(
        "web/plan.html", plan=plan, account=account, error=error, pay_form=pay_form,
        confirm=ConfirmForm(), schedule=plans.plan_schedule(plan),
        next_installment=plans.next_installment(plan),
        owed=plans.covered_owed_fen(db.session, plan), zone=context.settings().zone,
        grace_days=context.settings().plans.grace_days), status


@bp.get("/plans/<id:plan_id>")
@login_required
def detail(plan_id: int) -> ResponseReturnValue:
    plan = _owned(plan_id)
    if plans.settle(db.session, context.clock(), [plan.id]) or plan.status == PlanStatus.ACTIVE:
        db.session.commit()  # an installment paid since: recorded (and the plan completed)
        db.session.refresh(plan)
    return _detail(plan)


def _step(plan_id: int, step: str) -> ResponseReturnValue:
    plan = _owned(plan_id)
    if not ConfirmForm().validate_on_submit():
        return _detail(plan, status=400)
    clock = context.clock()
    try:
        if step == "accept":
            plans.accept(db.session, clock, context.settings().zone, current_user.id, plan)
        else:
            plans.cancel(db.session, clock, current_user.id, plan)
    except DomainError as exc:
        db.session.rollback()
        return _detail(_owned(plan_id), error=message_for(exc), status=exc.status)
    db.session.commit()
    flash(_("The plan is running: pay each installment by its due date.") if step == "accept"
          else _("The plan is cancelled."), "success")
    return redirect(url_for("plans.detail", plan_id=plan.id))


@bp.post("/plans/<id:plan_id>/accept")
@login_required
def accept(plan_id: int) -> ResponseReturnValue:
    return _step(plan_id, "accept")


@bp.post("/plans/<id:plan_id>/cancel")
@login_required
def cancel(plan_id: int) -> ResponseReturnValue:
    return _step(plan_id, "cancel")


@bp.post("/plans/<id:plan_id>/installments/<int:seq>/pay")
@login_required
def pay(plan_id: int, seq: int) -> ResponseReturnValue:
    """Open a payment order for the installment and go to the normal checkout page."""
    plan = _owned(plan_id)
    enabled = channels()
    form = PlanPayForm()
    form.channel.choices = [(name, str(CHANNEL_LABELS[name])) for name in enabled]
    if not form.validate_on_submit():
        return _detail(plan, pay_form=form, status=400)
    settings = context.settings()
    clock = context.clock()
    account = accounts.owned_account(db.session, current_user.id, plan.account_id)
    try:
        order = plans.open_installment_order(
            db.session, clock, current_user.id, plan, seq, channel=form.channel.data,
            scene=_scene(), lifetime=settings.payments.lifetime,
            first_query_after=settings.payments.backoff(0))
        payments.start_checkout(
            db.session, clock, enabled[form.channel.data], order,
            description=_("Electricity account %(no)s, plan installment %(seq)s",
                          no=account.account_no, seq=seq),
            notify_url=notify_url(settings, order.channel),
            return_url=f"{settings.public_url.rstrip('/')}"
                       f"{url_for('pay.returned', order_no=order.order_no)}")
    except DomainError as exc:
        db.session.rollback()
        return _detail(_owned(plan_id), error=message_for(exc), pay_form=form,
                       status=exc.status)
    return redirect(url_for("pay.checkout", order_no=order.order_no))


@bp.get("/plans/<id:plan_id>/attachment")
@login_required
def attachment(plan_id: int) -> ResponseReturnValue:
    plan = _owned(plan_id)
    path = plans.attachment_path(context.settings().plan_attachment_dir, plan)
    return send_file(io.BytesIO(path.read_bytes()), mimetype=plan.attachment_type,
                     as_attachment=True,
                     download_name=plan.attachment_name or path.name)

"""Back-office payment plan pages, on the back office's blueprint: the plans of the member's
districts (another district's plan is 404), a plan's request, attachment and schedule, and the
steps: a collector proposes terms (or the request's own) or declines; above the approval
threshold a supervisor approves (or declines). Every step is audit-logged by the service in the
same transaction, with who, when and why on the plan itself."""

from __future__ import annotations

import io

from flask import flash, redirect, render_template, request, send_file, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Length

from portal import context
from portal.accounts.models import ElectricityAccount
from portal.backoffice.auth import current_staff, require
from portal.backoffice.forms import ConfirmForm
from portal.backoffice.models import Permission
from portal.backoffice.views import bp
from portal.bills.models import Bill
from portal.extensions import db
from portal.i18n import message_for
from portal.kernel.errors import DomainError
from portal.plans import service as plans
from portal.plans.models import PaymentPlan, PlanStatus
from portal.web.plans import PLAN_STATUS_LABELS


class ProposeForm(FlaskForm):
    installments = SelectField(_l("Number of monthly installments"), coerce=int)
    first_due_on = DateField(_l("First installment due on"),
                             [InputRequired(_l("Choose the first due date."))])
    note = StringField(_l("Note to the customer (optional)"), [Length(max=1000)])


class PlanDeclineForm(FlaskForm):
    reason = StringField(_l("Why it is declined (the customer reads this)"), [
        DataRequired(_l("Say why the plan is declined.")), Length(max=1000)])


class ApproveForm(FlaskForm):
    note = StringField(_l("Note (optional)"), [Length(max=1000)])


def _propose_form(plan: PaymentPlan, from_request: bool = False) -> ProposeForm:
    form = ProposeForm() if from_request else ProposeForm(
        formdata=None, installments=plan.installment_count, first_due_on=plan.first_due_on)
    form.installments.choices = [
        (n, str(n)) for n in range(2, context.settings().plans.max_installments + 1)]
    return form


def _detail(plan: PaymentPlan, error: str | None = None, propose_form: ProposeForm | None = None,
            decline_form: PlanDeclineForm | None = None,
            status: int = 200) -> ResponseReturnValue:
    bills = {b.id: b for b in db.session.query(Bill).filter(
        Bill.id.in_([pb.bill_id for pb in plan.bills]))}
    settings = context.settings()
    return render_template(
        "backoffice/plan.html", plan=plan, error=error, bills=bills,
        account=db.session.get(ElectricityAccount, plan.account_id),
        names=plans.staff_names(db.session, plan), schedule=plans.plan_schedule(plan),
        owed=plans.covered_owed_fen(db.session, plan),
        needs_approval=plan.total_fen > settings.plans.approval_threshold_fen,
        threshold=settings.plans.approval_threshold_fen, local_zone=settings.zone,
        propose_form=propose_form or _propose_form(plan),
        decline_form=decline_form or PlanDeclineForm(), approve_form=ApproveForm(),
        confirm=ConfirmForm()), status


@bp.get("/plans")
@require(Permission.MANAGE_PLANS)
def plan_list() -> ResponseReturnValue:
    wanted = request.args.get("status", "")
    status = PlanStatus(wanted) if wanted in {s.value for s in PlanStatus} else None
    rows = plans.staff_worklist(db.session, current_staff(), status)
    accounts = {a.id: a for a in db.session.query(ElectricityAccount).filter(
        ElectricityAccount.id.in_({p.account_id for p in rows}))}
    return render_template("backoffice/plans.html", plans=rows, accounts=accounts,
                           status=status, statuses=list(PlanStatus),
                           labels=PLAN_STATUS_LABELS)


@bp.get("/plans/<id:plan_id>")
@require(Permission.MANAGE_PLANS)
def plan_detail(plan_id: int) -> ResponseReturnValue:
    return _detail(plans.get_scoped_plan(db.session, current_staff(), plan_id))


@bp.post("/plans/<id:plan_id>/propose")
@require(Permission.MANAGE_PLANS)
def plan_propose(plan_id: int) -> ResponseReturnValue:
    staff = current_staff()
    plan = plans.get_scoped_plan(db.session, staff, plan_id)
    form = _propose_form(plan, from_request=True)
    if not form.validate_on_submit():
        return _detail(plan, propose_form=form, status=400)
    settings = context.settings()
    try:
        plans.propose(db.session, context.clock(), settings.plans, settings.zone, staff, plan,
                      installments=form.installments.data, first_due_on=form.first_due_on.data,
                      note=form.note.data or "")
    except DomainError as exc:
        db.session.rollback()
        return _detail(plans.get_scoped_plan(db.session, staff, plan_id),
                       error=message_for(exc), propose_form=form, status=exc.status)
    db.session.commit()
    flash(_("The terms are sent to the customer.") if plan.status == PlanStatus.PROPOSED
          else _("The terms are above the approval threshold: a supervisor must approve "
                 "them."), "success")
    return redirect(url_for("backoffice.plan_detail", plan_id=plan.id))


@bp.post("/plans/<id:plan_id>/approve")
@require(Permission.APPROVE_PLANS)
def plan_approve(plan_id: int) -> ResponseReturnValue:
    staff = current_staff()
    plan = plans.get_scoped_plan(db.session, staff, plan_id)
    form = ApproveForm()
    if not form.validate_on_submit():
        return _detail(plan, status=400)
    try:
        plans.approve(db.session, context.clock(), staff, plan, form.note.data or "")
    except DomainError as exc:
        db.session.rollback()
        return _detail(plans.get_scoped_plan(db.session, staff, plan_id),
                       error=message_for(exc), status=exc.status)
    db.session.commit()
    flash(_("Approved: the terms are sent to the customer."), "success")
    return redirect(url_for("backoffice.plan_detail", plan_id=plan.id))


@bp.post("/plans/<id:plan_id>/decline")
@require(Permission.MANAGE_PLANS)
def plan_decline(plan_id: int) -> ResponseReturnValue:
    staff = current_staff()
    plan = plans.get_scoped_plan(db.session, staff, plan_id)
    form = PlanDeclineForm()
    if not form.validate_on_submit():
        return _detail(plan, decline_form=form, status=400)
    try:
        plans.decline(db.session, context.clock(), staff, plan, form.reason.data)
    except DomainError as exc:
        db.session.rollback()
        return _detail(plans.get_scoped_plan(db.session, staff, plan_id),
                       error=message_for(exc), decline_form=form, status=exc.status)
    db.session.commit()
    flash(_("The plan is declined; the customer is told why."), "success")
    return redirect(url_for("backoffice.plan_detail", plan_id=plan.id))


@bp.get("/plans/<id:plan_id>/attachment")
@require(Permission.MANAGE_PLANS)
def plan_attachment(plan_id: int) -> ResponseReturnValue:
    plan = plans.get_scoped_plan(db.session, current_staff(), plan_id)
    path = plans.attachment_path(context.settings().plan_attachment_dir, plan)
    return send_file(io.BytesIO(path.read_bytes()), mimetype=plan.attachment_type,
                     as_attachment=True,
                     download_name=plan.attachment_name or path.name)

"""Back-office dispute pages, on the back office's blueprint: the queue of a member's districts
(open disputes by SLA due date), a dispute's timeline, and the steps: assign, investigate, ask
the customer, message them, and resolve (uphold, or adjust the bill through the billing system).

Every query goes through ``portal.disputes.service``'s scoped helpers (another district's
dispute is 404); every step is recorded by the service with who, when and why, audited, and
committed here in one transaction with its outbox message.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from portal import context
from portal.backoffice.auth import current_staff, require
from portal.backoffice.models import Permission
from portal.backoffice.views import bp
from portal.billing import billing_system
from portal.disputes import service as disputes
from portal.disputes.models import DISPUTE_MACHINE, Dispute, DisputeStatus
from portal.extensions import db
from portal.i18n import message_for
from portal.kernel.errors import DomainError
from portal.kernel.money import MoneyFormatError, parse_yuan
from portal.web.disputes import DISPUTE_STATUS_LABELS, send_attachment

TEXT = [Length(max=2000, message=_l("Use at most 2000 characters."))]


def _required(message: str) -> list[object]:
    return [DataRequired(message), *TEXT]


class AssignForm(FlaskForm):
    assignee = SelectField(_l("Assign to"), coerce=int, validators=[
        DataRequired(_l("Choose who handles the dispute."))])
    note = StringField(_l("Note (optional)"), [Optional(), *TEXT])


class InvestigateForm(FlaskForm):
    note = TextAreaField(_l("What you will check"),
                         _required(_l("Say what you will check.")))


class AskForm(FlaskForm):
    question = TextAreaField(_l("Question to the customer"),
                             _required(_l("Write the question the customer should answer.")))


class MessageForm(FlaskForm):
    body = TextAreaField(_l("Message to the customer"),
                         _required(_l("Write the message.")))


class UpholdForm(FlaskForm):
    reason = TextAreaField(_l("Why the bill stands"),
                           _required(_l("Give the reason the customer will read.")))


class AdjustForm(FlaskForm):
    direction = RadioField(_l("Adjustment"), choices=[
        SelectChoice("credit", _l("Credit (the customer owes less)")),
        SelectChoice("debit", _l("Debit (the customer owes more)"))],
        validators=[DataRequired(_l("Choose credit or debit."))])
    amount = StringField(_l("Amount (yuan)"), [
        DataRequired(_l("Enter the amount in yuan, e.g. 25.00.")),
        Length(max=16, message=_l("Enter the amount in yuan, e.g. 25.00."))])
    reason = TextAreaField(_l("Why the bill changes"),
                           _required(_l("Give the reason the customer will read.")))

    def amount_fen(self) -> int | None:
        """Signed fen (a credit is negative), or None with an error on the field."""
        try:
            fen = parse_yuan(self.amount.data.strip())
        except MoneyFormatError:
            fen = 0
        if fen <= 0:
            self.amount.errors = [_("Enter an amount above 0 in yuan, e.g. 25.00.")]
            return None
        return -fen if self.direction.data == "credit" else fen


# the status each step moves to: its form is shown when the dispute may make that move
STEP_TARGETS = {"investigate": DisputeStatus.INVESTIGATING,
                "ask": DisputeStatus.AWAITING_CUSTOMER, "uphold": DisputeStatus.UPHELD,
                "adjust": DisputeStatus.ADJUSTED}
FORMS = {"assign": AssignForm, "investigate": InvestigateForm, "ask": AskForm,
         "message": MessageForm, "uphold": UpholdForm, "adjust": AdjustForm}


def _scoped(dispute_id: int) -> Dispute:
    return disputes.get_scoped_dispute(db.session, current_staff(), dispute_id)


def _detail(dispute: Dispute, failed: FlaskForm | None = None, error: str | None = None) -> str:
    forms = {name: cls(formdata=None) for name, cls in FORMS.items()}
    moves = DISPUTE_MACHINE.moves[dispute.status]
    shown = {"assign", "message"} | {name for name, target in STEP_TARGETS.items()
                                     if target in moves}
    if failed is not None:
        name = next(n for n, c in FORMS.items() if type(failed) is c)
        forms[name] = failed
        shown.add(name)
    assignees = disputes.eligible_assignees(db.session, dispute)
    forms["assign"].assignee.choices = [SelectChoice(m.id, m.display_name)
                                        for m in assignees]
    if failed is None:
        forms["assign"].assignee.data = dispute.assigned_to_id or current_staff().id
    diff = (disputes.compare(dispute.bill, dispute.corrected_bill)
            if dispute.corrected_bill is not None else None)
    names = disputes.staff_names(db.session, [e.staff_id for e in dispute.events]
                                 + [dispute.assigned_to_id, dispute.resolved_by_id])
    return render_template("backoffice/dispute.html", dispute=dispute, forms=forms, diff=diff,
                           names=names, error=error, shown=shown,
                           is_open=not DISPUTE_MACHINE.is_final(dispute.status),
                           overdue=(not DISPUTE_MACHINE.is_final(dispute.status)
                                    and context.today() > dispute.sla_due_on))


@bp.get("/disputes")
@require(Permission.HANDLE_DISPUTES)
def dispute_queue() -> ResponseReturnValue:
    show_all = request.args.get("all") == "1"
    rows = disputes.staff_queue(db.session, current_staff(), open_only=not show_all)
    return render_template("backoffice/disputes.html", disputes=rows, show_all=show_all,
                           today=context.today(),
                           names=disputes.staff_names(db.session,
                                                      [d.assigned_to_id for d in rows]))


@bp.get("/disputes/<id:dispute_id>")
@require(Permission.HANDLE_DISPUTES)
def dispute_detail(dispute_id: int) -> ResponseReturnValue:
    return _detail(_scoped(dispute_id))


def _step(dispute_id: int, name: str) -> ResponseReturnValue:
    """Validate the step's form, run it, commit with its audit and outbox rows, or say why not
    (400 for the form, the error's status for a refused step: nothing half-written)."""
    staff, clock = current_staff(), context.clock()
    dispute = _scoped(dispute_id)
    form = FORMS[name]()
    if name == "assign":
        form.assignee.choices = [SelectChoice(m.id, m.display_name)
                                 for m in disputes.eligible_assignees(db.session, dispute)]
    if not form.validate_on_submit():
        return _detail(dispute, failed=form), 400
    try:
        if name == "assign":
            disputes.assign(db.session, clock, staff, dispute, form.assignee.data,
                            form.note.data or "")
        elif name == "investigate":
            disputes.investigate(db.session, clock, staff, dispute, form.note.data)
        elif name == "ask":
            disputes.request_info(db.session, clock, staff, dispute, form.question.data)
        elif name == "message":
            disputes.message(db.session, clock, staff, dispute, form.body.data)
        elif name == "uphold":
            disputes.uphold(db.session, clock, staff, dispute, form.reason.data)
        else:
            amount = form.amount_fen()
            if amount is None:
                return _detail(dispute, failed=form), 400
            disputes.adjust(db.session, clock, staff, dispute, amount, form.reason.data,
                            billing_system(db.session))
    except DomainError as exc:
        db.session.rollback()
        return _detail(_scoped(dispute_id), failed=form, error=message_for(exc)), exc.status
    db.session.commit()
    flash(_("Saved: %(status)s.", status=_status_text(dispute.status)), "success")
    return redirect(url_for("backoffice.dispute_detail", dispute_id=dispute_id))


def _status_text(status: DisputeStatus) -> str:
    return str(DISPUTE_STATUS_LABELS[status])


@bp.post("/disputes/<id:dispute_id>/assign")
@require(Permission.HANDLE_DISPUTES)
def dispute_assign(dispute_id: int) -> ResponseReturnValue:
    return _step(dispute_id, "assign")


@bp.post("/disputes/<id:dispute_id>/investigate")
@require(Permission.HANDLE_DISPUTES)
def dispute_investigate(dispute_id: int) -> ResponseReturnValue:
    return _step(dispute_id, "investigate")


@bp.post("/disputes/<id:dispute_id>/ask")
@require(Permission.HANDLE_DISPUTES)
def dispute_ask(dispute_id: int) -> ResponseReturnValue:
    return _step(dispute_id, "ask")


@bp.post("/disputes/<id:dispute_id>/message")
@require(Permission.HANDLE_DISPUTES)
def dispute_message(dispute_id: int) -> ResponseReturnValue:
    return _step(dispute_id, "message")


@bp.post("/disputes/<id:dispute_id>/uphold")
@require(Permission.RESOLVE_DISPUTES)
def dispute_uphold(dispute_id: int) -> ResponseReturnValue:
    return _step(dispute_id, "uphold")


@bp.post("/disputes/<id:dispute_id>/adjust")
@require(Permission.RESOLVE_DISPUTES)
def dispute_adjust(dispute_id: int) -> ResponseReturnValue:
    return _step(dispute_id, "adjust")


@bp.get("/disputes/<id:dispute_id>/attachments/<id:attachment_id>")
@require(Permission.HANDLE_DISPUTES)
def dispute_attachment_file(dispute_id: int, attachment_id: int) -> ResponseReturnValue:
    return send_attachment(disputes.attachment_of(_scoped(dispute_id), attachment_id))

"""Customer dispute pages, on the web blueprint: open a dispute on a bill (category, description,
amount, up to three images or PDFs), follow its timeline and SLA due date, reply when staff ask,
withdraw it, and compare an adjusted bill with its corrected version.

Thin: parse, call ``portal.disputes.service``, render. A dispute is shown only to the customer
who opened it (NotFound for anyone else's), its files only through its page's checks.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import MultipleFileField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from portal import context
from portal.disputes import service as disputes
from portal.disputes.models import (
    DISPUTE_MACHINE,
    Dispute,
    DisputeAttachment,
    DisputeCategory,
    DisputeStatus,
    EventKind,
)
from portal.extensions import db
from portal.i18n import message_for
from portal.kernel.errors import DomainError
from portal.kernel.money import MoneyFormatError, parse_yuan
from portal.kernel.uploads import CheckedFile, FileStore
from portal.web.uploads import checked_files, send_stored
from portal.web.views import _owned_bill, bp

CATEGORY_LABELS = {
    DisputeCategory.READING: _l("The meter reading is wrong"),
    DisputeCategory.TARIFF: _l("The wrong tariff or price"),
    DisputeCategory.USAGE: _l("Usage is far from what we used"),
    DisputeCategory.PAYMENT: _l("A payment is missing"),
    DisputeCategory.OTHER: _l("Something else"),
}
DISPUTE_STATUS_LABELS = {
    DisputeStatus.OPEN: _l("Received"),
    DisputeStatus.ASSIGNED: _l("Assigned to staff"),
    DisputeStatus.INVESTIGATING: _l("Being investigated"),
    DisputeStatus.AWAITING_CUSTOMER: _l("Waiting for your reply"),
    DisputeStatus.UPHELD: _l("Resolved: the bill stands"),
    DisputeStatus.ADJUSTED: _l("Resolved: the bill is corrected"),
    DisputeStatus.WITHDRAWN: _l("Withdrawn"),
}
EVENT_LABELS = {
    EventKind.OPENED: _l("Dispute opened"),
    EventKind.ASSIGNED: _l("Assigned"),
    EventKind.INVESTIGATING: _l("Investigation started"),
    EventKind.INFO_REQUESTED: _l("Staff asked for information"),
    EventKind.CUSTOMER_REPLIED: _l("Customer replied"),
    EventKind.STAFF_MESSAGE: _l("Message from staff"),
    EventKind.UPHELD: _l("Resolved: the bill stands"),
    EventKind.ADJUSTED: _l("Resolved: the bill is corrected"),
    EventKind.WITHDRAWN: _l("Withdrawn by the customer"),
}
FILES_HINT = _l("Up to 3 files: photos (JPEG, PNG) or PDF, at most 3 MB each.")


class DisputeForm(FlaskForm):
    category = SelectField(_l("What is wrong?"), choices=[SelectChoice(c.value, label)
                                    for c, label in CATEGORY_LABELS.items()],
                           coerce=DisputeCategory)
    description = TextAreaField(_l("Describe the problem"), [
        DataRequired(_l("Tell us what is wrong with the bill.")),
        Length(max=2000, message=_l("Use at most 2000 characters."))])
    amount = StringField(_l("Disputed amount (yuan, empty for the whole bill)"), [
        Optional(), Length(max=16, message=_l("Enter an amount in yuan, e.g. 52.30."))])
    files = MultipleFileField(_l("Attachments"), description=FILES_HINT)


class ReplyForm(FlaskForm):
    body = TextAreaField(_l("Your reply"), [
        DataRequired(_l("Write your answer.")),
        Length(max=2000, message=_l("Use at most 2000 characters."))])
    files = MultipleFileField(_l("Attachments"), description=FILES_HINT)


class WithdrawForm(FlaskForm):
    reason = StringField(_l("Why (optional)"), [
        Optional(), Length(max=500, message=_l("Use at most 500 characters."))])


@bp.app_context_processor
def _dispute_labels() -> dict[str, object]:
    return {"dispute_status_labels": DISPUTE_STATUS_LABELS,
            "dispute_category_labels": CATEGORY_LABELS, "dispute_event_labels": EVENT_LABELS,
            "local_zone": context.settings().zone}


def store() -> FileStore:
    return FileStore(context.settings().dispute_attachments_dir)


def checked_uploads(form_field: MultipleFileField) -> list[CheckedFile]:
    """The request's files, checked by content; UploadRefused otherwise."""
    return checked_files(form_field.name, disputes.upload_rules(
        context.settings().dispute_attachment_max_bytes))


def send_attachment(attachment: DisputeAttachment) -> ResponseReturnValue:
    """A stored file, by its row (the caller checked who may see it)."""
    return send_stored(store(), attachment.stored_name, attachment.content_type,
                       attachment.original_name)


@bp.route("/bills/<id:bill_id>/dispute", methods=["GET", "POST"])
@login_required
def dispute_new(bill_id: int) -> ResponseReturnValue:
    summary = _owned_bill(bill_id)
    form = DisputeForm()
    status = 200
    if form.validate_on_submit():
        try:
            amount = parse_yuan(form.amount.data.strip()) if form.amount.data else None
        except MoneyFormatError:
            form.amount.errors = [_("Enter an amount in yuan, e.g. 52.30.")]
        else:
            try:
                dispute = disputes.open_dispute(
                    db.session, context.clock(), customer_id=current_user.id,
                    bill=summary.bill, category=form.category.data,
                    description=form.description.data, disputed_fen=amount,
                    files=checked_uploads(form.files), store=store(),
                    sla_working_days=context.settings().dispute_sla_working_days,
                    today=context.today())
            except DomainError as exc:
                db.session.rollback()
                form.form_errors.append(message_for(exc))
                status = exc.status
            else:
                db.session.commit()
                flash(_("Your dispute is received. We answer by %(date)s.",
                        date=dispute.sla_due_on.isoformat()), "success")
                return redirect(url_for("web.dispute_detail", dispute_id=dispute.id))
    if form.errors and status == 200:
        status = 400
    return render_template("web/dispute_new.html", form=form, bill=summary.bill,
                           account=summary.bill.account,
                           existing=disputes.open_dispute_of_bill(db.session, bill_id)), status


@bp.get("/disputes")
@login_required
def dispute_list() -> ResponseReturnValue:
    return render_template("web/disputes.html",
                           disputes=disputes.customer_disputes(db.session, current_user.id))


def _detail(dispute: Dispute, reply_form: ReplyForm | None = None,
            error: str | None = None) -> str:
    diff = (disputes.compare(dispute.bill, dispute.corrected_bill)
            if dispute.corrected_bill is not None else None)
    names = disputes.staff_names(db.session, [e.staff_id for e in dispute.events])
    return render_template("web/dispute.html", dispute=dispute, diff=diff, names=names,
                           reply_form=reply_form or ReplyForm(), withdraw_form=WithdrawForm(),
                           error=error, is_open=not DISPUTE_MACHINE.is_final(dispute.status))


@bp.get("/disputes/<id:dispute_id>")
@login_required
def dispute_detail(dispute_id: int) -> ResponseReturnValue:
    return _detail(disputes.customer_dispute(db.session, current_user.id, dispute_id))


@bp.post("/disputes/<id:dispute_id>/reply")
@login_required
def dispute_reply(dispute_id: int) -> ResponseReturnValue:
    dispute = disputes.customer_dispute(db.session, current_user.id, dispute_id)
    form = ReplyForm()
    if not form.validate_on_submit():
        return _detail(dispute, reply_form=form), 400
    try:
        disputes.reply(db.session, context.clock(), dispute, current_user.id, form.body.data,
                       checked_uploads(form.files), store(), context.settings().zone)
    except DomainError as exc:
        db.session.rollback()
        dispute = disputes.customer_dispute(db.session, current_user.id, dispute_id)
        return _detail(dispute, reply_form=form, error=message_for(exc)), exc.status
    db.session.commit()
    flash(_("Thank you, your reply is sent."), "success")
    return redirect(url_for("web.dispute_detail", dispute_id=dispute_id))


@bp.post("/disputes/<id:dispute_id>/withdraw")
@login_required
def dispute_withdraw(dispute_id: int) -> ResponseReturnValue:
    dispute = disputes.customer_dispute(db.session, current_user.id, dispute_id)
    form = WithdrawForm()
    if not form.validate_on_submit():
        return _detail(dispute), 400
    try:
        disputes.withdraw(db.session, context.clock(), dispute, current_user.id,
                          form.reason.data or "")
    except DomainError as exc:
        db.session.rollback()
        dispute = disputes.customer_dispute(db.session, current_user.id, dispute_id)
        return _detail(dispute, error=message_for(exc)), exc.status
    db.session.commit()
    flash(_("The dispute is withdrawn."), "success")
    return redirect(url_for("web.dispute_detail", dispute_id=dispute_id))


@bp.get("/disputes/<id:dispute_id>/attachments/<id:attachment_id>")
@login_required
def dispute_attachment(dispute_id: int, attachment_id: int) -> ResponseReturnValue:
    dispute = disputes.customer_dispute(db.session, current_user.id, dispute_id)
    return send_attachment(disputes.attachment_of(dispute, attachment_id))

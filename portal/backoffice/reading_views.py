"""Back-office review of flagged self-readings (核), on the back office's blueprint.

An auditor (or supervisor, or admin: permission ``review_readings``) sees the flagged readings of
their districts, oldest first, opens one (its photo, the meter's recent readings, why it was
flagged) and accepts it, rejects it with a reason the customer reads, or corrects the value with
a reason. Every query and decision goes through ``portal.readings.service`` (district scoping:
another district's reading is 404); the decision, its audit row and the customer's notification
are committed together.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import Length, Optional

from portal import context
from portal.backoffice.auth import current_staff, require
from portal.backoffice.models import Permission
from portal.backoffice.service import get_scoped_account
from portal.backoffice.views import bp
from portal.billing import billing_system
from portal.extensions import db
from portal.i18n import message_for
from portal.kernel.errors import DomainError
from portal.messages import reading_flag_text
from portal.readings import service
from portal.readings.models import Reading, ReadingSource, ReadingStatus
from portal.web.readings import send_photo

NOTE = [Optional(), Length(max=255, message=_l("A reason has at most 255 characters."))]
VALUE = [Optional(), Length(max=16, message=_l("A reading has at most 16 characters."))]


class DecisionForm(FlaskForm):
    note = StringField(_l("Reason (the customer reads it)"), NOTE)


class CorrectForm(DecisionForm):
    value_kwh = StringField(_l("Total (kWh)"), VALUE)
    peak_kwh = StringField(_l("Peak (kWh)"), VALUE)
    flat_kwh = StringField(_l("Flat (kWh)"), VALUE)
    valley_kwh = StringField(_l("Valley (kWh)"), VALUE)


@bp.get("/readings")
@require(Permission.REVIEW_READINGS)
def reading_queue() -> ResponseReturnValue:
    rows = service.flagged_for_staff(db.session, current_staff())
    reasons = {row.id: reading_flag_text(row.flag_reason) for row in rows}
    return render_template("backoffice/readings.html", rows=rows, reasons=reasons)


def _page(reading: Reading, status: int = 200, accept: DecisionForm | None = None,
          reject: DecisionForm | None = None,
          correct: CorrectForm | None = None) -> ResponseReturnValue:
    assessed = service.reassess(db.session, context.settings(), reading)
    return render_template(
        "backoffice/reading.html", reading=reading, assessed=assessed,
        reasons=reading_flag_text(reading.flag_reason),
        recent=service.recent_for_meter(db.session, reading.meter_id),
        accept=accept or DecisionForm(formdata=None, prefix="accept"),
        reject=reject or DecisionForm(formdata=None, prefix="reject"),
        correct=correct or CorrectForm(formdata=None, prefix="correct")), status


@bp.get("/readings/<id:reading_id>")
@require(Permission.REVIEW_READINGS)
def reading_detail(reading_id: int) -> ResponseReturnValue:
    return _page(service.get_for_staff(db.session, current_staff(), reading_id))


def _decided(message: str) -> ResponseReturnValue:
    db.session.commit()
    flash(message, "success")
    return redirect(url_for("backoffice.reading_queue"))


def _refused(reading_id: int, exc: DomainError, form: DecisionForm,
             which: str) -> ResponseReturnValue:
    db.session.rollback()
    target = getattr(form, getattr(exc, "field", ""), None)
    (target.errors if target is not None else form.form_errors).append(message_for(exc))
    reading = service.get_for_staff(db.session, current_staff(), reading_id)
    return _page(reading, exc.status, **{which: form})


@bp.post("/readings/<id:reading_id>/accept")
@require(Permission.REVIEW_READINGS)
def reading_accept(reading_id: int) -> ResponseReturnValue:
    staff = current_staff()
    service.get_for_staff(db.session, staff, reading_id)  # 404 first, for another district
    form = DecisionForm(prefix="accept")
    if not form.validate_on_submit():
        return _page(service.get_for_staff(db.session, staff, reading_id), 400, accept=form)
    try:
        service.accept(db.session, context.clock(), staff, reading_id, form.note.data,
                       system=billing_system(db.session))
    except DomainError as exc:
        return _refused(reading_id, exc, form, "accept")
    return _decided(_("The reading is accepted and sent to billing."))


@bp.post("/readings/<id:reading_id>/reject")
@require(Permission.REVIEW_READINGS)
def reading_reject(reading_id: int) -> ResponseReturnValue:
    staff = current_staff()
    service.get_for_staff(db.session, staff, reading_id)
    form = DecisionForm(prefix="reject")
    if not form.validate_on_submit():
        return _page(service.get_for_staff(db.session, staff, reading_id), 400, reject=form)
    try:
        service.reject(db.session, context.clock(), staff, reading_id, form.note.data)
    except DomainError as exc:
        return _refused(reading_id, exc, form, "reject")
    return _decided(_("The reading is rejected; the customer is told why."))


def _kwh(form: CorrectForm, name: str) -> Decimal | None:
    raw = (getattr(form, name).data or "").strip()
    if not raw:
        return None
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise service.InvalidReading("reading_value_not_number", name) from None


@bp.post("/readings/<id:reading_id>/correct")
@require(Permission.REVIEW_READINGS)
def reading_correct(reading_id: int) -> ResponseReturnValue:
    staff = current_staff()
    reading = service.get_for_staff(db.session, staff, reading_id)
    form = CorrectForm(prefix="correct")
    if not form.validate_on_submit():
        return _page(reading, 400, correct=form)
    try:
        entry = service.Entry(reading.meter_id, _kwh(form, "value_kwh"), _kwh(form, "peak_kwh"),
                              _kwh(form, "flat_kwh"), _kwh(form, "valley_kwh"))
        service.correct(db.session, context.clock(), context.settings(), staff, reading_id,
                        entry, form.note.data, system=billing_system(db.session))
    except DomainError as exc:
        return _refused(reading_id, exc, form, "correct")
    return _decided(_("The reading is corrected, accepted and sent to billing."))


@bp.get("/readings/<id:reading_id>/photo")
@require(Permission.REVIEW_READINGS)
def reading_staff_photo(reading_id: int) -> ResponseReturnValue:
    return send_photo(service.photo_for_staff(db.session, current_staff(), reading_id))


class RecordForm(FlaskForm):
    meter_no = SelectField(_l("Meter"), choices=[])
    period = StringField(_l("Period (YYYY-MM)"), [Length(max=7, message=_l(
        "The period must be a month written YYYY-MM, e.g. 2026-11."))])
    read_on = StringField(_l("Read on (YYYY-MM-DD)"), [Length(max=10, message=_l(
        "The date must be written YYYY-MM-DD, e.g. 2026-11-30."))])
    value_kwh = StringField(_l("Total (kWh)"), VALUE)
    peak_kwh = StringField(_l("Peak (kWh)"), VALUE)
    flat_kwh = StringField(_l("Flat (kWh)"), VALUE)
    valley_kwh = StringField(_l("Valley (kWh)"), VALUE)


@bp.route("/accounts/<id:account_id>/readings/new", methods=["GET", "POST"])
@require(Permission.RECORD_READINGS)
def reading_record(account_id: int) -> ResponseReturnValue:
    """A reading taken by staff (a meter reader's round): the same rules as a self-reading."""
    staff = current_staff()
    account = get_scoped_account(db.session, staff, account_id)
    today = context.today()
    form = RecordForm(data={"period": f"{today:%Y-%m}", "read_on": today.isoformat()})
    form.meter_no.choices = [(m.meter_no, m.meter_no) for m in account.meters
                             if m.removed_on is None]
    status = 200
    if form.validate_on_submit():
        raw = {name: getattr(form, name).data for name in (
            "meter_no", "period", "read_on", "value_kwh", "peak_kwh", "flat_kwh", "valley_kwh")}
        try:
            row = service.parse_row({"account_no": account.account_no, **raw})
            reading = service.record(db.session, context.clock(), context.settings(), row,
                                     ReadingSource.STAFF, system=billing_system(db.session),
                                     staff=staff)
        except DomainError as exc:
            db.session.rollback()
            target = getattr(form, getattr(exc, "field", ""), None)
            (target.errors if target is not None else form.form_errors).append(message_for(exc))
            status = exc.status
        else:
            db.session.commit()
            if reading.status is ReadingStatus.ACCEPTED:
                flash(_("The reading is accepted and sent to billing."), "success")
            else:
                flash(_("The reading is saved and flagged for review: %(why)s",
                        why=" ".join(reading_flag_text(reading.flag_reason))), "info")
            return redirect(url_for("backoffice.account", account_id=account.id))
    elif form.errors:
        status = 400
    return render_template("backoffice/reading_record.html", form=form, account=account), status

"""Customer pages for self-reported meter readings (on the ``web`` blueprint).

/readings lists the customer's meters (with the month's reading window) and their readings with
status and reason; /readings/new takes the values and shows the preview (usage, estimated bill,
warnings); /readings/confirm takes the photo and submits. Thin: everything is decided by
``portal.readings.service``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import HiddenField, StringField
from wtforms.validators import Length, Optional

from portal import context
from portal.billing import billing_system
from portal.extensions import db
from portal.i18n import message_for
from portal.kernel.errors import DomainError
from portal.kernel.uploads import UploadRefused
from portal.messages import reading_flag_text
from portal.readings import service
from portal.readings.models import ReadingStatus
from portal.web.uploads import send_stored, sent_files
from portal.web.views import bp

VALUE = [Optional(), Length(max=16, message=_l("A reading has at most 16 characters."))]
REGISTER_FIELDS = ("peak_kwh", "flat_kwh", "valley_kwh")


class ReadingForm(FlaskForm):
    meter_id = HiddenField()
    value_kwh = StringField(_l("Total (kWh)"), VALUE)
    peak_kwh = StringField(_l("Peak (kWh)"), VALUE)
    flat_kwh = StringField(_l("Flat (kWh)"), VALUE)
    valley_kwh = StringField(_l("Valley (kWh)"), VALUE)


class ConfirmForm(ReadingForm):
    photo = FileField(_l("Photo of the meter's display"))


def _decimal(form: ReadingForm, name: str) -> Decimal | None:
    raw = (getattr(form, name).data or "").strip().replace(",", "")
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        getattr(form, name).errors.append(_("Enter a number such as 1234.5 (digits and one "
                                            "decimal point)."))
        return None
    return value


def _entry(form: ReadingForm) -> service.Entry | None:
    try:
        meter_id = int(form.meter_id.data or request.args.get("meter", ""))
    except ValueError:
        abort(404)
    values = {name: _decimal(form, name) for name in ("value_kwh", *REGISTER_FIELDS)}
    if form.errors or any(getattr(form, n).errors for n in values):
        return None
    return service.Entry(meter_id, values["value_kwh"], values["peak_kwh"], values["flat_kwh"],
                         values["valley_kwh"])


def _choice(meter_id: int) -> service.MeterChoice:
    for choice in service.meters_for_customer(db.session, context.clock(), context.settings(),
                                              current_user.id):
        if choice.meter.id == meter_id:
            return choice
    abort(404)


def _show_error(form: ReadingForm, exc: DomainError) -> None:
    """The refusal under the field it names (else above the form). A field of a form that was
    never validated (the confirm step refills a fresh one) still has ``errors == ()``."""
    target = getattr(form, getattr(exc, "field", ""), None)
    if target is None:
        form.form_errors.append(message_for(exc))
    else:
        target.errors = [*target.errors, message_for(exc)]


@bp.get("/readings")
@login_required
def readings() -> ResponseReturnValue:
    choices = service.meters_for_customer(db.session, context.clock(), context.settings(),
                                          current_user.id)
    rows = service.list_for_customer(db.session, current_user.id)
    reasons = {row.id: reading_flag_text(row.flag_reason) for row in rows if row.flag_reason}
    return render_template("web/readings.html", choices=choices, rows=rows, reasons=reasons)


def _form_page(form: ReadingForm, choice: service.MeterChoice, preview: service.Preview | None,
               status: int = 200, confirm: ConfirmForm | None = None) -> ResponseReturnValue:
    """Step 1 (the values) and, after a preview, step 2 (the photo and the confirmation)."""
    if preview is not None and confirm is None:
        confirm = ConfirmForm(formdata=None)
        for name in ("meter_id", "value_kwh", *REGISTER_FIELDS):
            getattr(confirm, name).data = getattr(form, name).data
    warnings = [text for flag in (preview.flags if preview else ())
                for text in reading_flag_text(flag.encode())]
    return render_template("web/reading_new.html", form=form, choice=choice, preview=preview,
                           confirm=confirm if preview is not None else None,
                           warnings=warnings), status


@bp.route("/readings/new", methods=["GET", "POST"])
@login_required
def reading_new() -> ResponseReturnValue:
    form = ReadingForm()
    try:
        meter_id = int(form.meter_id.data or request.args.get("meter", ""))
    except ValueError:
        abort(404)
    choice = _choice(meter_id)
    form.meter_id.data = str(meter_id)
    if not choice.window.is_open:
        form.form_errors.append(message_for(service.WindowClosed(choice.window.opens_on)))
        return _form_page(form, choice, None, 400 if request.method == "POST" else 200)
    if not form.validate_on_submit():
        return _form_page(form, choice, None, 400 if form.errors else 200)
    entry = _entry(form)
    if entry is None:
        return _form_page(form, choice, None, 400)
    try:
        preview = service.preview(db.session, context.clock(), context.settings(),
                                  current_user.id, entry)
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            raise
        _show_error(form, exc)
        return _form_page(form, choice, None, exc.status)
    return _form_page(form, choice, preview)


@bp.post("/readings/confirm")
@login_required
def reading_confirm() -> ResponseReturnValue:
    form = ConfirmForm()
    try:
        meter_id = int(form.meter_id.data or "")
    except ValueError:
        abort(404)
    choice = _choice(meter_id)
    entry = _entry(form) if form.validate_on_submit() else None
    if entry is None:
        return _form_page(form, choice, None, 400)
    settings = context.settings()
    photos = sent_files(form.photo.name, service.photo_rules(settings))
    try:
        row = service.submit(db.session, context.clock(), settings, current_user.id, entry,
                             photos, system=billing_system(db.session))
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            raise
        values = ReadingForm(formdata=None)
        for name in ("meter_id", "value_kwh", *REGISTER_FIELDS):
            getattr(values, name).data = getattr(form, name).data
        if not isinstance(exc, UploadRefused | service.PhotoRequired):
            _show_error(values, exc)
            return _form_page(values, choice, None, exc.status)
        form.photo.errors.append(message_for(exc))
        preview = service.preview(db.session, context.clock(), settings, current_user.id, entry)
        return _form_page(values, choice, preview, exc.status, confirm=form)
    db.session.commit()
    if row.status is ReadingStatus.ACCEPTED:
        flash(_("Thank you: the reading of %(kwh)s kWh is accepted.",
                kwh=row.value_kwh), "success")
    else:
        flash(_("Thank you: the reading is saved. Staff will check it against your photo and "
                "you will be told the outcome."), "info")
    return redirect(url_for("web.readings"))


@bp.get("/readings/<id:reading_id>/photo")
@login_required
def reading_photo(reading_id: int) -> ResponseReturnValue:
    return send_photo(service.photo_for_customer(db.session, current_user.id, reading_id))


def send_photo(photo: service.StoredPhoto) -> ResponseReturnValue:
    """A stored photo (a re-encoded JPEG of at most 2400 px a side); the caller checked who
    may see it."""
    return send_stored(service.photo_store(context.settings()), photo.stored_name,
                       photo.content_type, photo.download_name)

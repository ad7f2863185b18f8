"""The customer's notification settings page: channels per event, and an email address."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import EmailField
from wtforms.validators import Length, Optional, Regexp

from notifications import preferences
from notifications.service import EVENTS
from portal import context
from portal.extensions import db
from portal.web.views import bp

EVENT_LABELS = {
    "bill_issued": _l("A new bill"),
    "reminder_due_soon": _l("A bill is due in 3 days"),
    "reminder_due_today": _l("A bill is due today"),
    "reminder_overdue": _l("A bill is overdue"),
    "reminder_final_notice": _l("Final notice before disconnection"),
    "payment_succeeded": _l("Payment received"),
    "refund_succeeded": _l("Refund completed"),
    "reading_accepted": _l("Meter reading accepted"),
    "reading_rejected": _l("Meter reading not accepted"),
    "dispute_info_requested": _l("We need more information about your dispute"),
    "dispute_message": _l("A message about your dispute"),
    "dispute_resolved": _l("Your dispute is resolved"),
    "plan_proposed": _l("A payment plan is proposed"),
    "plan_approved": _l("Your payment plan is approved"),
    "plan_declined": _l("Your payment plan was declined"),
    "plan_installment_due": _l("A payment plan installment is due"),
    "plan_defaulted": _l("A payment plan has defaulted"),
}
CHANNEL_LABELS = {"wechat": _l("WeChat"), "sms": _l("SMS"), "email": _l("Email")}


class NotificationForm(FlaskForm):
    email = EmailField(_l("Email address (optional)"), [
        Optional(), Length(max=254, message=_l("An email address has at most 254 characters.")),
        Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
               message=_l("Enter an email address like name@example.com, or leave it empty.")),
    ])


@bp.route("/notifications", methods=["GET", "POST"])
@login_required
def notification_settings() -> ResponseReturnValue:
    settings = context.settings()
    form = NotificationForm(obj=None if request.method == "POST" else current_user)
    if form.validate_on_submit():
        choice = {event: request.form.getlist(f"ch-{event}") for event in EVENTS}
        if any(set(c) - set(preferences.CHOOSABLE) for c in choice.values()):
            form.form_errors.append(_("Choose among WeChat, SMS and email."))
        else:
            preferences.save(db.session, context.clock(), current_user.id, choice,
                             settings.notifications.default_channels)
            current_user.email = form.email.data or None
            db.session.commit()
            flash(_("Your notification settings are saved."), "success")
            return redirect(url_for("web.notification_settings"))
    chosen = preferences.chosen(db.session, current_user.id, settings.notifications,
                                settings.reminders, EVENTS)
    return render_template("web/notifications.html", form=form, chosen=chosen,
                           events=EVENT_LABELS, channels=CHANNEL_LABELS), \
        400 if form.errors or form.form_errors else 200

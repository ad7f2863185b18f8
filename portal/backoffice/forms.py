"""Back-office forms. Every field has a length limit and a message a person can act on."""

from __future__ import annotations

from decimal import Decimal

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, SelectMultipleField, StringField
from wtforms.validators import (
    DataRequired,
    EqualTo,
    Length,
    Optional,
    Regexp,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from portal.backoffice.models import Permission, StaffRole
from portal.backoffice.service import MAX_PASSWORD, MIN_PASSWORD
from portal.kernel.money import MoneyFormatError, parse_yuan

ROLE_LABELS = {
    StaffRole.READER: _l("Meter reader (抄表)"),
    StaffRole.AUDITOR: _l("Auditor (核算)"),
    StaffRole.COLLECTOR: _l("Collector (收费)"),
    StaffRole.SUPERVISOR: _l("Supervisor"),
    StaffRole.ADMIN: _l("Administrator"),
}

PERMISSION_LABELS = {
    Permission.VIEW_ACCOUNTS: _l("View accounts, bills and balances"),
    Permission.RECORD_READINGS: _l("Record meter readings"),
    Permission.REVIEW_READINGS: _l("Review flagged readings"),
    Permission.REVIEW_BILLS: _l("Review bills held for review"),
    Permission.HANDLE_DISPUTES: _l("Handle disputes"),
    Permission.MANAGE_PLANS: _l("Propose payment plans"),
    Permission.APPROVE_PLANS: _l("Approve payment plans"),
    Permission.REQUEST_REFUND: _l("Request refunds"),
    Permission.APPROVE_REFUND: _l("Approve refunds (second person)"),
    Permission.VIEW_KPIS: _l("View KPIs"),
    Permission.VIEW_AUDIT_LOG: _l("View the audit log"),
    Permission.MANAGE_STAFF: _l("Manage staff and their districts"),
    Permission.RESOLVE_DISPUTES: _l("Resolve disputes (uphold or adjust the bill)"),
    Permission.RECONCILE: _l("Work through reconciliation differences (对账)"),
}

NEW_PASSWORD = [
    DataRequired(_l("Choose a password.")),
    Length(min=MIN_PASSWORD, max=MAX_PASSWORD,
           message=_l("Use %(min)s to %(max)s characters.", min=MIN_PASSWORD, max=MAX_PASSWORD)),
]


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class StaffLoginForm(FlaskForm):
    username = StringField(_l("Username"), [
        DataRequired(_l("Enter your username.")),
        Length(max=64, message=_l("A username has at most 64 characters.")),
    ])
    password = PasswordField(_l("Password"), [
        DataRequired(_l("Enter your password.")),
        Length(max=MAX_PASSWORD, message=_l("A password has at most 128 characters.")),
    ])


class TotpForm(FlaskForm):
    code = StringField(_l("6-digit code from your authenticator app"), [
        DataRequired(_l("Enter the 6-digit code your authenticator app shows.")),
        Regexp(r"^\s*[0-9]{3}\s?[0-9]{3}\s*$", message=_l("The code has 6 digits.")),
    ])


class ChangePasswordForm(FlaskForm):
    current = PasswordField(_l("Current password"), [
        DataRequired(_l("Enter your current password.")),
        Length(max=MAX_PASSWORD, message=_l("A password has at most 128 characters.")),
    ])
    new = PasswordField(_l("New password"), NEW_PASSWORD)
    confirm = PasswordField(_l("Repeat the new password"), [
        DataRequired(_l("Repeat the password.")),
        EqualTo("new", message=_l("The two passwords are not the same.")),
    ])


def _role_choices() -> list[tuple[str, str]]:
    return [(role.value, str(label)) for role, label in ROLE_LABELS.items()]


class StaffEditForm(FlaskForm):
    display_name = StringField(_l("Name"), [
        DataRequired(_l("Enter the person's name.")),
        Length(max=100, message=_l("A name has at most 100 characters.")),
    ])
    role = SelectField(_l("Role"), choices=_role_choices,
                       validate_choice=True)
    districts = MultiCheckboxField(_l("Districts"), coerce=int)


class StaffCreateForm(StaffEditForm):
    username = StringField(_l("Username"), [
        DataRequired(_l("Choose a username.")),
        Regexp(r"^\s*[A-Za-z0-9][A-Za-z0-9._-]{1,63}\s*$",
               message=_l("Use 2 to 64 letters, digits, dots, dashes or underscores.")),
    ])
    password = PasswordField(_l("First password (to be changed at first sign-in)"),
                             NEW_PASSWORD)


class ResetPasswordForm(FlaskForm):
    password = PasswordField(_l("Temporary password (to be changed at next sign-in)"),
                             NEW_PASSWORD)


class ConfirmForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


def _positive_yuan(form: FlaskForm, field: StringField) -> None:
    try:
        fen = parse_yuan((field.data or "").strip())
    except MoneyFormatError as exc:
        raise ValidationError(_l("Enter an amount in yuan with at most two decimals, e.g. "
                                 "50 or 50.00.")) from exc
    if fen <= 0:
        raise ValidationError(_l("The amount must be at least 0.01 yuan."))


class RefundRequestForm(FlaskForm):
    amount = StringField(_l("Amount to refund (yuan)"), [
        DataRequired(_l("Enter the amount to refund, in yuan.")),
        Length(max=12, message=_l("Enter an amount in yuan with at most two decimals, e.g. "
                                  "50 or 50.00.")),
        _positive_yuan,
    ])
    reason = StringField(_l("Reason"), [
        DataRequired(_l("Say why the money goes back to the customer.")),
        Length(max=255, message=_l("A reason has at most 255 characters.")),
    ])

    @property
    def amount_fen(self) -> int:
        return parse_yuan(self.amount.data.strip())


class RefundDeclineForm(FlaskForm):
    reason = StringField(_l("Why it is declined"), [
        DataRequired(_l("Say why the refund is declined; the requester will read it.")),
        Length(max=255, message=_l("A reason has at most 255 characters.")),
    ])


class DifferenceNoteForm(FlaskForm):
    note = StringField(_l("Note"), [
        DataRequired(_l("Write what was found or done; the next person will read it.")),
        Length(max=500, message=_l("A note has at most 500 characters.")),
    ])
# --- bill review, KPIs and the audit log -------------------------------------------------------

KWH_PATTERN = r"\s*\d{1,10}(\.\d{1,2})?\s*\Z"  # Regexp matches from the start only
_KWH_MESSAGE = _l("Enter a meter reading in kWh, e.g. 1234 or 1234.5 (at most two decimals).")


def _optional_kwh(label: str) -> StringField:
    return StringField(label, [Optional(), Regexp(KWH_PATTERN, message=_KWH_MESSAGE)])


class BillApproveForm(FlaskForm):
    note = StringField(_l("Why the bill is right as computed"), [
        DataRequired(_l("Say why the bill can be issued as it is; it is kept in the audit "
                        "log.")),
        Length(max=255, message=_l("A reason has at most 255 characters.")),
    ])


class BillCorrectForm(FlaskForm):
    meter_id = SelectField(_l("Meter"), coerce=int,
                           validate_choice=True)
    value_kwh = StringField(_l("Right reading (kWh, the register's total)"), [
        DataRequired(_l("Enter the meter's right reading for the period.")),
        Regexp(KWH_PATTERN, message=_KWH_MESSAGE),
    ])
    peak_kwh = _optional_kwh(_l("Peak register (kWh)"))
    flat_kwh = _optional_kwh(_l("Flat register (kWh)"))
    valley_kwh = _optional_kwh(_l("Valley register (kWh)"))
    reason = StringField(_l("Why the reading was wrong"), [
        DataRequired(_l("Say why the reading is corrected; it is kept in the audit log.")),
        Length(max=255, message=_l("A reason has at most 255 characters.")),
    ])

    def registers(self) -> dict[str, Decimal | None]:
        return {name: Decimal(field.data.strip()) if field.data and field.data.strip() else None
                for name, field in (("peak", self.peak_kwh), ("flat", self.flat_kwh),
                                    ("valley", self.valley_kwh))}

    def decimal_value(self) -> Decimal:
        return Decimal(self.value_kwh.data.strip())

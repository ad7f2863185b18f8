"""Customer web forms. Every field has a length limit and a message a person can act on."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp, ValidationError

from portal.accounts.service import PHONE_RE, normalise_phone


def mainland_mobile(form: FlaskForm, field: StringField) -> None:
    if not PHONE_RE.fullmatch(normalise_phone(field.data or "")):
        raise ValidationError(_l("Enter an 11-digit mainland mobile number, e.g. 13800138000."))


PHONE = [DataRequired(_l("Enter your mobile number.")),
         Length(max=20, message=_l("A mobile number has 11 digits.")), mainland_mobile]


class SignupForm(FlaskForm):
    phone = StringField(_l("Mobile number"), PHONE)
    password = PasswordField(_l("Password"), [
        DataRequired(_l("Choose a password.")),
        Length(min=8, max=128, message=_l("Use 8 to 128 characters for your password.")),
    ])
    confirm = PasswordField(_l("Repeat the password"), [
        DataRequired(_l("Repeat the password.")),
        EqualTo("password", message=_l("The two passwords are not the same.")),
    ])


class LoginForm(FlaskForm):
    phone = StringField(_l("Mobile number"), PHONE)
    password = PasswordField(_l("Password"), [
        DataRequired(_l("Enter your password.")),
        Length(max=128, message=_l("Use 8 to 128 characters for your password.")),
    ])


class LinkAccountForm(FlaskForm):
    account_no = StringField(_l("Account number (户号)"), [
        DataRequired(_l("Enter the account number printed on your bill.")),
        Regexp(r"^\s*[0-9]{8,20}\s*$",
               message=_l("An account number is 8 to 20 digits, as printed on your bill.")),
    ])
    holder_name = StringField(_l("Account holder's name"), [
        DataRequired(_l("Enter the holder's name as printed on your bill.")),
        Length(max=50, message=_l("A holder's name has at most 50 characters.")),
    ])
    meter_last4 = StringField(_l("Last 4 digits of the meter number"), [
        DataRequired(_l("Enter the last 4 digits of your meter number.")),
        Regexp(r"^\s*[0-9]{4}\s*$", message=_l("Enter exactly 4 digits.")),
    ])

"""Request and response bodies of the mini-program API (marshmallow; flask-smorest turns them
into the OpenAPI document). Money is integer fen; kWh and prices are decimal strings."""

from __future__ import annotations

from flask_smorest.fields import Upload
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from werkzeug.datastructures import FileStorage

from notifications.service import EVENTS  # each a WeChat subscribe-message template
from payments.states import OrderStatus
from portal.bills.service import PaymentState

KWH = fields.String  # Decimal as text ("123.45"): JSON numbers would be floats on the client


class Strict(Schema):
    class Meta:
        unknown = RAISE  # documented as additionalProperties: false


class Error(Strict):
    code = fields.String(required=True, metadata={"example": "not_found"})
    message = fields.String(required=True)
    invalid = fields.List(fields.String(), data_key="fields", metadata={
        "description": "with code invalid_request: the fields to correct"})


# --- sign-in ---------------------------------------------------------------------------------

class LoginIn(Strict):
    code = fields.String(required=True, validate=validate.Length(min=1, max=128),
                         metadata={"description": "the code from wx.login()"})


class LoginOut(Strict):
    status = fields.String(required=True, validate=validate.OneOf(["signed_in", "bind_required"]))
    token = fields.String(allow_none=True, metadata={"description": "bearer token (signed_in)"})
    expires_at = fields.Integer(allow_none=True, metadata={"description": "epoch seconds"})
    ticket = fields.String(allow_none=True, metadata={
        "description": "bind_required: send it to /auth/bind within 10 minutes"})


class BindIn(Strict):
    ticket = fields.String(required=True, validate=validate.Length(min=1, max=512))
    phone = fields.String(validate=validate.Length(min=1, max=32))
    password = fields.String(validate=validate.Length(min=1, max=128))
    bind_code = fields.String(validate=validate.Length(min=1, max=512), metadata={
        "description": "made on the website (WeChat page) by the signed-in customer"})

    @validates_schema
    def _one_way(self, data: dict[str, object], **_kw: object) -> None:
        by_password = "phone" in data and "password" in data
        if by_password == ("bind_code" in data) or (
                not by_password and ("phone" in data or "password" in data)):
            raise ValidationError("give phone and password, or bind_code", "bind_code")


class TokenOut(Strict):
    token = fields.String(required=True)
    expires_at = fields.Integer(required=True, metadata={"description": "epoch seconds"})


# --- accounts, bills, usage ------------------------------------------------------------------

class LinkIn(Strict):
    account_no = fields.String(required=True, validate=validate.Length(min=1, max=20))
    holder_name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    meter_last4 = fields.String(required=True, validate=validate.Regexp(r"^[0-9]{4}$"))


class AccountOut(Strict):
    id = fields.Integer(required=True)
    account_no = fields.String(required=True)
    holder_name = fields.String(required=True)
    address = fields.String(required=True)
    customer_class = fields.String(required=True)
    owed_fen = fields.Integer(required=True, metadata={"description": "negative: prepaid"})


class AccountsOut(Strict):
    accounts = fields.List(fields.Nested(AccountOut), required=True)


class BillOut(Strict):
    id = fields.Integer(required=True)
    account_id = fields.Integer(required=True)
    period = fields.String(required=True, metadata={"example": "2026-11"})
    period_start = fields.Date(required=True)
    period_end = fields.Date(required=True)
    kwh = KWH(required=True)
    total_fen = fields.Integer(required=True)
    owed_fen = fields.Integer(required=True)
    due_date = fields.Date(required=True)
    state = fields.String(required=True, validate=validate.OneOf([s.value for s in PaymentState]))


class BillsOut(Strict):
    bills = fields.List(fields.Nested(BillOut), required=True)


class LineOut(Strict):
    seq = fields.Integer(required=True)
    kind = fields.String(required=True)
    label = fields.String(required=True)
    derivation = fields.String(required=True)
    tier = fields.Integer(allow_none=True, required=True)
    register = fields.String(allow_none=True, required=True)
    kwh = KWH(allow_none=True, required=True)
    unit_price = fields.String(allow_none=True, required=True)
    amount_fen = fields.Integer(required=True)


class ProgressOut(Strict):
    annual = fields.Boolean(required=True)
    used_kwh = KWH(required=True)
    bounds = fields.List(KWH(), required=True)
    tier = fields.Integer(required=True)
    left_kwh = KWH(allow_none=True, required=True)
    start = fields.Date(required=True)
    end = fields.Date(required=True)


class LateFeeOut(Strict):
    days = fields.Integer(required=True)
    arrears_fen = fields.Integer(required=True)
    fee_fen = fields.Integer(required=True)
    per_mille = fields.String(required=True, metadata={"description": "today's rate, ‰/day"})
    waived = fields.Boolean(required=True)


class BillDetailOut(BillOut):
    lines = fields.List(fields.Nested(LineOut), required=True)
    progress = fields.Nested(ProgressOut, allow_none=True, required=True)
    late_fee = fields.Nested(LateFeeOut, allow_none=True, required=True)


class UsageOut(Strict):
    """Parallel arrays, oldest period first, ready for a chart."""

    periods = fields.List(fields.String(), required=True)
    kwh = fields.List(KWH(), required=True)
    peak = fields.List(KWH(allow_none=True), required=True)
    flat = fields.List(KWH(allow_none=True), required=True)
    valley = fields.List(KWH(allow_none=True), required=True)
    total_fen = fields.List(fields.Integer(), required=True)


class UsageQuery(Strict):
    months = fields.Integer(load_default=24, validate=validate.Range(min=1, max=60))


# --- paying ----------------------------------------------------------------------------------

class PayIn(Strict):
    bill_ids = fields.List(fields.Integer(validate=validate.Range(min=1, max=2**63 - 1)),
                           required=True, validate=validate.Length(min=1, max=36))


class PayParams(Strict):
    """Pass as they are to wx.requestPayment()."""

    appId = fields.String(required=True)
    timeStamp = fields.String(required=True)
    nonceStr = fields.String(required=True)
    package = fields.String(required=True)
    signType = fields.String(required=True)
    paySign = fields.String(required=True)


class OrderBillOut(Strict):
    bill_id = fields.Integer(required=True)
    amount_fen = fields.Integer(required=True)


class OrderOut(Strict):
    order_no = fields.String(required=True)
    account_id = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf([s.value for s in OrderStatus]))
    amount_fen = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True)
    paid_at = fields.DateTime(allow_none=True, required=True)
    bills = fields.List(fields.Nested(OrderBillOut), required=True)


class PayOut(OrderOut):
    pay_params = fields.Nested(PayParams, required=True)


# --- subscribe-message consents --------------------------------------------------------------

class ConsentsIn(Strict):
    events = fields.List(fields.String(validate=validate.OneOf(EVENTS)), required=True,
                         validate=validate.Length(min=1, max=len(EVENTS)), metadata={
                             "description": "the events whose templates the user accepted in "
                                            "one wx.requestSubscribeMessage() call (one "
                                            "consent each; a repeat counts once)"})


class ConsentsOut(Strict):
    remaining = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True,
                            metadata={"description": "messages still allowed, per event"})


# --- self-readings ---------------------------------------------------------------------------

KWH_IN = validate.Regexp(r"^[0-9]{1,10}(\.[0-9]{1,2})?$",
                         error="a reading in kWh: digits with at most two decimals")
MULTIPART = "form_and_files"  # portal.miniprogram.api registers this webargs location


class ReadingIn(Strict):
    meter_id = fields.Integer(required=True, validate=validate.Range(min=1, max=2**63 - 1))
    value_kwh = fields.String(validate=KWH_IN, metadata={"description": "the total register"})
    peak_kwh = fields.String(validate=KWH_IN)
    flat_kwh = fields.String(validate=KWH_IN)
    valley_kwh = fields.String(validate=KWH_IN)


def _a_file(value: object) -> None:
    """marshmallow ignores a validator's return value: refusing means raising."""
    if not isinstance(value, FileStorage):
        raise ValidationError("send the photo as a file part (filename and content), not as text")


class ReadingUpload(ReadingIn):
    photo = Upload(required=True, validate=_a_file,
                   metadata={"description": "JPEG or PNG of the meter (a file part)"})


class WindowOut(Strict):
    is_open = fields.Boolean(required=True)
    period = fields.String(required=True)
    opens_on = fields.Date(required=True)
    closes_on = fields.Date(required=True)


class MeterOut(Strict):
    id = fields.Integer(required=True)
    meter_no = fields.String(required=True)
    account_id = fields.Integer(required=True)
    account_no = fields.String(required=True)
    registers = fields.List(fields.String(), required=True,
                            metadata={"description": "TOU registers to read (empty: one)"})
    window = fields.Nested(WindowOut, required=True)


class MetersOut(Strict):
    meters = fields.List(fields.Nested(MeterOut), required=True)


class PreviewOut(Strict):
    meter_id = fields.Integer(required=True)
    period = fields.String(required=True)
    read_on = fields.Date(required=True)
    previous_kwh = KWH(allow_none=True, required=True)
    usage_kwh = KWH(allow_none=True, required=True)
    register_usage = fields.Dict(keys=fields.String(), values=KWH(), required=True)
    estimate_fen = fields.Integer(allow_none=True, required=True)
    plausible = fields.Boolean(required=True)
    warnings = fields.List(fields.String(), required=True)


class ReadingOut(Strict):
    id = fields.Integer(required=True)
    meter_id = fields.Integer(required=True)
    meter_no = fields.String(required=True)
    account_id = fields.Integer(required=True)
    account_no = fields.String(required=True)
    period = fields.String(required=True)
    read_on = fields.Date(required=True)
    value_kwh = KWH(required=True)
    peak_kwh = KWH(allow_none=True, required=True)
    flat_kwh = KWH(allow_none=True, required=True)
    valley_kwh = KWH(allow_none=True, required=True)
    source = fields.String(required=True)
    status = fields.String(required=True)
    reasons = fields.List(fields.String(), required=True,
                          metadata={"description": "why it was flagged, in words"})
    note = fields.String(allow_none=True, required=True,
                         metadata={"description": "staff's reason when rejected"})


class ReadingsOut(Strict):
    readings = fields.List(fields.Nested(ReadingOut), required=True)

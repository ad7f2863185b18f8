"""Self-reading endpoints of the mini-program API: thin views over ``portal.readings.service``
(the same rules, windows, photo checks and staff review as the website's /readings pages).

``GET /meters`` (meters and this month's reading window) -> ``POST /readings/preview`` (usage,
estimated bill, warnings; writes nothing) -> ``POST /readings`` (multipart, as wx.uploadFile sends
it: the values and the photo) -> ``GET /readings`` (status and reasons).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from portal import context
from portal.billing import billing_system
from portal.extensions import db
from portal.kernel.uploads import Upload
from portal.messages import reading_flag_text
from portal.miniprogram import schemas
from portal.miniprogram.api import BEARER, authenticated, blp, caller, text_or_none
from portal.readings import service as readings
from portal.readings.models import Reading


def _entry(data: dict[str, Any]) -> readings.Entry:
    def kwh(name: str) -> Decimal | None:
        raw = data.get(name)
        return Decimal(raw) if raw else None  # the schema let only digits and one point in

    return readings.Entry(data["meter_id"], kwh("value_kwh"), kwh("peak_kwh"),
                          kwh("flat_kwh"), kwh("valley_kwh"))


def _reading_row(row: Reading) -> dict[str, Any]:
    return {"id": row.id, "meter_id": row.meter_id, "meter_no": row.meter.meter_no,
            "account_id": row.meter.account_id, "account_no": row.meter.account.account_no,
            "period": row.period, "read_on": row.read_on, "value_kwh": str(row.value_kwh),
            "peak_kwh": text_or_none(row.peak_kwh), "flat_kwh": text_or_none(row.flat_kwh),
            "valley_kwh": text_or_none(row.valley_kwh), "source": row.source.value,
            "status": row.status.value, "reasons": reading_flag_text(row.flag_reason),
            "note": row.decision_note}


@blp.route("/meters", methods=["GET"])
@blp.doc(security=BEARER)
@blp.response(200, schemas.MetersOut)
@authenticated
def meters() -> dict[str, Any]:
    """The meters of the customer's linked accounts, with this month's reading window."""
    choices = readings.meters_for_customer(db.session, context.clock(), context.settings(),
                                           caller().id)
    return {"meters": [{
        "id": c.meter.id, "meter_no": c.meter.meter_no, "account_id": c.account.id,
        "account_no": c.account.account_no, "registers": list(c.registers),
        "window": {"is_open": c.window.is_open, "period": c.window.period,
                   "opens_on": c.window.opens_on, "closes_on": c.window.closes_on},
    } for c in choices]}


@blp.route("/readings/preview", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(schemas.ReadingIn)
@blp.response(200, schemas.PreviewOut)
@blp.alt_response(404, schema=schemas.Error)
@blp.alt_response(409, schema=schemas.Error, description="reading_exists")
@authenticated
def reading_preview(data: dict[str, Any]) -> dict[str, Any]:
    """What submitting this reading would mean (usage, estimated bill, warnings); writes
    nothing."""
    preview = readings.preview(db.session, context.clock(), context.settings(), caller().id,
                               _entry(data))
    return {"meter_id": preview.meter_id, "period": preview.period,
            "read_on": preview.read_on, "previous_kwh": text_or_none(preview.previous_kwh),
            "usage_kwh": text_or_none(preview.usage_kwh),
            "register_usage": {k: str(v) for k, v in preview.register_usage.items()},
            "estimate_fen": preview.estimate_fen, "plausible": preview.plausible,
            "warnings": [text for flag in preview.flags
                         for text in reading_flag_text(flag.encode())]}


@blp.route("/readings", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(schemas.ReadingUpload, location=schemas.MULTIPART)
@blp.response(201, schemas.ReadingOut)
@blp.alt_response(404, schema=schemas.Error)
@blp.alt_response(409, schema=schemas.Error, description="reading_exists")
@blp.alt_response(503, schema=schemas.Error, description="reading_billing_unavailable")
@authenticated
def reading_submit(data: dict[str, Any]) -> dict[str, Any]:
    """Submit a reading with a photo of the meter (JPEG or PNG): accepted at once when
    plausible, otherwise flagged for staff (the answer says which, and why)."""
    settings = context.settings()
    photo = data["photo"]
    sent = Upload(photo.filename or "", photo.stream.read(settings.reading_photo_max_bytes + 1))
    row = readings.submit(db.session, context.clock(), settings, caller().id, _entry(data),
                          [sent], system=billing_system(db.session))
    db.session.commit()
    return _reading_row(row)


@blp.route("/readings", methods=["GET"])
@blp.doc(security=BEARER)
@blp.response(200, schemas.ReadingsOut)
@authenticated
def reading_list() -> dict[str, Any]:
    """The readings of the customer's meters (every source), newest first."""
    rows = readings.list_for_customer(db.session, caller().id)
    return {"readings": [_reading_row(row) for row in rows]}

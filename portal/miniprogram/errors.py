"""Every error on the API is JSON ``{"code": "...", "message": "..."}``, the message in the
caller's language (Accept-Language; Chinese by default). ``portal.errors`` sends API requests
here, including 404 and 405 for paths no route matched."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, jsonify
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import HTTPException

from billing_adapter.base import BillingUnavailable
from portal.extensions import db
from portal.i18n import message_for
from portal.kernel.errors import DomainError

log = logging.getLogger(__name__)

MESSAGES = {
    "token_missing": _l("Sign in first: send the token from /auth/login as "
                        "\"Authorization: Bearer <token>\"."),
    "token_expired": _l("Your sign-in has expired. Sign in again."),
    "token_invalid": _l("This sign-in is not valid (it was changed, or the WeChat binding "
                        "changed). Sign in again."),
    "ticket_invalid": _l("This sign-in step has expired or is not valid. Call wx.login and "
                         "sign in again."),
    "bind_code_invalid": _l("This binding code has expired or was already used. Make a new one "
                            "on the website under \"WeChat\"."),
    "bind_credentials": _l("The mobile number or password is wrong."),
    "wx_code_rejected": _l("WeChat did not accept this sign-in code. Call wx.login again and "
                           "send the new code."),
    "wx_unavailable": _l("WeChat sign-in is not available right now. Please try again in a few "
                         "minutes."),
    "invalid_request": _l("Some fields are missing or not valid; see \"fields\"."),
    "bad_request": _l("The request could not be read. Send JSON with the documented fields."),
    "not_found": _l("Not found, or not linked to your sign-in."),
    "method_not_allowed": _l("This address does not accept that method."),
    "too_many_requests": _l("Too many attempts in a short time. Please wait a few minutes and "
                            "try again."),
    "too_large": _l("The upload is too large."),
    "unsupported_media_type": _l("Send the request body as JSON (Content-Type: "
                                 "application/json)."),
    "billing_unavailable": _l("We cannot reach the billing system right now. Nothing was "
                              "changed; please try again in a few minutes."),
    "server_error": _l("Something went wrong on our side. Nothing was changed; please try "
                       "again in a moment."),
}
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
              413: "too_large", 415: "unsupported_media_type", 422: "invalid_request",
              429: "too_many_requests"}


class Unauthenticated(DomainError):
    code = "token_missing"
    status = 401

    def __init__(self, code: str = "token_missing") -> None:
        super().__init__(code)
        self.code = code


def json_error(status: int, code: str, message: str, **extra: Any) -> Response:
    response = jsonify({"code": code, "message": message, **extra})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="dianfei-mp"'
    return response


def _invalid_fields(error: HTTPException) -> list[str]:
    """Names of the fields webargs refused (its ``data["messages"]`` by location)."""
    messages = (getattr(error, "data", None) or {}).get("messages") or {}
    names: set[str] = set()
    for by_field in messages.values():
        if isinstance(by_field, dict):
            names.update(str(name) for name in by_field)
    return sorted(names)


def error_response(error: Exception) -> Response:
    if isinstance(error, DomainError):
        db.session.rollback()
        text = MESSAGES.get(error.code)
        field = getattr(error, "field", None)  # e.g. which reading register is wrong
        extra = {"fields": [field]} if isinstance(field, str) and field else {}
        return json_error(error.status, error.code, str(text) if text else message_for(error),
                          **extra)
    if isinstance(error, BillingUnavailable):
        db.session.rollback()
        log.warning("billing system unavailable: %s", error)
        response = json_error(503, "billing_unavailable", str(MESSAGES["billing_unavailable"]))
        response.headers["Retry-After"] = "120"
        return response
    if isinstance(error, HTTPException) and (error.code or 500) < 500:
        status = error.code or 400
        code = HTTP_CODES.get(status, "bad_request")
        if status == 422:
            return json_error(status, code, str(MESSAGES[code]), fields=_invalid_fields(error))
        response = json_error(status, code, str(MESSAGES[code]))
        allowed = getattr(error, "valid_methods", None)
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response
    log.exception("unhandled API error", exc_info=error)
    db.session.rollback()
    return json_error(500, "server_error", str(MESSAGES["server_error"]))

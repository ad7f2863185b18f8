"""Error pages: every failure a person can cause gets a 4xx page that says what to do."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, render_template
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from billing_adapter.base import BillingUnavailable
from portal.extensions import db
from portal.i18n import message_for
from portal.kernel.errors import DomainError, NotFound

log = logging.getLogger(__name__)


def _page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("errors/error.html", status=status, title=title,
                           message=message), status


def handle_billing_unavailable(error: BillingUnavailable) -> tuple[str, int, dict[str, str]]:
    log.warning("billing system unavailable: %s", error)
    db.session.rollback()
    return *_page(503, _("Billing is briefly unavailable"),
                  _("We cannot reach the billing system right now. Nothing was changed; please "
                    "try again in a few minutes.")), {"Retry-After": "120"}


def handle_domain_error(error: DomainError) -> tuple[str, int]:
    db.session.rollback()
    return _page(error.status, _("Not found") if error.status == 404 else _("Please check"),
                 message_for(error))


def handle_csrf(error: CSRFError) -> tuple[str, int]:
    return _page(400, _("Please try again"),
                 _("This form has expired or was sent from another page. Go back, reload the "
                   "page and send it again."))


def handle_http(error: HTTPException) -> tuple[str, int]:
    status = error.code or 500
    if status == 404:
        return _page(404, _("Not found"), message_for(NotFound()))
    if status == 429:
        return _page(429, _("Too many attempts"),
                     _("Too many attempts in a short time. Please wait a few minutes and "
                       "try again."))
    if status == 413:
        return _page(413, _("File too large"), _("The upload is too large."))
    if status == 405:
        return _page(405, _("Not allowed"), _("This page cannot be used that way."))
    return _page(status, _("Please check"), _("The request could not be handled. Please go "
                                               "back and try again."))


def handle_unexpected(error: Exception) -> tuple[str, int]:
    log.exception("unhandled error", exc_info=error)
    db.session.rollback()
    return _page(500, _("Sorry"), _("Something went wrong on our side. Nothing was changed; "
                                    "please try again in a moment."))


def _page_or_json(handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The mini-program API answers every error as JSON (portal.miniprogram.errors)."""
    from portal.miniprogram import is_api_request
    from portal.miniprogram.errors import error_response

    @functools.wraps(handler)
    def handle(error: Exception) -> Any:
        return error_response(error) if is_api_request() else handler(error)
    return handle


def init_app(app: Flask) -> None:
    app.register_error_handler(DomainError, _page_or_json(handle_domain_error))
    app.register_error_handler(BillingUnavailable, _page_or_json(handle_billing_unavailable))
    app.register_error_handler(CSRFError, handle_csrf)
    app.register_error_handler(HTTPException, _page_or_json(handle_http))
    app.register_error_handler(Exception, _page_or_json(handle_unexpected))

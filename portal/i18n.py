"""Locale choice: ``?lang=`` (remembered in the session), then Accept-Language, then Chinese.

Flask-Babel looks for catalogs by locale name; the Chinese one must live in ``zh_Hans_CN``
(Babel's canonical name), or Chinese silently falls back to the English message ids.
"""

from __future__ import annotations

from datetime import date

from flask import Flask, request, session
from flask_babel import format_date

from portal import context
from portal.kernel.errors import DomainError
from portal.messages import GENERIC, MESSAGES
from portal.miniprogram import is_api_request

LOCALES = {"zh": "zh_Hans_CN", "en": "en"}
HTML_LANG = {"zh_Hans_CN": "zh-CN", "en": "en"}


def _asked_for() -> str | None:
    return LOCALES.get(request.args.get("lang", ""))


def select_locale() -> str:
    # ?lang= is read here too: errors raised before our before_request hook still honour it.
    # The mini-program API reads no cookie session: Accept-Language (or ?lang=) decides there.
    remembered = None if is_api_request() else session.get("lang")
    chosen = _asked_for() or remembered
    if chosen in LOCALES.values():
        return chosen
    default = context.settings().default_locale
    match = request.accept_languages.best_match(list(LOCALES), default=None)
    return LOCALES[match] if match else default


def remember_lang_choice() -> None:
    chosen = _asked_for()
    if chosen and not is_api_request():
        session["lang"] = chosen


def init_app(app: Flask) -> None:
    app.before_request(remember_lang_choice)


def message_for(error: DomainError) -> str:
    """A sentence a person can act on, in the request's language, for a domain error's code.

    An error with ``params`` fills them in; dates are written the locale's way."""
    text = str(MESSAGES.get(error.code, GENERIC))
    params = getattr(error, "params", None)
    if not params or error.code not in MESSAGES:
        return text
    values = {k: format_date(v, "long") if isinstance(v, date) else v for k, v in params.items()}
    try:
        return text % values
    except (KeyError, TypeError, ValueError):
        return text

"""Jinja filters and globals. Money is formatted in exactly one place: the ``yuan`` filter."""

from __future__ import annotations

from decimal import Decimal

from flask import Flask
from flask_babel import get_locale

from portal.i18n import HTML_LANG
from portal.kernel.money import format_yuan


def format_kwh(value: Decimal | None) -> str:
    if value is None:
        return "-"
    return f"{value.normalize():,f}" if value == value.to_integral() else f"{value:,.2f}"


def format_price(value: Decimal | None) -> str:
    """A unit price as published, without trailing zeros: 0.48830 -> 0.4883."""
    if value is None:
        return "-"
    return f"{value.normalize():f}"


def html_lang() -> str:
    return HTML_LANG.get(str(get_locale()), "zh-CN")


def init_app(app: Flask) -> None:
    app.add_template_filter(format_yuan, "yuan")
    app.add_template_filter(format_kwh, "kwh")
    app.add_template_filter(format_price, "price")
    app.add_template_global(html_lang)

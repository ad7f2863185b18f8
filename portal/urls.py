"""URL converters: ``<id:...>`` takes only ids a database row can have, so ``/bills/abc`` and
``/bills/99999999999999999999999`` are a plain 404, never an error deeper down."""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter, Map

MAX_ID = 2**63 - 1


class IdConverter(IntegerConverter):
    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, min=1, max=MAX_ID)


def init_app(app: Flask) -> None:
    app.url_map.converters["id"] = IdConverter

"""The WeChat mini-program API (/api/mp/v1): bearer tokens, JSON in and out, an OpenAPI document.

Nothing here reads the cookie session: the API authenticates each request by its bearer token.
"""

from __future__ import annotations

from flask import request

URL_PREFIX = "/api/mp/v1"


def is_api_request() -> bool:
    """Whether this request is for the API (JSON errors, no cookie session, no ?lang memory)."""
    return request.path == URL_PREFIX or request.path.startswith(URL_PREFIX + "/")

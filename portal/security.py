"""Response headers every page carries: no framing, no sniffing, a tight content policy, and no
caching of signed-in pages (bills are personal; browsers on shared computers keep caches); and
which ``next=`` targets a sign-in may redirect to."""

from __future__ import annotations

import re
from typing import TypeGuard

from flask import Flask, Response
from flask_login import current_user
from werkzeug.urls import iri_to_uri

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",  # ECharts positions its tooltip with inline styles
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


def secure_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    if current_user and current_user.is_authenticated:
        headers["Cache-Control"] = "no-store"
    return response


# A path of this site: one slash, then neither a slash nor a backslash (browsers read "/\x" as
# "//x"), and no control characters (browsers drop tabs and line breaks; a header cannot hold a
# line break).
_SAME_SITE_PATH = re.compile(r"/(?![/\\])[^\\\x00-\x1f\x7f]*")


def is_same_site_path(target: str | None) -> TypeGuard[str]:
    """Whether redirecting to ``target`` (a ``next=`` from the query) stays on this site. The
    Location header is checked as the redirect will write it: werkzeug normalises ``////x`` to
    ``//x``, a link to another host."""
    return (target is not None and _SAME_SITE_PATH.fullmatch(target) is not None
            and _SAME_SITE_PATH.fullmatch(iri_to_uri(target)) is not None)


def init_app(app: Flask) -> None:
    app.after_request(secure_headers)

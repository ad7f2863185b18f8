"""Domain errors carry a stable code; the web and API layers turn the code into words (zh/en)."""

from __future__ import annotations


class DomainError(Exception):
    """``params`` fill the ``%(name)s`` placeholders of the code's words, if it has any."""

    code = "error"
    status = 400

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.code)
        self.detail = detail
        self.params: dict[str, object] = {}


class NotFound(DomainError):
    """Absent, or not the caller's: the two are indistinguishable on purpose (404, never 403)."""

    code = "not_found"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    status = 409

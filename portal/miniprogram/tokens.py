"""Signed, expiring tokens (itsdangerous) with the injected clock.

Each purpose has its own salt (``dianfei.mp.<purpose>.v1``): a token made for one purpose never
verifies for another, and bumping the version retires every token of a purpose at once. Keys
rotate: tokens are signed with the newest key and verified with it or any retired key still
listed (``DIANFEI_MP_PREVIOUS_SECRET_KEYS``), so a key change signs nobody out early.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from portal.kernel.clock import Clock

BEARER = "bearer"      # the API's bearer token: {"c": customer id, "o": openid fingerprint}
TICKET = "ticket"      # a verified openid not bound to anyone yet: {"o": openid, "u": unionid}
BIND_CODE = "bind"     # made on the web for a signed-in customer: {"c": customer id, "o": ...}


class TokenInvalid(Exception):
    """Not ours, altered, made for another purpose, or malformed."""


class TokenExpired(Exception):
    pass


@dataclass(frozen=True)
class Issued:
    token: str
    expires_at: int  # epoch seconds


class Tokens:
    def __init__(self, keys: Sequence[str], purpose: str, clock: Clock) -> None:
        """``keys``: oldest first, the newest (the one that signs) last."""
        self._serializer = URLSafeSerializer(list(keys), salt=f"dianfei.mp.{purpose}.v1")
        self._clock = clock

    def issue(self, payload: dict[str, Any], lifetime: timedelta) -> Issued:
        expires = int((self._clock.now() + lifetime).timestamp())
        return Issued(self._serializer.dumps({**payload, "exp": expires}), expires)

    def verify(self, token: str) -> dict[str, Any]:
        try:
            data: Any = self._serializer.loads(token)
        except BadSignature as exc:
            raise TokenInvalid() from exc
        if not isinstance(data, dict):
            raise TokenInvalid()
        expires = data.get("exp")
        if not isinstance(expires, int) or isinstance(expires, bool):
            raise TokenInvalid()
        if self._clock.now().timestamp() >= expires:
            raise TokenExpired()
        return dict(data)


def fingerprint(openid: str | None) -> str:
    """A short digest of the bound openid: a token stops working when the binding changes."""
    return hashlib.sha256((openid or "").encode()).hexdigest()[:16]

"""Signing staff in over HTTP, the way a person does: password, then the authenticator code."""

from __future__ import annotations

from datetime import timedelta

import pyotp
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from portal.backoffice import service
from portal.backoffice.models import StaffRole
from portal.demo import DEMO_PASSWORD, DEMO_TOTP_SECRET
from portal.kernel.clock import FrozenClock
from tests.helpers import FormClient


def totp_code(clock: FrozenClock, secret: str = DEMO_TOTP_SECRET) -> str:
    return pyotp.TOTP(secret).at(clock.now())


def staff_login(web: FormClient, clock: FrozenClock, username: str,
                password: str = DEMO_PASSWORD, secret: str = DEMO_TOTP_SECRET) -> TestResponse:
    """Password, then (for supervisors and admins) a fresh TOTP code: the clock moves on one
    30-second step first, since a code is never accepted twice."""
    response = web.submit("/staff/login", {"username": username, "password": password})
    if response.status_code == 302 and response.location.startswith("/staff/login/code"):
        clock.advance(timedelta(seconds=30))
        response = web.submit(response.location, {"code": totp_code(clock, secret)})
    return response


def staff_ids(session: Session, clock: FrozenClock, *usernames: str) -> list[int]:
    """Real staff rows (administrators: no district needed), for refunds' requested_by and
    approved_by; flushed, not committed."""
    return [service.create_staff(session, clock, username=name, display_name=name,
                                 password=DEMO_PASSWORD, role=StaffRole.ADMIN).id
            for name in usernames]

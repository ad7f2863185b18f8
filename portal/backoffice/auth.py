"""Staff sessions under /staff and the guard every staff view passes.

A browser holds one identity at a time. Flask-Login ids are ``c:<id>`` for customers and
``s:<id>`` for staff, and the user loader (``portal.web.views.load_user``) only loads staff on
/staff paths and only customers elsewhere: a customer session is signed out on /staff, a staff
session is signed out on the customer site.

Every staff view carries exactly one of ``@require(permission)``, ``@signed_in`` or ``@public``
(tests/portal/backoffice/test_views.py fails for a route without one). The first two check, in
order: a staff member is signed in; the session is neither idle too long nor too old; the
password has been changed if it must be; the role has the permission (else a 403 page).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Literal, TypeVar

from flask import flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user
from werkzeug.exceptions import Unauthorized

from portal import context
from portal.backoffice.models import Permission, StaffMember
from portal.extensions import db

STAFF_PREFIX = "/staff"
PENDING_KEY = "staff_pending"      # password checked, TOTP not yet: {"id": .., "at": ..}
SIGNED_IN_AT = "staff_signed_in_at"
SEEN_AT = "staff_seen_at"
PENDING_SECONDS = 5 * 60           # time to type the TOTP code after the password
CHANGE_PASSWORD_VIEW = "backoffice.change_password"  # noqa: S105 - an endpoint name

Access = Permission | Literal["signed_in", "public"]
View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


def is_staff_request() -> bool:
    return request.path == STAFF_PREFIX or request.path.startswith(STAFF_PREFIX + "/")


def current_staff() -> StaffMember:
    """The signed-in member of staff; Unauthorized outside a guarded staff view."""
    user = current_user._get_current_object()
    if not isinstance(user, StaffMember):
        raise Unauthorized()
    return user


def _fresh_session() -> None:
    """Nothing from before a sign-in step survives it (fixation), except the language."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    session.permanent = True


def begin_pending(staff: StaffMember) -> None:
    """Password accepted; the TOTP step comes next."""
    _fresh_session()
    session[PENDING_KEY] = {"id": staff.id, "at": _epoch_seconds()}


def _epoch_seconds() -> int:
    """Session timestamps are whole seconds since the epoch, from the injected clock."""
    return int(context.clock().now().timestamp())


def pending_staff() -> StaffMember | None:
    """Who passed the password step in the last five minutes, if anyone."""
    pending = session.get(PENDING_KEY)
    if not isinstance(pending, dict):
        return None
    if _epoch_seconds() - int(pending.get("at", 0)) > PENDING_SECONDS:
        return None
    staff = db.session.get(StaffMember, int(pending.get("id", 0)))
    return staff if staff is not None and staff.is_active else None


def sign_in(staff: StaffMember) -> None:
    now = _epoch_seconds()
    _fresh_session()
    login_user(staff)
    session[SIGNED_IN_AT] = session[SEEN_AT] = now


def sign_out() -> None:
    logout_user()
    _fresh_session()


def _login_redirect() -> ResponseReturnValue:
    target = request.full_path if request.query_string else request.path
    return redirect(url_for("backoffice.login", next=target))


def _gate(access: Access) -> ResponseReturnValue | None:
    user = current_user._get_current_object()
    if not isinstance(user, StaffMember):
        return _login_redirect()
    settings = context.settings()
    now = _epoch_seconds()
    idle = now - int(session.get(SEEN_AT, 0))
    age = now - int(session.get(SIGNED_IN_AT, 0))
    if idle > settings.staff_idle_minutes * 60 or age > settings.staff_session_hours * 3600:
        sign_out()
        flash(_("You were signed out because the session expired. Please sign in again."),
              "info")
        return _login_redirect()
    session[SEEN_AT] = now
    if user.must_change_password and request.endpoint != CHANGE_PASSWORD_VIEW:
        return redirect(url_for(CHANGE_PASSWORD_VIEW))
    if isinstance(access, Permission) and not user.can(access):
        return render_template("backoffice/forbidden.html", permission=access), 403
    return None


def _guarded(access: Access) -> Callable[[View], View]:
    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            refused = _gate(access)
            return refused if refused is not None else view(*args, **kwargs)

        guarded.staff_access = access  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return decorate


def require(permission: Permission) -> Callable[[View], View]:
    """A staff view for roles with ``permission``; others get a 403 page saying so."""
    return _guarded(permission)


def signed_in(view: View) -> View:
    """A staff view for every signed-in member, whatever the role."""
    return _guarded("signed_in")(view)


def public(view: View) -> View:
    """A staff view anyone may open (the sign-in steps)."""
    view.staff_access = "public"  # type: ignore[attr-defined]
    return view

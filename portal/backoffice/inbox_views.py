"""The staff member's inbox (on the back office's blueprint): the ``notify_staff`` messages
kept for them (``notifications.staff``), newest first, rendered from the notification templates
in the request's language (the console text: the email's adds a line meant for customers), each
marked read by its reader. Only their own: another staff member's message id is 404.
"""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_login import current_user

from notifications import staff as staff_messages
from notifications.models import StaffMessage
from notifications.render import Rendered, render
from portal import context
from portal.backoffice.auth import current_staff, signed_in
from portal.backoffice.models import StaffMember
from portal.backoffice.views import bp
from portal.extensions import db


@bp.context_processor
def _unread() -> dict[str, Any]:
    """``inbox_unread()`` for the nav: counted only when a signed-in staff page asks."""
    def inbox_unread() -> int:
        user = current_user._get_current_object()
        if not isinstance(user, StaffMember):
            return 0
        return staff_messages.unread_count(db.session, user.id)
    return {"inbox_unread": inbox_unread}


def _text(message: StaffMessage, locale: str) -> Rendered:
    return render(message.event, "console", locale, message.params)


@bp.get("/inbox")
@signed_in
def inbox() -> ResponseReturnValue:
    locale = str(get_locale())
    messages = staff_messages.inbox(db.session, current_staff().id)
    return render_template("backoffice/inbox.html", messages=messages,
                           texts={m.id: _text(m, locale) for m in messages},
                           local_zone=context.settings().zone)


@bp.post("/inbox/<id:message_id>/read")
@signed_in
def inbox_read(message_id: int) -> ResponseReturnValue:
    staff_messages.mark_read(db.session, context.clock(), current_staff().id, message_id)
    db.session.commit()
    return redirect(url_for("backoffice.inbox"))

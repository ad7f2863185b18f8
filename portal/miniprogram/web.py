"""The website's side of WeChat binding: a signed-in customer makes a short-lived binding code
(shown as a QR code and as text) that the mini-program sends to /api/mp/v1/auth/bind, and can
remove the binding. The code works once and for 10 minutes (portal.miniprogram.api)."""

from __future__ import annotations

import segno
from flask import Blueprint, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from markupsafe import Markup

from portal.extensions import db
from portal.miniprogram import service as mp
from portal.miniprogram.api import bind_code_for

bp = Blueprint("wechat", __name__)


class ActionForm(FlaskForm):
    """A button: only the CSRF token."""


def _page(code: str | None = None) -> str:
    qr = Markup(segno.make(code, error="l").svg_inline(scale=3)) if code else None  # noqa: S704
    return render_template("web/wechat.html", code=code, qr=qr, form=ActionForm(),
                           bound=current_user.wechat_openid is not None)


@bp.get("/account/wechat")
@login_required
def wechat() -> ResponseReturnValue:
    return _page()


@bp.post("/account/wechat/code")
@login_required
def bind_code() -> ResponseReturnValue:
    if not ActionForm().validate_on_submit():
        return redirect(url_for("wechat.wechat"))
    return _page(bind_code_for(current_user).token)


@bp.post("/account/wechat/unbind")
@login_required
def unbind() -> ResponseReturnValue:
    if ActionForm().validate_on_submit():
        mp.unbind_openid(db.session, current_user)
        db.session.commit()
        flash(_("WeChat is no longer bound to your sign-in."), "success")
    return redirect(url_for("wechat.wechat"))

"""Back-office views under /staff: sign-in (password, then TOTP for supervisors and admins),
the forced password change, accounts in the member's districts, and staff administration.
Refund pages are in ``portal.backoffice.refund_views``, on this blueprint.

Thin: parse, call ``portal.backoffice.service``, render. Every query of accounts, bills or
readings goes through the service's scoped helpers; every view carries an access rule
(``require``, ``signed_in`` or ``public``, see ``portal.backoffice.auth``).
"""

from __future__ import annotations

import segno
from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from portal import context
from portal.backoffice import refunds, service
from portal.backoffice.auth import (
    STAFF_PREFIX,
    begin_pending,
    current_staff,
    pending_staff,
    public,
    require,
    sign_in,
    sign_out,
    signed_in,
)
from portal.backoffice.forms import (
    PERMISSION_LABELS,
    ROLE_LABELS,
    ChangePasswordForm,
    ConfirmForm,
    ResetPasswordForm,
    StaffCreateForm,
    StaffEditForm,
    StaffLoginForm,
    TotpForm,
)
from portal.backoffice.models import ROLE_PERMISSIONS, Permission, StaffMember, StaffRole
from portal.bills import service as bills
from portal.extensions import db, limiter
from portal.i18n import message_for
from portal.kernel import audit
from portal.kernel.errors import DomainError
from portal.ledger import service as ledger
from portal.messages import review_reason_text
from portal.security import is_same_site_path

bp = Blueprint("backoffice", __name__, url_prefix="/staff")
ENROL_KEY = "staff_enrol"


@bp.app_context_processor
def _labels() -> dict[str, object]:
    return {"role_labels": ROLE_LABELS, "permission_labels": PERMISSION_LABELS}


def _login_limit() -> str:
    return context.settings().login_rate_limit


def _username_key() -> str:
    return "staff-login:" + service.normalise_username(request.form.get("username", ""))[:64]


def _pending_key() -> str:
    pending = session.get("staff_pending")
    return f"staff-totp:{pending.get('id') if isinstance(pending, dict) else '-'}"


def _failed(response: object) -> bool:
    return getattr(response, "status_code", 200) != 302


def _safe_next(target: str | None) -> str:
    """Only back-office paths of this site; anything else goes to the staff home page."""
    if is_same_site_path(target) and (
            target == STAFF_PREFIX or target.startswith((STAFF_PREFIX + "/", STAFF_PREFIX + "?"))):
        return target
    return url_for("backoffice.home")


def _after_password(staff: StaffMember) -> ResponseReturnValue:
    next_url = request.args.get("next")
    if staff.needs_totp:
        db.session.commit()  # a rehashed password is kept even if the code never comes
        begin_pending(staff)
        step = "backoffice.totp" if staff.totp_secret else "backoffice.enrol"
        return redirect(url_for(step, next=next_url))
    return _signed_in(staff)


def _signed_in(staff: StaffMember) -> ResponseReturnValue:
    service.record_sign_in(staff, context.clock().now())
    db.session.commit()
    sign_in(staff)
    return redirect(_safe_next(request.args.get("next")))


# --- sign-in ----------------------------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], deduct_when=_failed)
@limiter.limit(_login_limit, methods=["POST"], key_func=_username_key, deduct_when=_failed)
@public
def login() -> ResponseReturnValue:
    if isinstance(current_user._get_current_object(), StaffMember):
        return redirect(_safe_next(request.args.get("next")))
    form = StaffLoginForm()
    if form.validate_on_submit():
        staff = service.authenticate(db.session, context.clock(), form.username.data,
                                     form.password.data)
        if staff is not None:
            return _after_password(staff)
        db.session.commit()  # the failed attempt is counted
        form.password.errors.append(_("The username or password is wrong."))
    return render_template("backoffice/login.html", form=form), 400 if form.errors else 200


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], deduct_when=_failed)
@limiter.limit(_login_limit, methods=["POST"], key_func=_pending_key, deduct_when=_failed)
@public
def totp() -> ResponseReturnValue:
    staff = pending_staff()
    if staff is None:
        flash(_("Please sign in with your password first."), "info")
        return redirect(url_for("backoffice.login"))
    if staff.totp_secret is None:
        return redirect(url_for("backoffice.enrol", next=request.args.get("next")))
    form = TotpForm()
    if form.validate_on_submit():
        if service.verify_totp(db.session, context.clock(), staff, form.code.data):
            return _signed_in(staff)
        db.session.rollback()
        service.record_failed_sign_in(staff, context.clock().now())
        db.session.commit()
        form.code.errors.append(_("That code is wrong or was already used. Wait for the next "
                                  "code and try again."))
    return render_template("backoffice/totp.html", form=form), 400 if form.errors else 200


@bp.route("/login/enrol", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], deduct_when=_failed)
@limiter.limit(_login_limit, methods=["POST"], key_func=_pending_key, deduct_when=_failed)
@public
def enrol() -> ResponseReturnValue:
    staff = pending_staff()
    if staff is None:
        flash(_("Please sign in with your password first."), "info")
        return redirect(url_for("backoffice.login"))
    if staff.totp_secret is not None:
        return redirect(url_for("backoffice.totp", next=request.args.get("next")))
    secret = session.get(ENROL_KEY) or service.new_totp_secret()
    session[ENROL_KEY] = secret
    form = TotpForm()
    if form.validate_on_submit():
        if service.enrol_totp(db.session, context.clock(), staff, secret, form.code.data):
            flash(_("Your authenticator app is set up. You will need its code at every "
                    "sign-in."), "success")
            return _signed_in(staff)
        db.session.rollback()
        form.code.errors.append(_("That code does not match. Check the phone's time is set "
                                  "automatically, then enter the newest code."))
    uri = service.totp_uri(staff, secret)
    qr_svg = segno.make(uri, error="m").svg_inline(scale=5, omitsize=False)
    return render_template("backoffice/enrol.html", form=form, qr_svg=qr_svg, secret=secret,
                           uri=uri), 400 if form.errors else 200


@bp.post("/logout")
@public
def logout() -> ResponseReturnValue:
    sign_out()  # CSRFProtect has checked the token, as on every POST
    return redirect(url_for("backoffice.login"))


@bp.route("/password", methods=["GET", "POST"])
@signed_in
def change_password() -> ResponseReturnValue:
    staff = current_staff()
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            service.change_password(db.session, context.clock(), staff, form.current.data,
                                    form.new.data)
        except DomainError as exc:
            db.session.rollback()
            form.form_errors.append(message_for(exc))
        else:
            db.session.commit()
            flash(_("Your password is changed."), "success")
            return redirect(url_for("backoffice.home"))
    return render_template("backoffice/password.html", form=form,
                           forced=staff.must_change_password), 400 if form.errors else 200


# --- work -------------------------------------------------------------------------------------

@bp.get("")
@signed_in
def home() -> ResponseReturnValue:
    staff = current_staff()
    allowed = [p for p in Permission if p in ROLE_PERMISSIONS[staff.role]]
    return render_template("backoffice/home.html", staff=staff, allowed=allowed)


@bp.get("/accounts")
@require(Permission.VIEW_ACCOUNTS)
def accounts() -> ResponseReturnValue:
    query = request.args.get("q", "")[:100]
    page_no = request.args.get("page", 1, type=int) or 1
    page = service.search_accounts(db.session, current_staff(), query, max(1, page_no))
    owed = ledger.owed_by_account(db.session, [a.id for a in page.items])
    return render_template("backoffice/accounts.html", page=page, query=query, owed=owed)


@bp.get("/accounts/<id:account_id>")
@require(Permission.VIEW_ACCOUNTS)
def account(account_id: int) -> ResponseReturnValue:
    acct = service.get_scoped_account(db.session, current_staff(), account_id)
    rows = bills.summaries(db.session, bills.account_bills(db.session, acct.id), context.today())
    owed = ledger.owed_by_account(db.session, [acct.id])[acct.id]
    orders = refunds.account_orders(db.session, acct.id)
    held = {row.bill.id: review_reason_text(row.bill.review_reason)
            for row in rows if row.bill.review_reason}
    return render_template("backoffice/account.html", account=acct, rows=rows, owed=owed,
                           orders=orders, held=held)


# --- staff administration ---------------------------------------------------------------------

def _staff_facts(member: StaffMember) -> dict[str, str]:
    return {"display_name": member.display_name, "role": member.role.value,
            "districts": ",".join(sorted(d.code for d in member.districts))}


def _audit_staff(action: str, member: StaffMember, **details: str) -> None:
    """An administrator's change to a member of staff, audited in the change's transaction."""
    db.session.flush()
    audit.record(db.session, context.clock(), action, "staff", member.id,
                 staff_id=current_staff().id,
                 details={"username": member.username, "role": member.role.value, **details})

def _district_choices(form: StaffEditForm) -> None:
    form.districts.choices = [(d.id, f"{d.name} ({d.code})")
                              for d in service.all_districts(db.session)]


def _edit_form(member: StaffMember, from_request: bool) -> StaffEditForm:
    form = StaffEditForm() if from_request else StaffEditForm(
        formdata=None, display_name=member.display_name, role=member.role.value,
        districts=[d.id for d in member.districts])
    _district_choices(form)
    return form


@bp.get("/admin/staff")
@require(Permission.MANAGE_STAFF)
def staff_list() -> ResponseReturnValue:
    return render_template("backoffice/staff_list.html", members=service.list_staff(db.session))


@bp.route("/admin/staff/new", methods=["GET", "POST"])
@require(Permission.MANAGE_STAFF)
def staff_new() -> ResponseReturnValue:
    form = StaffCreateForm()
    _district_choices(form)
    if form.validate_on_submit():
        try:
            member = service.create_staff(
                db.session, context.clock(), username=form.username.data,
                display_name=form.display_name.data, password=form.password.data,
                role=StaffRole(form.role.data), district_ids=form.districts.data or [])
        except DomainError as exc:
            db.session.rollback()
            form.form_errors.append(message_for(exc))
        else:
            _audit_staff("staff.create", member)
            db.session.commit()
            flash(_("%(name)s can now sign in as %(username)s and must choose a new password "
                    "first.", name=member.display_name, username=member.username), "success")
            return redirect(url_for("backoffice.staff_list"))
    return render_template("backoffice/staff_form.html", form=form, member=None), \
        400 if form.errors else 200


@bp.route("/admin/staff/<id:staff_id>", methods=["GET", "POST"])
@require(Permission.MANAGE_STAFF)
def staff_edit(staff_id: int) -> ResponseReturnValue:
    member = service.get_staff(db.session, staff_id)
    form = _edit_form(member, from_request=request.method == "POST")
    if form.validate_on_submit():
        before = _staff_facts(member)
        try:
            service.update_staff(db.session, member, display_name=form.display_name.data,
                                 role=StaffRole(form.role.data),
                                 district_ids=form.districts.data or [])
        except DomainError as exc:
            db.session.rollback()
            form.form_errors.append(message_for(exc))
        else:
            after = _staff_facts(member)
            _audit_staff("staff.role_change" if after["role"] != before["role"] else "staff.edit",
                         member, **{f"old_{k}": v for k, v in before.items() if after[k] != v},
                         **{f"new_{k}": v for k, v in after.items() if before[k] != v})
            db.session.commit()
            flash(_("Saved."), "success")
            return redirect(url_for("backoffice.staff_list"))
    return render_template("backoffice/staff_form.html", form=form, member=member,
                           reset_form=ResetPasswordForm(), confirm=ConfirmForm()), \
        400 if form.errors else 200


@bp.post("/admin/staff/<id:staff_id>/password")
@require(Permission.MANAGE_STAFF)
def staff_reset_password(staff_id: int) -> ResponseReturnValue:
    member = service.get_staff(db.session, staff_id)
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            service.reset_password(db.session, context.clock(), member, form.password.data)
        except DomainError as exc:
            db.session.rollback()
            form.password.errors.append(message_for(exc))
        else:
            _audit_staff("staff.reset_password", member)
            db.session.commit()
            flash(_("The password is reset; %(username)s must choose a new one at next sign-in.",
                    username=member.username), "success")
            return redirect(url_for("backoffice.staff_list"))
    return render_template("backoffice/staff_form.html", form=_edit_form(member, False),
                           member=member,
                           reset_form=form, confirm=ConfirmForm()), 400


def _confirmed_action(staff_id: int, action: str) -> ResponseReturnValue:
    member = service.get_staff(db.session, staff_id)
    try:
        if action == "deactivate":
            service.deactivate(db.session, member)
            message = _("%(username)s can no longer sign in.", username=member.username)
        else:
            service.reset_totp(db.session, member)
            message = _("%(username)s will set up an authenticator app again at next sign-in.",
                        username=member.username)
    except DomainError as exc:
        db.session.rollback()
        flash(message_for(exc), "error")
        return redirect(url_for("backoffice.staff_edit", staff_id=staff_id))
    _audit_staff(f"staff.{action}", member)
    db.session.commit()
    flash(message, "success")
    return redirect(url_for("backoffice.staff_list"))


@bp.post("/admin/staff/<id:staff_id>/deactivate")
@require(Permission.MANAGE_STAFF)
def staff_deactivate(staff_id: int) -> ResponseReturnValue:
    return _confirmed_action(staff_id, "deactivate")


@bp.post("/admin/staff/<id:staff_id>/totp")
@require(Permission.MANAGE_STAFF)
def staff_reset_totp(staff_id: int) -> ResponseReturnValue:
    return _confirmed_action(staff_id, "reset_totp")

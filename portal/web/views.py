"""Customer web views: sign-up, sign-in, linking accounts, bills and usage."""

from __future__ import annotations

from flask import (
    Blueprint,
    flash,
    get_template_attribute,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from billing_adapter.local.tariffs import TariffBook
from portal import context
from portal.accounts import service as accounts
from portal.accounts.models import Customer
from portal.backoffice.auth import is_staff_request
from portal.backoffice.models import StaffMember
from portal.bills import explain, late_fees
from portal.bills import service as bills
from portal.bills.pdf import LineRow, render_bill
from portal.disputes import service as disputes
from portal.extensions import db, limiter, login_manager
from portal.i18n import message_for
from portal.kernel.errors import DomainError, NotFound
from portal.ledger import service as ledger
from portal.security import is_same_site_path
from portal.web.forms import LinkAccountForm, LoginForm, SignupForm

bp = Blueprint("web", __name__)

login_manager.login_view = "web.login"
login_manager.login_message = None
login_manager.session_protection = "strong"


@login_manager.user_loader
def load_user(user_id: str) -> Customer | StaffMember | None:
    """Customers (``c:<id>``) exist only on the customer site, staff (``s:<id>``) only under
    /staff: on either side the other's session counts as signed out."""
    kind, _sep, raw = user_id.partition(":")
    model: type[Customer | StaffMember] = StaffMember if is_staff_request() else Customer
    if kind != ("s" if model is StaffMember else "c") or not raw.isdigit():
        return None
    user = db.session.get(model, int(raw))
    return user if user is not None and user.is_active else None


def _login_limit() -> str:
    return context.settings().login_rate_limit


def _login_phone_key() -> str:
    return "login-phone:" + accounts.normalise_phone(request.form.get("phone", ""))[:20]


def _failed(response: object) -> bool:
    return getattr(response, "status_code", 200) != 302


def _safe_next(target: str | None) -> str:
    """Only same-site paths (``portal.security.is_same_site_path``); anything else, such as
    ``//evil.example``, ``////evil.example`` or ``https://...``, goes to the dashboard."""
    return target if is_same_site_path(target) else url_for("web.dashboard")


def _sign_in(customer: Customer) -> None:
    lang = session.get("lang")
    session.clear()  # no pre-login session data survives sign-in (fixation)
    if lang:
        session["lang"] = lang
    session.permanent = True
    login_user(customer)


@bp.get("/")
def index() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("web.dashboard"))
    return redirect(url_for("web.login"))


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], deduct_when=_failed)
def signup() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("web.dashboard"))
    form = SignupForm()
    if form.validate_on_submit():
        try:
            customer = accounts.register(db.session, context.clock(), form.phone.data,
                                         form.password.data)
        except accounts.PhoneTaken as exc:
            db.session.rollback()
            form.phone.errors.append(message_for(exc))
        else:
            db.session.commit()
            _sign_in(customer)
            flash(_("Welcome! Link your electricity account to see its bills."), "success")
            return redirect(url_for("web.link_account"))
    return render_template("web/signup.html", form=form), 400 if form.errors else 200


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], deduct_when=_failed)
@limiter.limit(_login_limit, methods=["POST"], key_func=_login_phone_key, deduct_when=_failed)
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    if form.validate_on_submit():
        customer = accounts.authenticate(db.session, context.clock(), form.phone.data,
                                         form.password.data)
        if customer is not None:
            db.session.commit()
            _sign_in(customer)
            return redirect(_safe_next(request.args.get("next")))
        form.password.errors.append(_("The mobile number or password is wrong."))
    return render_template("web/login.html", form=form), 400 if form.errors else 200


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    logout_user()
    session.clear()
    return redirect(url_for("web.login"))


@bp.get("/dashboard")
@login_required
def dashboard() -> ResponseReturnValue:
    linked = accounts.linked_accounts(db.session, current_user.id)
    owed = ledger.owed_by_account(db.session, [a.id for a in linked])
    newest = bills.latest_bills(db.session, [a.id for a in linked])
    latest = {s.bill.account_id: s
              for s in bills.summaries(db.session, list(newest.values()), context.today())}
    return render_template("web/dashboard.html", accounts=linked, owed=owed, latest=latest)


@bp.route("/accounts/link", methods=["GET", "POST"])
@login_required
@limiter.shared_limit(lambda: context.settings().link_rate_limit, accounts.LINK_LIMIT_SCOPE,
                      methods=["POST"], key_func=lambda: f"link:{current_user.id}",
                      deduct_when=_failed)
def link_account() -> ResponseReturnValue:
    form = LinkAccountForm()
    if form.validate_on_submit():
        try:
            link = accounts.link_account(db.session, context.clock(), current_user,
                                         form.account_no.data, form.holder_name.data,
                                         form.meter_last4.data)
        except DomainError as exc:
            db.session.rollback()
            form.form_errors.append(message_for(exc))
        else:
            db.session.commit()
            flash(_("Account %(no)s is linked.", no=link.account.account_no), "success")
            return redirect(url_for("web.account_bills", account_id=link.account_id))
    return render_template("web/link_account.html", form=form), 400 if form.errors else 200


@bp.get("/accounts/<id:account_id>/bills")
@login_required
def account_bills(account_id: int) -> ResponseReturnValue:
    account = accounts.owned_account(db.session, current_user.id, account_id)
    rows = bills.summaries(db.session, bills.account_bills(db.session, account.id),
                           context.today())
    owed = ledger.owed_by_account(db.session, [account.id])[account.id]
    return render_template("web/bills.html", account=account, rows=rows, owed=owed)


def _owned_bill(bill_id: int) -> bills.BillSummary:
    """The bill with its lines and payment state, if it is on an account this customer linked;
    otherwise NotFound, as if it did not exist. Every route showing a bill goes through here."""
    bill = bills.bill_with_lines(db.session, bill_id)
    if bill is None or not accounts.is_linked(db.session, current_user.id, bill.account_id):
        raise NotFound()
    (summary,) = bills.summaries(db.session, [bill], context.today())
    return summary


def _explained(summary: bills.BillSummary) -> dict[str, object]:
    """Tier progress and the late fee so far: what the page and the PDF say beyond the lines."""
    bill = summary.bill
    book = TariffBook.from_db(db.session)
    return {
        "progress": explain.tier_progress(db.session, book, bill),
        "fee": explain.accrued_late_fee(
            bill, bill.account, summary.owed_fen, context.today(),
            late_fees.posted_late_fees(db.session, [bill.id]).get(bill.id, 0)),
    }


@bp.get("/bills/<id:bill_id>")
@login_required
def bill_detail(bill_id: int) -> ResponseReturnValue:
    summary = _owned_bill(bill_id)
    return render_template("web/bill.html", bill=summary.bill, summary=summary,
                           account=summary.bill.account,
                           dispute=disputes.dispute_of_bill(db.session, current_user.id, bill_id),
                           **_explained(summary))


@bp.get("/bills/<id:bill_id>.pdf")
@login_required
def bill_pdf(bill_id: int) -> ResponseReturnValue:
    summary = _owned_bill(bill_id)
    bill, account = summary.bill, summary.bill.account
    extra = _explained(summary)

    def macro(name: str, *args: object) -> str:
        # a macro returns Markup (escaped for HTML); the PDF wants the plain text back
        return str(get_template_attribute("macros/bills.html", name)(*args).unescape())

    rows = [LineRow(macro("line_label", line).strip(), macro("line_derivation", line).strip(),
                    line.amount_fen) for line in bill.lines]
    notes = [macro(name, extra[key]).strip()
             for key, name in (("progress", "progress_text"), ("fee", "late_fee_text"))
             if extra[key] is not None]
    labels = {
        "title": _("Electricity bill for %(period)s", period=bill.period),
        "account": _("Account"), "holder": _("Account holder"), "address": _("Address"),
        "period": _("Billing period"), "kwh": _("Electricity used"), "tariff": _("Tariff"),
        "due": _("Due date"), "item": _("Item"), "derivation": _("kWh × price = amount"),
        "amount": _("Amount (yuan)"), "total": _("Total"),
        "rule": _("Each line is kWh × price, rounded half up to the fen; the total is the sum "
                  "of the lines."),
    }
    pdf = render_bill(bill, account, labels, rows, notes)
    response = make_response(pdf)
    response.mimetype = "application/pdf"
    response.headers["Content-Disposition"] = (
        f'attachment; filename="dianfei-{account.account_no}-{bill.period}.pdf"')
    return response


@bp.get("/accounts/<id:account_id>/usage")
@login_required
def usage(account_id: int) -> ResponseReturnValue:
    account = accounts.owned_account(db.session, current_user.id, account_id)
    points = bills.usage_history(db.session, account.id, months=24)
    series = {
        "periods": [p.period for p in points],
        "kwh": [str(p.kwh) for p in points],
        "peak": [str(p.peak_kwh) if p.peak_kwh is not None else None for p in points],
        "flat": [str(p.flat_kwh) if p.flat_kwh is not None else None for p in points],
        "valley": [str(p.valley_kwh) if p.valley_kwh is not None else None for p in points],
        "total_fen": [p.total_fen for p in points],
    }
    return render_template("web/usage.html", account=account, points=points, series=series)


@bp.get("/healthz")
@limiter.exempt
def healthz() -> ResponseReturnValue:
    return {"status": "ok"}



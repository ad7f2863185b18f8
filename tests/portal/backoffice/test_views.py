"""The back office over HTTP: every /staff route for every role, district scoping on every route
that takes an id, the sign-in steps, session limits, and staff administration."""

import re
from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa
from flask import url_for

from portal import context
from portal.accounts.models import ElectricityAccount
from portal.backoffice import service
from portal.backoffice.auth import STAFF_PREFIX
from portal.backoffice.models import ROLE_PERMISSIONS, Permission, StaffMember, StaffRole
from portal.demo import DEMO_PASSWORD, DEMO_TOTP_SECRET, STAFF
from portal.extensions import db
from tests.helpers import FormClient, csrf_token, text_of

from .staffing import (
    difference,
    dispute_with_file,
    flagged_reading,
    held_bill,
    paid_order,
    requested_plan,
    requested_refund,
    staff_login,
    staff_message,
    totp_code,
)

ROLE_USER = {StaffRole.READER: "bj-reader", StaffRole.AUDITOR: "bj-auditor",
             StaffRole.COLLECTOR: "bj-collector", StaffRole.SUPERVISOR: "bj-supervisor",
             StaffRole.ADMIN: "admin"}


def _id(app, model, **where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(model.id).filter_by(**where))


def _reading_of(app, clock, account_no: str) -> int:
    with app.app_context():
        return flagged_reading(db.session, clock, account_no)


def _refund_of(app, clock, account_no: str, requested_by: str) -> tuple[int, int]:
    """A paid order of the account and a refund of it awaiting approval: (order id, refund id)."""
    with app.app_context():
        order = paid_order(db.session, clock, account_no)
        return order.id, requested_refund(db.session, clock, order, requested_by).id


def _held(app, clock, account_no: str) -> int:
    """A bill of the account held for review (the demo holds 1100000001's newest one)."""
    with app.app_context():
        return held_bill(db.session, clock, account_no).id


@pytest.fixture
def settings_overrides(tmp_path):
    return {"dispute_attachments_dir": tmp_path / "files"}


def _dispute_of(app, clock, account_no: str, tmp_path) -> tuple[int, int]:
    """A dispute with one attachment on the account's newest bill: (dispute id, file id)."""
    with app.app_context():
        return dispute_with_file(db.session, clock, account_no, tmp_path / "files")


def _plan_of(app, account_no: str) -> int:
    """A requested payment plan (with an attachment) of the account: its id."""
    with app.app_context():
        return requested_plan(db.session, context.clock(), account_no,
                              context.settings().plan_attachment_dir).id


def _message_of(app, clock, username: str) -> int:
    with app.app_context():
        return staff_message(db.session, clock, username)


def _difference_of(app, clock, account_no: str) -> int:
    with app.app_context():
        return difference(db.session, clock, account_no, order_no=f"DF-{account_no}").id


def _staff_routes(app):
    """Every rule under /staff, with the view's access rule (None when it has none)."""
    for rule in app.url_map.iter_rules():
        if rule.rule == STAFF_PREFIX or rule.rule.startswith(STAFF_PREFIX + "/"):
            view = app.view_functions[rule.endpoint]
            yield rule, getattr(view, "staff_access", None)


def _methods(rule) -> list[str]:
    return sorted(rule.methods - {"HEAD", "OPTIONS"})


def _call(web: FormClient, method: str, url: str):
    if method == "GET":
        return web.get(url)
    token = csrf_token(web.get(f"{STAFF_PREFIX}/password").get_data(as_text=True))
    return web.client.post(url, data={"csrf_token": token})


def test_every_staff_route_has_an_access_rule(app) -> None:
    routes = list(_staff_routes(app))
    assert len(routes) >= 10
    missing = [rule.rule for rule, access in routes if access is None]
    assert not missing, f"add @require(...), @signed_in or @public to: {missing}"


@pytest.mark.parametrize("role", list(StaffRole))
def test_role_by_route_matrix(app, web, clock, demo, role, tmp_path) -> None:
    """Generated from the route map: a route added without a rule, or a rule that lets the
    wrong role in, fails here."""
    order_id, refund_id = _refund_of(app, clock, "1100000001", "bj-collector")
    reading_id = _reading_of(app, clock, "1100000001")
    dispute_id, attachment_id = _dispute_of(app, clock, "1100000001", tmp_path)
    assert staff_login(web, clock, ROLE_USER[role]).status_code == 302
    sample_ids = {
        "account_id": _id(app, ElectricityAccount, account_no="1100000001"),  # bj-dongcheng
        "staff_id": _id(app, StaffMember, username="hz-reader"),
        "order_id": order_id,
        "refund_id": refund_id,
        "reading_id": reading_id,
        "bill_id": _held(app, clock, "1100000001"),
        "figure": "collection",
        "dispute_id": dispute_id,
        "attachment_id": attachment_id,
        "plan_id": _plan_of(app, "1100000001"),
        "difference_id": _difference_of(app, clock, "1100000001"),
        "message_id": _message_of(app, clock, ROLE_USER[role]),  # their own
    }
    # POSTs last, and the one that deactivates someone at the very end
    calls = sorted(((method, rule, access) for rule, access in _staff_routes(app)
                    if access != "public" for method in _methods(rule)),
                   key=lambda c: (c[0] == "POST", "deactivate" in c[1].rule, c[1].rule))
    for method, rule, access in calls:
        unknown = set(rule.arguments) - set(sample_ids)
        assert not unknown, f"give the matrix a sample id for {unknown} ({rule.rule})"
        with app.test_request_context():
            url = url_for(rule.endpoint, **{a: sample_ids[a] for a in rule.arguments})
        response = _call(web, method, url)
        allowed = access == "signed_in" or access in ROLE_PERMISSIONS[role]
        where = f"{method} {rule.rule} as {role.value}"
        if allowed:
            assert response.status_code not in (401, 403, 404), where
            assert not (response.location or "").startswith("/staff/login"), where
        else:
            assert response.status_code == 403, where
            assert "角色" in text_of(response), where  # the page says it is the role


def test_403_page_names_the_role_and_what_is_missing(web, clock, demo) -> None:
    staff_login(web, clock, "bj-reader")
    page = text_of(web.get("/staff/admin/staff?lang=en"))
    assert "Your role (Meter reader (抄表)) may not do this: Manage staff" in page


@pytest.mark.parametrize("username", ["bj-auditor", "bj-collector", "bj-supervisor"])
def test_other_districts_accounts_are_404_on_every_route_with_an_id(app, web, clock, demo,
                                                                     username, tmp_path) -> None:
    own_order, own_refund = _refund_of(app, clock, "1100000001", "bj-collector")
    other_order, other_refund = _refund_of(app, clock, "3300000001", "hz-collector")  # hz-xihu
    own_reading, other_reading = (_reading_of(app, clock, "1100000001"),
                                  _reading_of(app, clock, "3300000001"))
    own_dispute, own_file = _dispute_of(app, clock, "1100000001", tmp_path)
    other_dispute, other_file = _dispute_of(app, clock, "3300000001", tmp_path)
    assert staff_login(web, clock, username).status_code == 302
    role = next(r for r, u in ROLE_USER.items() if u == username)
    own = _id(app, ElectricityAccount, account_no="1100000001")
    other = _id(app, ElectricityAccount, account_no="3300000001")   # hz-xihu
    scoped = {"account_id": (own, other), "order_id": (own_order, other_order),
              "refund_id": (own_refund, other_refund),
              "plan_id": (_plan_of(app, "1100000001"), _plan_of(app, "3300000001")),
              "dispute_id": (own_dispute, other_dispute),
              "attachment_id": (own_file, other_file),
              "reading_id": (own_reading, other_reading),
              "difference_id": (_difference_of(app, clock, "1100000001"),
                                _difference_of(app, clock, "3300000001")),
              # a staff member's messages are theirs alone, whatever the district
              "message_id": (_message_of(app, clock, username),
                             _message_of(app, clock, "bj-reader")),
              # after the plans: a held bill made here is the account's newest bill
              "bill_id": (_held(app, clock, "1100000001"), _held(app, clock, "3300000001"))}
    checked = 0
    for rule, access in _staff_routes(app):
        args = set(rule.arguments)
        if not args & set(scoped) or access == "public":
            continue
        if isinstance(access, Permission) and access not in ROLE_PERMISSIONS[role]:
            continue  # a 403 first (the matrix checks it)
        assert args <= set(scoped), f"say how {rule.rule} is scoped"
        for method in _methods(rule):
            with app.test_request_context():
                mine = url_for(rule.endpoint, **{a: scoped[a][0] for a in args})
                theirs = url_for(rule.endpoint, **{a: scoped[a][1] for a in args})
            assert _call(web, method, mine).status_code != 404, mine
            response = _call(web, method, theirs)
            assert response.status_code == 404, f"{method} {theirs}"
            assert "3300000001" not in response.get_data(as_text=True)
            checked += 1
    assert checked >= {"bj-auditor": 14, "bj-collector": 10, "bj-supervisor": 19}[username]
    assert checked >= {"bj-auditor": 12, "bj-collector": 10, "bj-supervisor": 17}[username]


def test_account_search_stays_in_the_district(web, clock, demo) -> None:
    staff_login(web, clock, "hz-collector")
    page = text_of(web.get("/staff/accounts"))
    assert "3300000001" in page and "3300000009" in page and "1100000001" not in page
    page = text_of(web.get("/staff/accounts?q=陈"))
    assert "3300000001" in page and "3300000009" not in page
    assert "1100000001" not in text_of(web.get("/staff/accounts?q=1100"))
    # a page far past the last (a typo, an edited address): an empty page, not a 500
    far = web.get("/staff/accounts?page=" + "9" * 25)
    assert far.status_code == 200 and "3300000001" not in text_of(far)


def test_admin_sees_every_district_and_an_accounts_bills(app, web, clock, demo) -> None:
    staff_login(web, clock, "admin")
    page = text_of(web.get("/staff/accounts?lang=en"))
    for no in ("1100000001", "1100000002", "1100000005", "3300000001", "3300000009"):
        assert no in page
    account_id = _id(app, ElectricityAccount, account_no="1100000002")
    page = text_of(web.get(f"/staff/accounts/{account_id}?lang=en"))
    assert "李明" in page and "2026-11" in page and "Overdue" in page and "¥" in page
    home = text_of(web.get("/staff?lang=en"))
    assert "All districts" in home and "Administrator" in home


def test_home_shows_role_and_districts(web, clock, demo) -> None:
    staff_login(web, clock, "hz-auditor")
    html = web.get("/staff").get_data(as_text=True)
    assert 'data-role="auditor"' in html and 'data-district="hz-xihu"' in html
    assert 'data-district="bj-dongcheng"' not in html
    assert 'data-permission="review_bills"' in html
    assert 'data-permission="approve_refund"' not in html


# --- sign-in ---------------------------------------------------------------------------------

def test_wrong_password_is_refused_and_counted(app, web, demo) -> None:
    response = web.submit("/staff/login", {"username": "bj-reader", "password": "wrong pass"})
    assert response.status_code == 400
    assert "用户名或密码错误" in text_of(response)
    with app.app_context():
        assert db.session.scalar(sa.select(StaffMember.failed_logins)
                                 .where(StaffMember.username == "bj-reader")) == 1


def test_sign_in_is_rate_limited_per_address_and_per_username(web, demo) -> None:
    bad = {"username": "bj-reader", "password": "wrong pass"}
    for n in range(10):
        assert web.submit("/staff/login", bad, environ_base={"REMOTE_ADDR": f"10.0.0.{n}"}
                          ).status_code == 400
    # the 11th try at this username is refused even from a new address ...
    limited = web.submit("/staff/login", bad, environ_base={"REMOTE_ADDR": "10.0.1.1"})
    assert limited.status_code == 429
    # ... while another username from that address still gets its answer
    other = web.submit("/staff/login", {"username": "hz-reader", "password": DEMO_PASSWORD},
                       environ_base={"REMOTE_ADDR": "10.0.1.1"})
    assert other.status_code == 302
    web.submit("/staff/logout", {}, page="/staff")
    for n in range(9):
        web.submit("/staff/login", {"username": f"user{n}", "password": "x"},
                   environ_base={"REMOTE_ADDR": "10.0.2.2"})
    assert web.submit("/staff/login", {"username": "user-x", "password": "x"},
                      environ_base={"REMOTE_ADDR": "10.0.2.2"}).status_code == 400
    assert web.submit("/staff/login", {"username": "user-y", "password": "x"},
                      environ_base={"REMOTE_ADDR": "10.0.2.2"}).status_code == 429


def test_supervisor_needs_the_totp_code_and_a_code_is_not_replayed(web, clock, demo) -> None:
    response = web.submit("/staff/login", {"username": "bj-supervisor",
                                           "password": DEMO_PASSWORD})
    assert response.status_code == 302 and response.location.startswith("/staff/login/code")
    assert web.get("/staff").location.startswith("/staff/login"), "not signed in yet"
    later = pyotp.TOTP(DEMO_TOTP_SECRET).at(clock.now() + timedelta(minutes=10))
    wrong = web.submit("/staff/login/code", {"code": later})
    assert wrong.status_code == 400 and "验证码不正确" in text_of(wrong)
    with web.client.application.app_context():
        assert db.session.scalar(sa.select(StaffMember.failed_logins)
                                 .filter_by(username="bj-supervisor")) == 1
    code = totp_code(clock)
    assert web.submit("/staff/login/code", {"code": code}).location == "/staff"
    assert web.get("/staff").status_code == 200
    web.submit("/staff/logout", {}, page="/staff")
    again = web.submit("/staff/login", {"username": "bj-supervisor", "password": DEMO_PASSWORD})
    assert again.location.startswith("/staff/login/code")
    replay = web.submit("/staff/login/code", {"code": code})
    assert replay.status_code == 400, "the same code cannot sign in twice"
    clock.advance(timedelta(seconds=30))
    assert web.submit("/staff/login/code", {"code": totp_code(clock)}).status_code == 302


def test_the_code_step_needs_the_password_step_first_and_expires(web, clock, demo) -> None:
    response = web.get("/staff/login/code")
    assert response.status_code == 302 and response.location == "/staff/login"
    web.submit("/staff/login", {"username": "admin", "password": DEMO_PASSWORD})
    clock.advance(timedelta(minutes=6))
    assert web.submit("/staff/login/code", {"code": totp_code(clock)},
                      page="/staff/login").location == "/staff/login"


def test_first_sign_in_enrols_totp_then_forces_a_password_change(app, web, clock, demo) -> None:
    with app.app_context():
        service.create_staff(db.session, clock, username="new-boss", display_name="新主管",
                             password="first password 1", role=StaffRole.SUPERVISOR,
                             district_ids=service.district_ids_for_codes(db.session, ["hz-xihu"]))
        db.session.commit()
    response = web.submit("/staff/login", {"username": "new-boss",
                                           "password": "first password 1"})
    assert response.location.startswith("/staff/login/enrol")
    assert web.get("/staff/login/code").location.startswith("/staff/login/enrol")
    page = web.get("/staff/login/enrol").get_data(as_text=True)
    assert "<svg" in page
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page).group(1)
    assert web.submit("/staff/login/enrol", {"code": "12345"}).status_code == 400
    response = web.submit("/staff/login/enrol", {"code": pyotp.TOTP(secret).at(clock.now())})
    assert response.status_code == 302 and response.location == "/staff"
    assert web.get("/staff/login/enrol").location == "/staff/login"  # the pending step is over

    # nothing but the password change opens until it is done
    for url in ("/staff", "/staff/accounts", "/staff/admin/staff"):
        assert web.get(url).location == "/staff/password", url
    page = text_of(web.get("/staff/password"))
    assert "在完成之前" in page or "请先设置新密码" in page
    mismatch = web.submit("/staff/password", {"current": "first password 1",
                                              "new": "second password 2", "confirm": "x"})
    assert mismatch.status_code == 400
    wrong = web.submit("/staff/password", {"current": "not it at all", "new": "second password 2",
                                           "confirm": "second password 2"})
    assert wrong.status_code == 400 and "当前密码不正确" in text_of(wrong)
    done = web.submit("/staff/password", {"current": "first password 1",
                                          "new": "second password 2",
                                          "confirm": "second password 2"})
    assert done.location == "/staff"
    assert web.get("/staff").status_code == 200
    with app.app_context():
        member = db.session.scalar(sa.select(StaffMember).filter_by(username="new-boss"))
        assert member.totp_secret == secret and not member.must_change_password


def test_sign_in_returns_to_the_page_asked_for_and_only_staff_pages(web, clock, demo) -> None:
    first = web.get("/staff/accounts?q=11")
    assert first.location == "/staff/login?next=/staff/accounts?q%3D11"
    response = web.submit(first.location, {"username": "bj-reader", "password": DEMO_PASSWORD})
    assert response.location == "/staff/accounts?q=11"
    web.submit("/staff/logout", {}, page="/staff")
    for target in ("//evil.example/staff", "/dashboard", "https://evil.example/staff",
                   "////evil.example/staff", "/staff/%0Aaccounts"):
        response = web.submit(f"/staff/login?next={target}",
                              {"username": "bj-reader", "password": DEMO_PASSWORD})
        assert response.status_code == 302 and response.location == "/staff", target
        assert web.get(f"/staff/login?next={target}").location == "/staff", target
        web.submit("/staff/logout", {}, page="/staff")


def test_idle_and_absolute_session_limits(web, clock, demo) -> None:
    staff_login(web, clock, "bj-reader")
    clock.advance(timedelta(minutes=29))
    assert web.get("/staff").status_code == 200
    clock.advance(timedelta(minutes=31))
    expired = web.get("/staff/accounts")
    assert expired.status_code == 302 and expired.location.startswith("/staff/login")
    assert "会话已过期" in text_of(web.get(expired.location))
    assert web.get("/staff").status_code == 302, "the session is gone, not just paused"

    staff_login(web, clock, "bj-reader")
    signed_in_at = clock.now()
    while web.get("/staff").status_code == 200:  # busy all day: never idle ...
        clock.advance(timedelta(minutes=20))
    # ... but the session still ends 10 hours after signing in
    assert timedelta(hours=10) < clock.now() - signed_in_at <= timedelta(hours=10, minutes=20)
    assert web.get("/staff").location.startswith("/staff/login")


def test_session_is_fixed_at_sign_in_and_cleared_at_sign_out(web, clock, demo) -> None:
    with web.client.session_transaction() as sess:
        sess["planted"] = "by an attacker"
    staff_login(web, clock, "bj-reader")
    with web.client.session_transaction() as sess:
        assert "planted" not in sess and sess["_user_id"].startswith("s:")
    assert web.submit("/staff/logout", {}, page="/staff").location == "/staff/login"
    with web.client.session_transaction() as sess:
        assert "_user_id" not in sess
    assert web.client.post("/staff/logout").status_code == 400, "CSRF checked on logout"


def test_customer_session_cannot_reach_staff_pages_and_vice_versa(web, clock, demo) -> None:
    assert web.login("13800000001", DEMO_PASSWORD).status_code == 302
    assert web.get("/dashboard").status_code == 200
    for url in ("/staff", "/staff/accounts", "/staff/admin/staff", "/staff/password"):
        response = web.get(url)
        assert response.status_code == 302 and response.location.startswith("/staff/login"), url

    staff = FormClient(web.client.application.test_client())
    assert staff_login(staff, clock, "admin").status_code == 302   # staff id 9 ...
    assert staff.get("/staff").status_code == 200
    dashboard = staff.get("/dashboard")   # ... is not customer 9, nor any customer
    assert dashboard.status_code == 302 and dashboard.location.startswith("/login")
    assert staff.get("/accounts/1/bills").status_code == 302


def test_deactivated_staff_are_signed_out_and_cannot_sign_in(app, web, clock, demo) -> None:
    staff_login(web, clock, "hz-reader")
    admin = FormClient(app.test_client())
    staff_login(admin, clock, "admin")
    hz_reader = _id(app, StaffMember, username="hz-reader")
    response = admin.submit(f"/staff/admin/staff/{hz_reader}/deactivate", {},
                            page=f"/staff/admin/staff/{hz_reader}")
    assert response.location == "/staff/admin/staff"
    assert web.get("/staff").location.startswith("/staff/login")
    assert web.submit("/staff/login", {"username": "hz-reader",
                                       "password": DEMO_PASSWORD}).status_code == 400


# --- administration --------------------------------------------------------------------------

def test_admin_creates_edits_resets_and_deactivates_staff(app, web, clock, demo) -> None:
    staff_login(web, clock, "admin")
    listing = text_of(web.get("/staff/admin/staff"))
    for username, *_ in STAFF:
        assert username in listing
    with app.app_context():
        bj, hz = service.district_ids_for_codes(db.session, ["bj-dongcheng", "hz-xihu"])

    form = {"username": "Zhao.Lei", "display_name": "赵磊", "role": "collector",
            "password": "first password 1"}
    refused = web.submit("/staff/admin/staff/new", form)
    assert refused.status_code == 400 and "至少选择一个区域" in text_of(refused)
    taken = web.submit("/staff/admin/staff/new", {**form, "username": "bj-reader",
                                                  "districts": str(bj)})
    assert taken.status_code == 400 and "用户名已被使用" in text_of(taken)
    bad_role = web.submit("/staff/admin/staff/new", {**form, "role": "boss", "districts": str(bj)})
    assert bad_role.status_code == 400
    created = web.submit("/staff/admin/staff/new", {**form, "districts": str(bj)})
    assert created.location == "/staff/admin/staff"
    assert "zhao.lei" in text_of(web.get("/staff/admin/staff"))
    new_id = _id(app, StaffMember, username="zhao.lei")

    edit = web.get(f"/staff/admin/staff/{new_id}").get_data(as_text=True)
    assert 'value="collector" selected' in edit or 'selected value="collector"' in edit
    saved = web.submit(f"/staff/admin/staff/{new_id}",
                       {"display_name": "赵磊", "role": "auditor", "districts": [str(bj), str(hz)]})
    assert saved.location == "/staff/admin/staff"
    with app.app_context():
        member = db.session.get(StaffMember, new_id)
        assert member.role is StaffRole.AUDITOR
        assert {d.code for d in member.districts} == {"bj-dongcheng", "hz-xihu"}

    weak = web.submit(f"/staff/admin/staff/{new_id}/password", {"password": "short"},
                      page=f"/staff/admin/staff/{new_id}")
    assert weak.status_code == 400
    reset = web.submit(f"/staff/admin/staff/{new_id}/password", {"password": "temporary pass 9"},
                       page=f"/staff/admin/staff/{new_id}")
    assert reset.location == "/staff/admin/staff"

    member_web = FormClient(app.test_client())
    assert staff_login(member_web, clock, "zhao.lei", "temporary pass 9").location == "/staff"
    assert member_web.get("/staff/accounts").location == "/staff/password"

    admin_id = _id(app, StaffMember, username="admin")
    last = web.submit(f"/staff/admin/staff/{admin_id}/deactivate", {},
                      page=f"/staff/admin/staff/{admin_id}")
    assert last.location == f"/staff/admin/staff/{admin_id}"
    assert "最后一位" in text_of(web.get(last.location))
    demote = web.submit(f"/staff/admin/staff/{admin_id}", {"display_name": "x", "role": "reader",
                                                           "districts": str(bj)})
    assert demote.status_code == 400


def test_admin_resets_a_lost_authenticator(app, web, clock, demo) -> None:
    staff_login(web, clock, "admin")
    supervisor = _id(app, StaffMember, username="hz-supervisor")
    assert "重置验证器" in text_of(web.get(f"/staff/admin/staff/{supervisor}"))
    response = web.submit(f"/staff/admin/staff/{supervisor}/totp", {},
                          page=f"/staff/admin/staff/{supervisor}")
    assert response.location == "/staff/admin/staff"
    other = FormClient(app.test_client())
    response = other.submit("/staff/login", {"username": "hz-supervisor",
                                             "password": DEMO_PASSWORD})
    assert response.location.startswith("/staff/login/enrol")
    assert web.get("/staff/admin/staff/987654").status_code == 404


def test_readme_permission_table_and_demo_staff_match_the_code() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    header = re.search(r"^\| permission \|(.*)\|$", readme, re.M).group(1)
    roles = [StaffRole(cell.strip()) for cell in header.split("|")]
    for permission in Permission:
        row = re.search(rf"^\| `{permission.value}` \|(.*)\|$", readme, re.M)
        assert row, f"README lacks the permission {permission.value}"
        ticks = {role for role, cell in zip(roles, row.group(1).split("|"), strict=True)
                 if cell.strip()}
        assert ticks == {r for r in StaffRole if permission in ROLE_PERMISSIONS[r]}, permission
    for username, *_ in STAFF:
        assert f"`{username}`" in readme


def test_signed_in_staff_skip_the_sign_in_page_and_keep_their_language(web, clock, demo) -> None:
    web.get("/staff/login?lang=en")
    staff_login(web, clock, "bj-collector")
    assert web.get("/staff/login").location == "/staff"
    assert web.get("/staff/login?next=/staff/accounts").location == "/staff/accounts"
    assert "Your districts" in text_of(web.get("/staff"))


def test_enrolment_refuses_a_wrong_code_and_needs_a_recent_password_step(app, web, clock,
                                                                         demo) -> None:
    assert web.get("/staff/login/enrol").location == "/staff/login"
    with app.app_context():
        admin = db.session.scalar(sa.select(StaffMember).filter_by(username="admin"))
        service.reset_totp(db.session, admin)
        db.session.commit()
        admin_id = admin.id
    web.submit("/staff/login", {"username": "admin", "password": DEMO_PASSWORD})
    page = web.get("/staff/login/enrol").get_data(as_text=True)
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page).group(1)
    assert secret in web.get("/staff/login/enrol").get_data(as_text=True), "same key on reload"
    later = pyotp.TOTP(secret).at(clock.now() + timedelta(minutes=10))
    wrong = web.submit("/staff/login/enrol", {"code": later})
    assert wrong.status_code == 400 and "验证码不匹配" in text_of(wrong)
    clock.advance(timedelta(minutes=6))
    late = web.submit("/staff/login/enrol", {"code": pyotp.TOTP(secret).at(clock.now())},
                      page="/staff/login")
    assert late.location == "/staff/login"
    with app.app_context():
        assert db.session.get(StaffMember, admin_id).totp_secret is None


def test_admin_reset_password_refuses_the_username(app, web, clock, demo) -> None:
    staff_login(web, clock, "admin")
    member = _id(app, StaffMember, username="bj-collector")
    refused = web.submit(f"/staff/admin/staff/{member}/password", {"password": "BJ-Collector"},
                         page=f"/staff/admin/staff/{member}")
    assert refused.status_code == 400 and "不能与用户名相同" in text_of(refused)


def test_current_staff_outside_a_staff_session(app) -> None:
    from werkzeug.exceptions import Unauthorized

    from portal.backoffice.auth import current_staff

    with app.test_request_context("/staff"), pytest.raises(Unauthorized):
        current_staff()


def test_staff_see_why_a_bill_is_held_for_review(app, web, clock, demo) -> None:
    """王芳's newest month is a spike the bill run held: staff of her district see the reason."""
    staff_login(web, clock, "bj-auditor")
    account_id = _id(app, ElectricityAccount, account_no="1100000001")
    page = text_of(web.get(f"/staff/accounts/{account_id}"))
    assert "远高于前 6 个月的平均值" in page and "1332.00" in page
    english = text_of(web.get(f"/staff/accounts/{account_id}?lang=en"))
    assert "far above the average" in english
    other = _id(app, ElectricityAccount, account_no="1100000002")  # nothing held there
    assert "far above the average" not in text_of(web.get(f"/staff/accounts/{other}?lang=en"))

"""The resident's first journey over HTTP, and every way a person can get it wrong."""

import re

import pytest
import sqlalchemy as sa

from portal.accounts.models import AccountLink, Customer
from portal.bills.models import Bill
from portal.extensions import db
from tests.helpers import FormClient, text_of

DEMO_FREE = ("1100000005", "张伟", "5678")  # the demo account nobody has linked


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def _bill_id(app, account_no: str, period: str) -> int:
    from portal.accounts.models import ElectricityAccount
    with app.app_context():
        return db.session.scalar(sa.select(Bill.id).join(ElectricityAccount).where(
            ElectricityAccount.account_no == account_no, Bill.period == period))


def test_journey_signup_link_bills_bill_usage(app, web, demo) -> None:
    response = web.signup("13912345678")
    assert response.status_code == 302 and response.location == "/accounts/link"
    response = web.link(*DEMO_FREE)
    assert response.status_code == 302
    account_url = response.location
    assert re.fullmatch(r"/accounts/\d+/bills", account_url)

    page = text_of(web.get(account_url))
    assert "1100000005" in page and "张伟" in page
    assert "2026-11" in page and "2024-12" in page          # 24 months of bills
    assert "未缴" in page and "已缴清" in page              # Chinese by default

    bill_id = _bill_id(app, "1100000005", "2026-11")
    page = text_of(web.get(f"/bills/{bill_id}"))
    assert "电度电费" in page and "0.4883" in page and "合计" in page  # computed lines
    assert "四舍五入" in page

    usage = web.get(account_url.replace("/bills", "/usage"))
    assert usage.status_code == 200
    assert 'id="usage-chart"' in usage.get_data(as_text=True)
    assert "echarts.min.js" in usage.get_data(as_text=True)

    dashboard = text_of(web.get("/dashboard"))
    assert "1100000005" in dashboard and "应缴金额" in dashboard


def test_dashboard_shows_amount_due_and_overdue(web, demo) -> None:
    web.login("13800000002", "dianfei-demo")
    page = text_of(web.get("/dashboard?lang=en"))
    assert "Amount due" in page
    bills_page = text_of(web.get("/accounts/2/bills"))
    assert "Overdue" in bills_page  # the 2026-10 bill was due 2026-11-25


@pytest.mark.parametrize("path", [
    "/accounts/{other_account}/bills", "/accounts/{other_account}/usage", "/bills/{other_bill}",
    "/accounts/999999/bills", "/bills/999999",
])
def test_other_customers_things_are_not_found(app, web, demo, path) -> None:
    web.login("13800000001", "dianfei-demo")
    other_bill = _bill_id(app, "1100000002", "2026-11")
    url = path.format(other_account=2, other_bill=other_bill)
    response = web.get(url)
    assert response.status_code == 404
    page = text_of(response)
    assert "李明" not in page and "1100000002" not in page
    assert "找不到该页面" in page


@pytest.mark.parametrize("path", ["/accounts/abc/bills", "/bills/1%27%20OR%201=1",
                                  "/accounts/-1/usage", "/bills/99999999999999999999999"])
def test_malformed_ids_get_a_clear_404(web, demo, path) -> None:
    web.login("13800000001", "dianfei-demo")
    response = web.get(path + "?lang=en")
    assert response.status_code == 404
    assert "We could not find that page" in text_of(response)


def test_pages_need_sign_in(web, demo) -> None:
    for path in ("/dashboard", "/accounts/link", "/accounts/1/bills", "/bills/1"):
        response = web.get(path)
        assert response.status_code == 302 and response.location.startswith("/login")


def test_wrong_link_details_change_nothing(app, web, demo) -> None:
    web.signup("13912345678")
    before = _count(app, AccountLink)
    for attempt in [("1100000005", "张伟", "0000"), ("1100000005", "李四", "5678"),
                    ("1199999999", "张伟", "5678")]:
        response = web.link(*attempt)
        assert response.status_code == 400
        assert "户号、户名与电表号后4位与我们的记录不符" in text_of(response)
    assert _count(app, AccountLink) == before


def test_link_form_explains_each_bad_field_in_english(app, web, demo) -> None:
    web.signup("13912345678")
    response = web.submit("/accounts/link", {"account_no": "12ab", "holder_name": "x" * 51,
                                             "meter_last4": "56789"}, page="/accounts/link?lang=en")
    page = text_of(response)
    assert response.status_code == 400
    assert "An account number is 8 to 20 digits" in page
    assert "A holder's name has at most 50 characters." in page
    assert "Enter exactly 4 digits." in page


def test_linking_twice_says_so(web, demo) -> None:
    web.login("13800000001", "dianfei-demo")
    response = web.link("1100000001", "王芳", "0001")
    assert response.status_code == 400
    assert "该户号已绑定到您的账号" in text_of(response)


def test_duplicate_phone_is_refused_with_a_message(app, web, demo) -> None:
    before = _count(app, Customer)
    response = web.signup("13800000001")
    assert response.status_code == 400
    assert "该手机号已注册" in text_of(response)
    assert _count(app, Customer) == before


@pytest.mark.parametrize(("data", "message"), [
    ({"phone": "12345", "password": "long enough", "confirm": "long enough"},
     "Enter an 11-digit mainland mobile number"),
    ({"phone": "1" * 300, "password": "long enough", "confirm": "long enough"},
     "A mobile number has 11 digits."),
    ({"phone": "13912345678", "password": "short", "confirm": "short"},
     "Use 8 to 128 characters"),
    ({"phone": "13912345678", "password": "p" * 129, "confirm": "p" * 129},
     "Use 8 to 128 characters"),
    ({"phone": "13912345678", "password": "long enough", "confirm": "different!"},
     "The two passwords are not the same."),
    ({"phone": "", "password": "", "confirm": ""}, "Enter your mobile number."),
])
def test_bad_signup_input(app, web, data, message) -> None:
    response = web.submit("/signup", data, page="/signup?lang=en")
    assert response.status_code == 400
    assert message in text_of(response)
    assert _count(app, Customer) == 0


def test_wrong_password_and_unknown_phone_read_the_same(web, demo) -> None:
    wrong = text_of(web.login("13800000001", "not-the-password"))
    unknown = text_of(web.login("13900000009", "not-the-password"))
    assert "手机号或密码错误" in wrong and "手机号或密码错误" in unknown


def test_forms_without_csrf_token_are_refused(app, client, demo) -> None:
    response = client.post("/signup", data={"phone": "13912345678", "password": "long enough",
                                            "confirm": "long enough"})
    assert response.status_code == 400
    assert "表单已过期" in text_of(response)
    assert _count(app, Customer) == 4  # the four demo customers only


def test_login_is_rate_limited(web, demo) -> None:
    statuses = [web.login("13800000001", f"wrong-{i}").status_code for i in range(11)]
    assert statuses[:10] == [400] * 10
    assert statuses[10] == 429
    # even the right password waits now
    response = web.login("13800000001", "dianfei-demo")
    assert response.status_code == 429
    assert "尝试次数过多" in text_of(response)


def test_successful_logins_do_not_count_towards_the_limit(app, demo) -> None:
    for _ in range(12):  # each from a fresh browser, so each really signs in
        fresh = FormClient(app.test_client())
        assert fresh.login("13800000001", "dianfei-demo").status_code == 302


def test_next_parameter_cannot_leave_the_site(app, demo) -> None:
    for target, expected in [("/accounts/1/usage", "/accounts/1/usage"),
                             ("//evil.example/x", "/dashboard"),
                             ("https://evil.example/", "/dashboard"),
                             ("/%5Cevil.example", "/dashboard"),
                             ("javascript:alert(1)", "/dashboard"),
                             # the redirect would write these as //evil.example
                             ("////evil.example", "/dashboard"),
                             ("/%09///evil.example", "/dashboard"),
                             ("/accounts%0A1", "/dashboard")]:  # no header with a line break
        fresh = FormClient(app.test_client())
        response = fresh.submit(f"/login?next={target}",
                                {"phone": "13800000001", "password": "dianfei-demo"})
        assert response.status_code == 302 and response.location == expected, target
        assert fresh.get(f"/login?next={target}").location == expected, target  # signed in


def test_signed_in_people_skip_the_sign_in_pages(web, demo) -> None:
    web.login("13800000001", "dianfei-demo")
    assert web.get("/login").location == "/dashboard"
    assert web.get("/signup").location == "/dashboard"
    assert web.get("/login?next=/accounts/1/usage").location == "/accounts/1/usage"


def test_logout_needs_post_and_ends_the_session(web, demo) -> None:
    web.login("13800000001", "dianfei-demo")
    assert web.get("/logout").status_code == 405
    response = web.submit("/logout", {}, page="/dashboard")
    assert response.status_code == 302
    assert web.get("/dashboard").status_code == 302


def test_language_choice_is_remembered(web) -> None:
    assert "Sign in" in text_of(web.get("/login?lang=en"))
    assert "Sign in" in text_of(web.get("/login"))
    assert "登录" in text_of(web.get("/login?lang=zh"))


def test_accept_language_picks_english(client) -> None:
    page = text_of(client.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"}))
    assert "Mobile number" in page
    page = text_of(client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"}))
    assert "手机号" in page


def test_session_cookie_is_http_only_and_same_site(web) -> None:
    web.get("/login?lang=en")
    cookie = web.client.get_cookie("session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"


def test_health(client) -> None:
    assert client.get("/healthz").json == {"status": "ok"}


def test_pages_carry_security_headers(web, demo) -> None:
    anonymous = web.get("/login")
    assert anonymous.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in anonymous.headers["Content-Security-Policy"]
    assert "script-src 'self'" in anonymous.headers["Content-Security-Policy"]
    assert anonymous.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" not in anonymous.headers.get("Cache-Control", "")
    web.login("13800000001", "dianfei-demo")
    assert web.get("/dashboard").headers["Cache-Control"] == "no-store"


def test_new_account_without_bills_shows_nothing_owed(app, web, clock) -> None:
    from tests import factories

    with app.app_context():
        factories.account(db.session, clock)
        db.session.commit()
    web.signup("13912345678")
    assert web.link("9900000001", "测试户", "1234").status_code == 302
    page = text_of(web.get("/dashboard?lang=en"))
    assert "9900000001" in page and "¥0.00" in page and "Latest bill" not in page
    assert "No bills yet." in text_of(web.get("/accounts/1/bills"))
    assert "No usage yet." in text_of(web.get("/accounts/1/usage"))


@pytest.mark.parametrize("path", ["/login", "/signup"])
def test_form_fields_carry_only_the_attributes_they_were_given(client, path) -> None:
    html = client.get(path).get_data(as_text=True)
    assert '="None"' not in html
    assert 'autocomplete="current-password"' in html or 'autocomplete="new-password"' in html

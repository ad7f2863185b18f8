"""Paying bills on the web against the WeChat, Alipay and Stripe sandboxes over real HTTP."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from payments.models import PaymentOrder
from payments.sandbox import alipay as alipay_sandbox
from payments.sandbox import stripe as stripe_sandbox
from payments.sandbox import wechat as wechat_sandbox
from portal.accounts.models import ElectricityAccount
from portal.extensions import db
from tests.helpers import FormClient, csrf_token, text_of
from tests.payments.conftest import wsgi_server  # noqa: F401  (a fixture)

LI_MING = ("13800000002", "1100000002")  # two unpaid bills in the demo


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {"wechat": wechat_sandbox.generate_keys(), "alipay": alipay_sandbox.generate_keys(),
            "stripe": stripe_sandbox.generate_keys()}


@pytest.fixture
def gateways(wsgi_server, keys, clock) -> dict[str, str]:  # noqa: F811
    return {
        "wechat": wsgi_server(lambda url: wechat_sandbox.make_gateway(keys["wechat"], url,
                                                                      clock=clock)),
        "alipay": wsgi_server(lambda url: alipay_sandbox.make_gateway(keys["alipay"], url,
                                                                      clock=clock)),
        "stripe": wsgi_server(lambda url: stripe_sandbox.make_gateway(
            keys["stripe"], url, now=lambda: clock.now().timestamp())),
    }


@pytest.fixture
def settings_overrides(keys, gateways) -> dict[str, object]:
    return {
        "wechatpay": wechat_sandbox.channel_settings(keys["wechat"], gateways["wechat"]),
        "alipay": alipay_sandbox.channel_settings(keys["alipay"],
                                                  f"{gateways['alipay']}/gateway.do"),
        "stripe": stripe_sandbox.channel_settings(keys["stripe"], gateways["stripe"]),
        "sandbox": True,
        "public_url": "http://127.0.0.1:9",  # nothing listens: the return-page query must do
    }


def account_id(app, account_no: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(ElectricityAccount.id).where(
            ElectricityAccount.account_no == account_no))


def signed_in(web: FormClient, phone: str) -> FormClient:
    assert web.login(phone, "dianfei-demo").status_code == 302
    return web


def start(web: FormClient, acct: int, channel: str, topup: str = "",
          bills: list[str] | None = None) -> Any:
    """Fill the pay form as a browser would: every owed bill ticked unless told otherwise."""
    html = web.get(f"/accounts/{acct}/pay").get_data(as_text=True)
    ticked = re.findall(r'name="bills" value="(\d+)"', html) if bills is None else bills
    form = MultiDict([("csrf_token", csrf_token(html)), ("channel", channel), ("topup", topup)]
                     + [("bills", b) for b in ticked])
    return web.client.post(f"/accounts/{acct}/pay", data=form)


def test_pay_all_bills_by_wechat_and_see_them_paid(app, web, demo, gateways):
    signed_in(web, LI_MING[0])
    acct = account_id(app, LI_MING[1])
    page = text_of(web.get(f"/accounts/{acct}/pay"))
    assert "微信支付" in page and "支付宝" in page and "银行卡" in page
    response = start(web, acct, "wechat")
    assert response.status_code == 302
    order_no = response.location.rsplit("/", 1)[-1]
    checkout = web.get(response.location).get_data(as_text=True)
    assert "<svg" in checkout and "扫码" in checkout
    sandbox_link = re.search(r'class="sandbox-pay" href="([^"]+)"', checkout)
    assert sandbox_link and sandbox_link.group(1).startswith(gateways["wechat"])
    reply = requests.post(f"{gateways['wechat']}/sandbox/pay/{order_no}",
                          params={"outcome": "confirm"}, timeout=10).json()
    assert reply["trade_state"] == "SUCCESS"  # its notification could not reach us
    back = web.get(f"/pay/{order_no}/return")
    assert back.status_code == 302 and back.location == f"/pay/{order_no}/receipt"
    receipt = text_of(web.get(back.location))
    assert "已缴清" in receipt and "2026-11" in receipt and "2026-10" in receipt
    bills_page = text_of(web.get(f"/accounts/{acct}/bills"))
    assert "未缴" not in bills_page and "逾期" not in bills_page
    history = text_of(web.get(f"/accounts/{acct}/payments"))
    assert order_no in history and "已缴清" in history


def test_alipay_and_card_checkouts(app, web, demo, gateways):
    signed_in(web, LI_MING[0])
    acct = account_id(app, LI_MING[1])
    alipay = web.get(start(web, acct, "alipay").location).get_data(as_text=True)
    link = re.search(r'id="continue" href="([^"]+)"', alipay)
    assert link and link.group(1).replace("&amp;", "&").startswith(gateways["alipay"])
    card = web.get(start(web, acct, "stripe").location)
    html = card.get_data(as_text=True)
    assert 'id="stripe-pay"' in html and "data-client-secret=" in html
    assert f"script-src 'self' {gateways['stripe']}" in card.headers["Content-Security-Policy"]
    history = text_of(web.get(f"/accounts/{acct}/payments"))
    assert history.count("等待付款") == 2


def test_bad_amounts_and_empty_choices_are_refused_with_a_reason(app, web, demo):
    signed_in(web, LI_MING[0])
    acct = account_id(app, LI_MING[1])
    bad = start(web, acct, "wechat", topup="12.345", bills=[])
    assert bad.status_code == 400 and "两位小数" in text_of(bad)
    empty = start(web, acct, "wechat", bills=[])
    assert empty.status_code == 400 and "没有需要支付" in text_of(empty)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(PaymentOrder.id))) == 0


def test_a_top_up_alone_is_a_payment(app, web, demo):
    signed_in(web, LI_MING[0])
    acct = account_id(app, LI_MING[1])
    response = start(web, acct, "wechat", topup="50", bills=[])
    assert response.status_code == 302
    assert "¥50.00" in text_of(web.get(response.location))


def test_nobody_sees_another_customers_payments(app, web, demo, client):
    signed_in(web, LI_MING[0])
    acct = account_id(app, LI_MING[1])
    order_no = start(web, acct, "wechat").location.rsplit("/", 1)[-1]
    other = signed_in(FormClient(app.test_client()), "13800000001")
    for url in (f"/pay/{order_no}", f"/pay/{order_no}/return", f"/pay/{order_no}/receipt",
                f"/accounts/{acct}/pay", f"/accounts/{acct}/payments"):
        assert other.get(url).status_code == 404, url
    assert client.get(f"/pay/{order_no}").status_code == 302  # signed out: sign in first


def test_pay_this_bill_and_the_pages_follow_the_order(app, web, demo, gateways):
    signed_in(web, LI_MING[0])
    acct = account_id(app, LI_MING[1])
    html = web.get(f"/accounts/{acct}/pay").get_data(as_text=True)
    first, second = re.findall(r'name="bills" value="(\d+)"', html)
    bill_page = web.get(f"/bills/{second}").get_data(as_text=True)
    assert f"/accounts/{acct}/pay?bill={second}" in bill_page
    one = web.get(f"/accounts/{acct}/pay?bill={second}").get_data(as_text=True)
    assert re.findall(r'value="(\d+)" checked', one) == [second]
    order_no = start(web, acct, "wechat", bills=[second]).location.rsplit("/", 1)[-1]
    assert web.get(f"/pay/{order_no}/receipt").location == f"/pay/{order_no}"  # not paid yet
    assert web.get(f"/pay/{order_no}/return").location == f"/pay/{order_no}"
    requests.post(f"{gateways['wechat']}/sandbox/pay/{order_no}", params={"outcome": "confirm"},
                  timeout=10)
    web.get(f"/pay/{order_no}/return")
    assert web.get(f"/pay/{order_no}").location == f"/pay/{order_no}/receipt"
    assert "已缴清" in text_of(web.get(f"/bills/{second}"))
    assert "已缴清" not in text_of(web.get(f"/bills/{first}"))
    too_much = start(web, acct, "wechat", topup="100000.01", bills=[])
    assert too_much.status_code == 400 and "100000" in text_of(too_much)


def test_without_an_enabled_channel_the_page_says_so(app, web, demo):
    app.extensions["dianfei.payment_channels"].clear()
    signed_in(web, LI_MING[0])
    page = text_of(web.get(f"/accounts/{account_id(app, LI_MING[1])}/pay"))
    assert "暂时无法在线支付" in page


def test_the_card_page_policy_allows_exactly_stripe_js() -> None:
    from portal.web.payments import _card_policy

    policy = _card_policy("https://js.stripe.com/v3/")
    assert "script-src 'self' https://js.stripe.com;" in policy
    assert "connect-src 'self' https://api.stripe.com" in policy
    assert "frame-src https://js.stripe.com https://hooks.stripe.com" in policy

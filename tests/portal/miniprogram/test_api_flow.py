"""The mini-program's journey: login -> bind -> link -> bills -> pay (WeChat JSAPI) -> status."""

from __future__ import annotations

import base64

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from payments.sandbox import wxa
from portal.accounts.models import Customer
from portal.extensions import db
from tests.portal.miniprogram.conftest import (
    API,
    DEMO_PASSWORD,
    LI_MING,
    ZHANG_WEI,
    bearer,
    signed_in,
    wx_login,
)


def pay_sign_verifies(public_key_pem: str, params: dict[str, str]) -> bool:
    key = serialization.load_pem_public_key(public_key_pem.encode())
    message = "".join(f"{params[k]}\n" for k in ("appId", "timeStamp", "nonceStr", "package"))
    try:
        key.verify(base64.b64decode(params["paySign"]), message.encode(),  # type: ignore[union-attr]
                   padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg]
    except Exception:
        return False
    return True


def test_login_bind_link_bills_pay_and_status(app, client, demo, keys, gateways):
    # An unknown WeChat user gets a ticket, never the session_key, and binds with the website's
    # mobile number and password.
    first = wx_login(client, "liming")
    assert first["status"] == "bind_required" and first["token"] is None
    assert "session_key" not in str(first)
    bound = client.post(f"{API}/auth/bind", json={"ticket": first["ticket"],
                                                  "phone": LI_MING[0],
                                                  "password": DEMO_PASSWORD})
    assert bound.status_code == 200
    with app.app_context():
        customer = db.session.query(Customer).filter_by(phone=LI_MING[0]).one()
        assert customer.wechat_openid == wxa.openid_for(keys, "liming")
    # The next wx.login signs straight in.
    again = wx_login(client, "liming")
    assert again["status"] == "signed_in"
    auth = bearer(again["token"])

    accounts = client.get(f"{API}/accounts", headers=auth).get_json()["accounts"]
    assert [a["account_no"] for a in accounts] == [LI_MING[1]]
    linked = client.post(f"{API}/accounts", headers=auth, json={
        "account_no": ZHANG_WEI[0], "holder_name": ZHANG_WEI[1], "meter_last4": ZHANG_WEI[2]})
    assert linked.status_code == 201 and linked.get_json()["account_no"] == ZHANG_WEI[0]
    twice = client.post(f"{API}/accounts", headers=auth, json={
        "account_no": ZHANG_WEI[0], "holder_name": ZHANG_WEI[1], "meter_last4": ZHANG_WEI[2]})
    assert twice.status_code == 409 and twice.get_json()["code"] == "already_linked"

    acct = accounts[0]["id"]
    bills = client.get(f"{API}/accounts/{acct}/bills", headers=auth).get_json()["bills"]
    owed = [b for b in bills if b["owed_fen"] > 0]
    assert len(owed) == 2 and accounts[0]["owed_fen"] == sum(b["owed_fen"] for b in owed)
    detail = client.get(f"{API}/bills/{owed[0]['id']}", headers=auth).get_json()
    assert sum(line["amount_fen"] for line in detail["lines"]) == detail["total_fen"]
    assert all("kWh" in line["derivation"] for line in detail["lines"] if line["kwh"])
    usage = client.get(f"{API}/accounts/{acct}/usage?months=6", headers=auth).get_json()
    assert len(usage["periods"]) == len(usage["kwh"]) == 6
    assert usage["periods"] == sorted(usage["periods"])

    paid = client.post(f"{API}/accounts/{acct}/pay", headers=auth,
                       json={"bill_ids": [owed[-1]["id"]]})
    assert paid.status_code == 201, paid.get_json()
    order = paid.get_json()
    params = order["pay_params"]
    assert order["amount_fen"] == owed[-1]["owed_fen"] and order["status"] == "pending"
    assert params["appId"] == keys.appid and params["signType"] == "RSA"
    assert params["package"].startswith("prepay_id=")
    assert pay_sign_verifies(keys.merchant_public_key_pem, params)
    assert not pay_sign_verifies(keys.merchant_public_key_pem, {**params, "package": "prepay_id=x"})

    status = client.get(f"{API}/orders/{order['order_no']}", headers=auth).get_json()
    assert status["status"] == "pending"
    # The payer confirms in WeChat; the mini-program asks us to check.
    reply = requests.post(f"{gateways['wechat']}/sandbox/pay/{order['order_no']}",
                          params={"outcome": "confirm"}, timeout=10, allow_redirects=False)
    assert reply.status_code < 400
    refreshed = client.post(f"{API}/orders/{order['order_no']}/refresh", headers=auth).get_json()
    assert refreshed["status"] == "succeeded" and refreshed["paid_at"]
    left = client.get(f"{API}/accounts/{acct}/bills", headers=auth).get_json()["bills"]
    assert [b["owed_fen"] for b in left if b["id"] == owed[-1]["id"]] == [0]


def test_wx_code_works_once_and_garbage_is_refused(client, demo):
    code = wxa.code_for("once")
    assert client.post(f"{API}/auth/login", json={"code": code}).status_code == 200
    reused = client.post(f"{API}/auth/login", json={"code": code})
    assert reused.status_code == 400 and reused.get_json()["code"] == "wx_code_rejected"
    assert client.post(f"{API}/auth/login", json={"code": "no-dot"}).status_code == 400


def test_bind_with_a_code_made_on_the_website(app, client, web, demo, keys):
    assert web.login(LI_MING[0], DEMO_PASSWORD).status_code == 302
    page = web.submit("/account/wechat/code", {}, page="/account/wechat").get_data(as_text=True)
    code = page.split('class="bind-code">')[1].split("<")[0]
    ticket = wx_login(client, "li-phone")["ticket"]
    bound = client.post(f"{API}/auth/bind", json={"ticket": ticket, "bind_code": code})
    assert bound.status_code == 200
    assert wx_login(client, "li-phone")["status"] == "signed_in"
    # The code worked once: the binding it was made under has changed.
    other = wx_login(client, "someone-else")["ticket"]
    reused = client.post(f"{API}/auth/bind", json={"ticket": other, "bind_code": code})
    assert reused.status_code == 400 and reused.get_json()["code"] == "bind_code_invalid"
    # Unbinding on the website signs the mini-program out.
    token = bound.get_json()["token"]
    assert client.get(f"{API}/accounts", headers=bearer(token)).status_code == 200
    web.submit("/account/wechat/unbind", {}, page="/account/wechat")
    gone = client.get(f"{API}/accounts", headers=bearer(token))
    assert gone.status_code == 401 and gone.get_json()["code"] == "token_invalid"


def test_wrong_password_is_refused_and_binds_nothing(app, client, demo):
    ticket = wx_login(client, "guesser")["ticket"]
    wrong = client.post(f"{API}/auth/bind", json={"ticket": ticket, "phone": LI_MING[0],
                                                  "password": "not-it"})
    assert wrong.status_code == 400 and wrong.get_json()["code"] == "bind_credentials"
    with app.app_context():
        assert db.session.query(Customer).filter(Customer.wechat_openid.isnot(None)).count() == 0


def test_a_second_wechat_user_takes_over_the_binding(client, demo):
    first = signed_in(client, "old-phone", LI_MING[0])
    signed_in(client, "new-phone", LI_MING[0])
    assert client.get(f"{API}/accounts", headers=bearer(first)).status_code == 401


def test_consents_are_recorded_and_counted(client, demo):
    auth = bearer(signed_in(client, "liming", LI_MING[0]))
    for _ in range(2):
        given = client.post(f"{API}/consents", headers=auth,
                            json={"events": ["bill_issued", "payment_succeeded"]})
        assert given.status_code == 200
    # one call is one wx.requestSubscribeMessage(): an event listed twice is one consent
    client.post(f"{API}/consents", headers=auth, json={"events": ["bill_issued"] * 2})
    unknown = client.post(f"{API}/consents", headers=auth, json={"events": ["lottery"]})
    assert unknown.status_code == 422 and unknown.get_json()["fields"] == ["events"]
    left = client.get(f"{API}/consents", headers=auth).get_json()["remaining"]
    assert left["bill_issued"] == 3 and left["payment_succeeded"] == 2
    assert left["reminder_overdue"] == 0

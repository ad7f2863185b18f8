"""Bearer tokens (expiry, tampering, rotation, no cookies), 404 for others' ids, JSON errors in
the caller's language."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from pydantic import SecretStr

from portal.accounts.models import Customer
from portal.context import SETTINGS_KEY
from portal.extensions import db
from portal.miniprogram import tokens
from tests.portal.miniprogram.conftest import (
    API,
    DEMO_PASSWORD,
    LI_MING,
    WANG_FANG,
    bearer,
    signed_in,
)


def test_token_expires_by_the_injected_clock(client, demo, clock):
    token = signed_in(client, "liming", LI_MING[0])
    clock.advance(timedelta(minutes=119))
    assert client.get(f"{API}/accounts", headers=bearer(token)).status_code == 200
    clock.advance(timedelta(minutes=1))
    expired = client.get(f"{API}/accounts", headers=bearer(token))
    assert expired.status_code == 401
    assert expired.get_json()["code"] == "token_expired"
    assert expired.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("change", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature
    lambda t: "e" + t[1:] if not t.startswith("e") else "f" + t[1:],  # payload
    lambda t: t.split(".")[0],  # no signature at all
    lambda t: "not a token",
])
def test_tampered_tokens_are_refused(client, demo, change):
    token = signed_in(client, "liming", LI_MING[0])
    response = client.get(f"{API}/accounts", headers=bearer(change(token)))
    assert response.status_code == 401
    assert response.get_json()["code"] == "token_invalid"


def test_a_token_for_another_purpose_or_key_is_refused(app, client, demo, clock):
    signed_in(client, "liming", LI_MING[0])
    with app.app_context():
        ticket = tokens.Tokens([app.config["SECRET_KEY"]], tokens.TICKET, clock).issue(
            {"c": 1, "o": "x"}, timedelta(minutes=5)).token
        foreign = tokens.Tokens(["another-key-entirely-0123456789abcdef"], tokens.BEARER,
                                clock).issue({"c": 1, "o": "x"}, timedelta(minutes=5)).token
    for token in (ticket, foreign):
        assert client.get(f"{API}/accounts", headers=bearer(token)).status_code == 401


RETIRED = "retired-key-0123456789abcdef0123"


def test_tokens_of_a_retired_key_still_listed_are_accepted(app, client, demo, clock):
    token = signed_in(client, "liming", LI_MING[0])
    with app.app_context():
        customer = db.session.query(Customer).filter_by(phone=LI_MING[0]).one()
        payload = {"c": customer.id, "o": tokens.fingerprint(customer.wechat_openid)}
        old = tokens.Tokens([RETIRED], tokens.BEARER, clock).issue(
            payload, timedelta(minutes=5)).token
    assert client.get(f"{API}/accounts", headers=bearer(token)).status_code == 200
    # not listed in these settings: refused
    assert client.get(f"{API}/accounts", headers=bearer(old)).status_code == 401
    # the key is retired but listed: its tokens still work until they expire
    app.extensions[SETTINGS_KEY] = app.extensions[SETTINGS_KEY].model_copy(
        update={"mp_previous_secret_keys": [SecretStr(RETIRED)]})
    assert client.get(f"{API}/accounts", headers=bearer(old)).status_code == 200


def test_a_website_cookie_session_is_not_accepted(web, demo):
    assert web.login(LI_MING[0], DEMO_PASSWORD).status_code == 302
    assert web.get("/dashboard").status_code == 200
    response = web.get(f"{API}/accounts")
    assert response.status_code == 401 and response.get_json()["code"] == "token_missing"


def test_another_customers_ids_are_404(app, client, demo, gateways):
    mine = signed_in(client, "liming", LI_MING[0])
    theirs = signed_in(client, "wangfang", WANG_FANG[0])
    their_account = client.get(f"{API}/accounts", headers=bearer(theirs)).get_json()[
        "accounts"][0]["id"]
    their_bill = client.get(f"{API}/accounts/{their_account}/bills",
                            headers=bearer(theirs)).get_json()["bills"][0]
    my_account = client.get(f"{API}/accounts", headers=bearer(mine)).get_json()["accounts"][0]
    my_bill = client.get(f"{API}/accounts/{my_account['id']}/bills",
                         headers=bearer(mine)).get_json()["bills"][0]
    order = client.post(f"{API}/accounts/{my_account['id']}/pay", headers=bearer(mine),
                        json={"bill_ids": [my_bill["id"]]}).get_json()["order_no"]

    for method, path, body in [
        ("get", f"/accounts/{their_account}/bills", None),
        ("get", f"/accounts/{their_account}/usage", None),
        ("get", f"/bills/{their_bill['id']}", None),
        ("post", f"/accounts/{their_account}/pay", {"bill_ids": [their_bill["id"]]}),
    ]:
        response = getattr(client, method)(f"{API}{path}", headers=bearer(mine), json=body)
        assert response.status_code == 404, path
        assert response.get_json()["code"] == "not_found"
    for method, path in [("get", f"/orders/{order}"), ("post", f"/orders/{order}/refresh")]:
        response = getattr(client, method)(f"{API}{path}", headers=bearer(theirs))
        assert response.status_code == 404
    # my own bill id paid through another account of mine is not "owed" there either
    assert client.post(f"{API}/accounts/{my_account['id']}/pay", headers=bearer(mine),
                       json={"bill_ids": [their_bill["id"]]}).status_code == 400


@pytest.mark.parametrize(("language", "words"), [
    (None, "登录"), ("zh-CN,zh;q=0.9", "登录"), ("en-US,en;q=0.8", "Sign in")])
def test_errors_are_json_in_the_callers_language(client, demo, language, words):
    headers = {"Accept-Language": language} if language else {}
    missing = client.get(f"{API}/accounts", headers=headers)
    assert missing.status_code == 401 and words in missing.get_json()["message"]
    english = language and language.startswith("en")
    cases = [
        (client.get(f"{API}/nowhere", headers=headers), 404, "not_found"),
        (client.delete(f"{API}/accounts", headers=headers), 405, "method_not_allowed"),
        (client.post(f"{API}/auth/login", json={"code": ""}, headers=headers), 422,
         "invalid_request"),
        (client.post(f"{API}/auth/login", data="{", content_type="application/json",
                     headers=headers), 400, "bad_request"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, (code, response.get_data(as_text=True))
        body = response.get_json()
        assert body["code"] == code and body["message"]
        assert body["message"].isascii() == bool(english), body["message"]
    assert cases[2][0].get_json()["fields"] == ["code"]


@pytest.mark.parametrize("database_url", [pytest.param("pg", marks=pytest.mark.pg)],
                         indirect=True)
def test_a_nul_character_is_a_400_json_error_not_a_database_error(client, demo):
    """PostgreSQL refuses a NUL in any text it is given: in the path or in a JSON string, the
    request is refused first, as JSON in the caller's language, and nothing is linked."""
    token = signed_in(client, "liming", LI_MING[0])
    english = {**bearer(token), "Accept-Language": "en"}
    linked = client.get(f"{API}/accounts", headers=bearer(token)).get_json()
    cases = [
        (client.get(f"{API}/orders/a%00b", headers=english), "NUL character"),
        (client.post(f"{API}/orders/a%00b/refresh", headers=english), "NUL character"),
        (client.post(f"{API}/accounts", headers=bearer(token), json={
            "account_no": "11000\u00000005", "holder_name": "张伟", "meter_last4": "5678"}),
         "空字符"),
    ]
    for response, words in cases:
        assert response.status_code == 400, response.get_data(as_text=True)
        body = response.get_json()
        assert body["code"] == "request_nul_character" and words in body["message"]
    assert client.get(f"{API}/accounts", headers=bearer(token)).get_json() == linked


def test_too_many_attempts_are_429_json(client, demo, settings_overrides):
    for _ in range(10):
        client.post(f"{API}/auth/login", json={"code": "bad"})
    limited = client.post(f"{API}/auth/login", json={"code": "bad"},
                          headers={"Accept-Language": "en"})
    assert limited.status_code == 429
    assert limited.get_json()["code"] == "too_many_requests"
    assert "Too many attempts" in limited.get_json()["message"]


def test_api_answers_are_not_cached(client, demo):
    token = signed_in(client, "liming", LI_MING[0])
    response = client.get(f"{API}/accounts", headers=bearer(token))
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers


@pytest.fixture
def settings_overrides(settings_overrides):  # type: ignore[no-untyped-def]
    """For this whole module: a small link limit the test below can reach."""
    return {**settings_overrides, "link_rate_limit": "3 per hour"}


def test_failed_links_share_the_websites_limit(client, web, demo):
    token = signed_in(client, "liming", LI_MING[0])
    wrong = {"account_no": "1100000005", "holder_name": "张伟", "meter_last4": "0000"}
    assert web.login(LI_MING[0], DEMO_PASSWORD).status_code == 302
    assert web.link(**{"account_no": "1100000005", "holder": "张伟", "last4": "0000"}
                    ).status_code == 400  # one failure on the website
    for _ in range(2):
        response = client.post(f"{API}/accounts", headers=bearer(token), json=wrong)
        assert response.status_code == 400 and response.get_json()["code"] == "link_mismatch"
    limited = client.post(f"{API}/accounts", headers=bearer(token), json=wrong)
    assert limited.status_code == 429 and limited.get_json()["code"] == "too_many_requests"


def test_the_token_is_checked_before_the_body(client, demo):
    response = client.post(f"{API}/accounts", json={"account_no": ""})
    assert response.status_code == 401 and response.get_json()["code"] == "token_missing"


def test_the_openapi_document_lists_every_route_of_the_api(app, client):
    document = client.get(f"{API}/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in document["paths"].items()
                  for method in ops if method != "parameters"}
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("mp."):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            routed |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert routed == documented
    assert len(routed) >= 12

"""The mini-program login sandbox answers like code2Session: one openid per user, codes once."""

from __future__ import annotations

from payments.sandbox import wechat, wxa


def test_code_to_session_like_wechat():
    keys = wechat.generate_keys()
    gateway = wxa.make_gateway(keys)
    ask = {"appid": keys.appid, "secret": wxa.app_secret(keys), "grant_type": "authorization_code"}
    first = gateway.code_to_session({**ask, "js_code": wxa.code_for("alice")})
    second = gateway.code_to_session({**ask, "js_code": wxa.code_for("alice")})
    assert first["openid"] == second["openid"] == wxa.openid_for(keys, "alice")
    assert first["session_key"] != second["session_key"]
    assert gateway.code_to_session({**ask, "js_code": wxa.code_for("bob")})["openid"] != \
        first["openid"]
    code = wxa.code_for("carol")
    assert "openid" in gateway.code_to_session({**ask, "js_code": code})
    assert gateway.code_to_session({**ask, "js_code": code})["errcode"] == 40163
    assert gateway.code_to_session({**ask, "js_code": "no dot"})["errcode"] == 40029
    assert gateway.code_to_session({**ask, "secret": "wrong", "js_code": code})["errcode"] == 40125

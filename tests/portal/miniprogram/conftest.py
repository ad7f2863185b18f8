"""The mini-program API against the WeChat Pay and mini-program login sandboxes over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from payments.sandbox import wechat as wechat_sandbox
from payments.sandbox import wxa
from portal.miniprogram.wxlogin import MiniProgramSettings
from tests.payments.conftest import wsgi_server  # noqa: F401  (a fixture)

API = "/api/mp/v1"
LI_MING = ("13800000002", "1100000002")  # two unpaid bills in the demo
WANG_FANG = ("13800000001", "1100000001")
ZHANG_WEI = ("1100000005", "张伟", "5678")  # left unlinked in the demo
DEMO_PASSWORD = "dianfei-demo"


@pytest.fixture(scope="session")
def keys() -> wechat_sandbox.WechatSandboxKeys:
    return wechat_sandbox.generate_keys()


@pytest.fixture
def gateways(wsgi_server, keys, clock) -> dict[str, str]:  # noqa: F811
    return {
        "wechat": wsgi_server(lambda url: wechat_sandbox.make_gateway(keys, url, clock=clock)),
        "wxa": wsgi_server(lambda url: wxa.make_gateway(keys)),
    }


@pytest.fixture
def settings_overrides(keys, gateways, tmp_path) -> dict[str, object]:
    return {
        "reading_photo_dir": tmp_path / "photos",
        "wechatpay": wechat_sandbox.channel_settings(keys, gateways["wechat"]),
        "miniprogram": MiniProgramSettings(appid=keys.appid, secret=wxa.app_secret(keys),
                                           api_base_url=gateways["wxa"] + "/"),
        "public_url": "http://127.0.0.1:9",  # nothing listens: the refresh query must do
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wx_login(client: FlaskClient, user: str, **kw: Any) -> dict[str, Any]:
    response = client.post(f"{API}/auth/login", json={"code": wxa.code_for(user)}, **kw)
    assert response.status_code == 200, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def signed_in(client: FlaskClient, user: str, phone: str) -> str:
    """A bearer token for WeChat user ``user`` bound to the demo customer with ``phone``."""
    first = wx_login(client, user)
    if first["status"] == "signed_in":
        return first["token"]  # type: ignore[no-any-return]
    bound = client.post(f"{API}/auth/bind", json={"ticket": first["ticket"], "phone": phone,
                                                  "password": DEMO_PASSWORD})
    assert bound.status_code == 200, bound.get_json()
    return bound.get_json()["token"]  # type: ignore[no-any-return]

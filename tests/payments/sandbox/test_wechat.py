"""The WeChat Pay v3 sandbox gateway, spoken to directly over loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from wechatpayv3.utils import build_authorization, load_private_key, load_public_key, rsa_verify

from payments.channels.base import OrderRequest, Scene, TradeState
from payments.channels.wechat import WechatPayChannel
from payments.sandbox.wechat import (
    WechatSandbox,
    WechatSandboxKeys,
    channel_settings,
    generate_keys,
    make_gateway,
    signed_notification,
)
from portal.kernel.clock import FrozenClock

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def keys() -> WechatSandboxKeys:
    return generate_keys()


@dataclass
class Gateway:
    keys: WechatSandboxKeys
    sandbox: WechatSandbox
    url: str

    def call(
        self, method: str, path: str, data: Any = None, *, private_key_pem: str | None = None,
        mchid: str | None = None,
    ) -> requests.Response:
        body = "" if data is None else (data if isinstance(data, str) else json.dumps(data))
        authorization = build_authorization(
            path, method, mchid or self.keys.mchid, self.keys.merchant_serial_no,
            load_private_key(private_key_pem or self.keys.merchant_private_key_pem), data=body,
        )
        headers = {"Authorization": authorization, "Content-Type": "application/json"}
        return requests.request(method, self.url + path, data=body.encode(), headers=headers,
                                timeout=10)

    def order(self, no: str = "DF20261203000001", **changes: Any) -> dict[str, Any]:
        data = {"appid": self.keys.appid, "mchid": self.keys.mchid, "description": "电费",
                "out_trade_no": no, "notify_url": "http://127.0.0.1:9/notify/wechat",
                "amount": {"total": 100, "currency": "CNY"}}
        data.update(changes)
        return data


@pytest.fixture
def gateway(keys: WechatSandboxKeys, wsgi_server: Callable[..., str]) -> Gateway:
    made: list[WechatSandbox] = []
    url = wsgi_server(lambda base: made.append(make_gateway(keys, base,
                                                            FrozenClock(NOW))) or made[0])
    return Gateway(keys, made[0], url)


def test_keys_survive_json(keys: WechatSandboxKeys) -> None:
    assert WechatSandboxKeys.from_json(keys.to_json()) == keys
    assert keys.public_key_id.startswith("PUB_KEY_ID_")
    assert len(keys.apiv3_key.encode()) == 32


def test_answers_are_signed_with_the_wechat_pay_public_key(gateway: Gateway) -> None:
    response = gateway.call("POST", "/v3/pay/transactions/native", gateway.order())

    assert response.status_code == 200
    assert response.headers["Wechatpay-Serial"] == gateway.keys.public_key_id
    assert rsa_verify(
        response.headers["Wechatpay-Timestamp"], response.headers["Wechatpay-Nonce"],
        response.text, response.headers["Wechatpay-Signature"],
        load_public_key(gateway.keys.platform_public_key_pem),
    )


def test_requests_signed_with_another_key_are_refused(
    gateway: Gateway, keys: WechatSandboxKeys
) -> None:
    other = generate_keys()
    for kw in ({"private_key_pem": other.merchant_private_key_pem}, {"mchid": "1900000000"}):
        response = gateway.call("POST", "/v3/pay/transactions/native", gateway.order(), **kw)
        assert response.status_code == 401
        assert response.json()["code"] == "SIGN_ERROR"
    unsigned = requests.get(gateway.url + "/v3/pay/transactions/out-trade-no/DF1?mchid=1",
                            timeout=5)
    assert unsigned.status_code == 401
    assert gateway.sandbox.orders == {}


@pytest.mark.parametrize(
    ("path", "changes", "code"),
    [
        ("native", {"appid": "wx0"}, "APPID_MCHID_NOT_MATCH"),
        ("native", {"amount": {"total": 0}}, "PARAM_ERROR"),
        ("native", {"amount": {"total": True}}, "PARAM_ERROR"),
        ("native", {"amount": {"total": 100, "currency": "USD"}}, "PARAM_ERROR"),
        ("native", {"out_trade_no": "DF1"}, "PARAM_ERROR"),
        ("native", {"notify_url": ""}, "PARAM_ERROR"),
        ("jsapi", {}, "PARAM_ERROR"),
    ],
    ids=["appid", "zero", "bool", "currency", "short-number", "no-notify-url", "no-openid"],
)
def test_bad_orders_are_refused(
    gateway: Gateway, path: str, changes: dict[str, Any], code: str
) -> None:
    response = gateway.call("POST", f"/v3/pay/transactions/{path}", gateway.order(**changes))
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert gateway.sandbox.orders == {}


@pytest.mark.parametrize("body", ["{oops", "[1]"])
def test_bodies_that_are_not_json_objects_are_refused(gateway: Gateway, body: str) -> None:
    response = gateway.call("POST", "/v3/pay/transactions/native", body)
    assert response.status_code == 400
    assert response.json()["code"] == "PARAM_ERROR"


def test_the_same_order_twice_gives_the_same_prepay_id_until_paid(gateway: Gateway) -> None:
    data = gateway.order(payer={"openid": "o1"})
    first = gateway.call("POST", "/v3/pay/transactions/jsapi", data).json()
    again = gateway.call("POST", "/v3/pay/transactions/jsapi", data).json()
    assert first == again

    gateway.sandbox.pay("DF20261203000001")

    paid = gateway.call("POST", "/v3/pay/transactions/jsapi", data)
    assert paid.status_code == 400
    assert paid.json()["code"] == "ORDERPAID"


def test_query_and_close_check_the_merchant(gateway: Gateway) -> None:
    gateway.call("POST", "/v3/pay/transactions/native", gateway.order())
    query = gateway.call("GET", "/v3/pay/transactions/out-trade-no/DF20261203000001?mchid=1")
    close = gateway.call("POST", "/v3/pay/transactions/out-trade-no/DF20261203000001/close",
                         {"mchid": "1"})
    assert (query.status_code, close.status_code) == (400, 400)
    assert gateway.sandbox.orders["DF20261203000001"].trade_state == "NOTPAY"


def test_refund_must_name_the_order_total(gateway: Gateway) -> None:
    gateway.call("POST", "/v3/pay/transactions/native", gateway.order())
    gateway.sandbox.pay("DF20261203000001")
    response = gateway.call("POST", "/v3/refund/domestic/refunds", {
        "out_trade_no": "DF20261203000001", "out_refund_no": "RF1",
        "amount": {"refund": 10, "total": 99, "currency": "CNY"},
    })
    assert response.status_code == 400
    assert gateway.sandbox.refunds == {}


def test_bill_requests_need_a_date_and_a_live_link(gateway: Gateway) -> None:
    bad_date = gateway.call("GET", "/v3/bill/tradebill?bill_date=yesterday&bill_type=ALL")
    assert bad_date.status_code == 400
    dead = gateway.call("GET", "/v3/billdownload/file?token=nope")
    assert dead.status_code == 400


def test_an_uncompressed_bill_downloads_as_csv(gateway: Gateway) -> None:
    gateway.call("POST", "/v3/pay/transactions/native", gateway.order())
    gateway.sandbox.pay("DF20261203000001")
    meta = gateway.call("GET", "/v3/bill/tradebill?bill_date=2026-12-03&bill_type=ALL").json()
    path = meta["download_url"].removeprefix(gateway.url)
    text = gateway.call("GET", path).content.decode()
    assert "`DF20261203000001" in text
    assert "`1.00" in text


def test_unknown_paths_are_404(gateway: Gateway) -> None:
    assert gateway.call("GET", "/v3/nothing").status_code == 404
    assert requests.get(gateway.url + "/pay/wx-unknown", timeout=5).status_code == 404


def test_the_pay_page_abandon_button_leaves_the_order_unpaid(gateway: Gateway) -> None:
    code_url = gateway.call("POST", "/v3/pay/transactions/native", gateway.order()).json()[
        "code_url"
    ]
    page = requests.post(code_url, data={"outcome": "abandon"}, timeout=5)
    assert page.status_code == 200
    assert "NOTPAY" in page.text
    assert gateway.sandbox.orders["DF20261203000001"].notifications == []


def test_the_control_endpoint_pays_once_and_reports_undeliverable_notifications(
    gateway: Gateway,
) -> None:
    gateway.call("POST", "/v3/pay/transactions/native", gateway.order())

    first = requests.post(gateway.url + "/sandbox/pay/DF20261203000001", timeout=10).json()
    again = requests.post(gateway.url + "/sandbox/pay/DF20261203000001?outcome=fail",
                          timeout=10).json()

    # nothing listens on port 9: the status is 0 and WeChat would retry
    assert first == {"trade_state": "SUCCESS", "notifications": [0]}
    assert again == first  # a paid order stays paid; no second notification


def test_an_unknown_outcome_changes_nothing(gateway: Gateway) -> None:
    gateway.call("POST", "/v3/pay/transactions/native", gateway.order())
    assert gateway.sandbox.pay("DF20261203000001", "shrug").trade_state == "NOTPAY"


def test_pay_page_confirm_notifies_a_real_channel_end_to_end(
    keys: WechatSandboxKeys, wsgi_server: Callable[..., str]
) -> None:
    """The demo path: the channel orders, the payer confirms on the page, the signed notification
    arrives and verifies with the same channel."""
    seen: list[TradeState] = []
    box: list[WechatPayChannel] = []

    def endpoint(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        from werkzeug.wrappers import Request

        request = Request(environ)
        note = box[0].parse_notification(request.headers, request.get_data())
        assert note.trade is not None
        seen.append(note.trade.state)
        start_response("204 No Content", [])
        return []

    notify_url = wsgi_server(lambda base: endpoint) + "/notify/wechat"
    made: list[WechatSandbox] = []
    url = wsgi_server(lambda base: made.append(make_gateway(keys, base)) or made[0])
    box.append(WechatPayChannel(channel_settings(keys, url, notify_url)))
    checkout = box[0].create(OrderRequest(
        order_no="DF20261203000009", amount_fen=5000, description="电费", scene=Scene.MOBILE,
        notify_url=notify_url, return_url="http://127.0.0.1:9/", expires_at=datetime.now(UTC),
    ))
    assert checkout.code_url is not None

    requests.post(checkout.code_url, data={"outcome": "confirm"}, timeout=10)

    assert seen == [TradeState.SUCCEEDED]
    assert made[0].orders["DF20261203000009"].notifications == [204]


def test_signed_notification_defaults_to_now(keys: WechatSandboxKeys) -> None:
    headers, body = signed_notification(keys, out_trade_no="DF1", amount_fen=1)
    channel = WechatPayChannel(channel_settings(keys, "http://127.0.0.1:9"))
    assert channel.parse_notification(headers, body).trade is not None

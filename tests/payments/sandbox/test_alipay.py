"""The Alipay sandbox gateway as a client sees it: signed requests in, signed answers out, the
payment page, notifications and the test controls, over real HTTP on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import requests
from alipay.aop.api.util.SignatureUtils import get_sign_content, sign_with_rsa2, verify_with_rsa

from payments.channels.alipay import AlipayChannel
from payments.channels.base import OrderRequest, RefundRequest, Scene, TradeState
from payments.reconcile.alipay import read
from payments.sandbox.alipay import (
    AlipayGateway,
    AlipaySandboxKeys,
    channel_settings,
    generate_keys,
    make_gateway,
)
from portal.kernel.clock import FrozenClock

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def keys() -> AlipaySandboxKeys:
    return generate_keys()


@dataclass
class Box:
    gateway: AlipayGateway
    url: str
    channel: AlipayChannel
    keys: AlipaySandboxKeys
    clock: FrozenClock

    def call(self, method: str, biz: dict[str, Any], **common: str) -> dict[str, Any]:
        """A hand-signed gateway request; the answer's signature is checked here too."""
        params = {"app_id": self.keys.app_id, "method": method, "charset": "utf-8",
                  "format": "json", "sign_type": "RSA2", "timestamp": "2026-12-03 10:00:00",
                  "version": "1.0", "biz_content": json.dumps(biz), **common}
        app_key = self.channel.settings.app_private_key.get_secret_value()
        params["sign"] = sign_with_rsa2(app_key, get_sign_content(params), "utf-8")
        answer = requests.post(f"{self.url}/gateway.do", data=params, timeout=5)
        assert answer.status_code == 200
        text = answer.text
        inner = text[text.index(":") + 1:text.rindex(',"sign":')]
        sign = text[text.rindex(',"sign":"') + 9:-2]
        assert verify_with_rsa(self.keys.alipay_public_key, inner.encode(), sign)
        body: dict[str, Any] = json.loads(inner)
        return body

    def open(self, order_no: str, amount_fen: int = 1000, scene: Scene = Scene.DESKTOP,
             return_url: str = "http://portal.test/return") -> requests.Response:
        checkout = self.channel.create(OrderRequest(
            order_no=order_no, amount_fen=amount_fen, description="电费", scene=scene,
            notify_url="", return_url=return_url, expires_at=NOW + timedelta(minutes=15)))
        assert checkout.redirect_url is not None
        return requests.get(checkout.redirect_url, allow_redirects=False, timeout=5)


@pytest.fixture
def box(keys: AlipaySandboxKeys, wsgi_server: Callable[..., str]) -> Box:
    clock = FrozenClock(NOW)
    built: dict[str, AlipayGateway] = {}

    def build(base: str) -> AlipayGateway:
        built["g"] = make_gateway(keys, base + "/alipay", clock)
        return built["g"]

    def mounted(base: str) -> Any:
        from werkzeug.middleware.dispatcher import DispatcherMiddleware
        from werkzeug.wrappers import Response

        return DispatcherMiddleware(Response("portal", status=404), {"/alipay": build(base)})

    base = wsgi_server(mounted)
    url = f"{base}/alipay"
    channel = AlipayChannel(channel_settings(keys, f"{url}/gateway.do"), clock)
    return Box(built["g"], url, channel, keys, clock)


def test_keys_survive_json_and_the_app_key_is_pkcs8(keys: AlipaySandboxKeys) -> None:
    assert AlipaySandboxKeys.model_validate_json(keys.model_dump_json()) == keys
    assert keys.app_private_key.startswith("-----BEGIN PRIVATE KEY-----")
    assert keys.seller_id.startswith("2088") and len(keys.seller_id) == 16
    assert generate_keys().app_id != keys.app_id


def test_requests_must_be_signed_by_the_app_for_this_app_id(box: Box) -> None:
    assert box.call("alipay.trade.query", {"out_trade_no": "X"},
                    app_id="9021999999999999")["sub_code"] == "isv.invalid-app-id"
    assert box.call("alipay.trade.query", {"out_trade_no": "X"},
                    sign_type="RSA")["sub_code"] == "isv.invalid-signature-type"
    assert box.call("alipay.trade.nope", {})["sub_code"] == "isv.invalid-method"
    unsigned = requests.post(f"{box.url}/gateway.do", timeout=5,
                             data={"app_id": box.keys.app_id, "method": "alipay.trade.query",
                                   "sign_type": "RSA2", "sign": "AAAA"})
    assert '"sub_code":"isv.invalid-signature"' in unsigned.text
    assert '{"error_response"' in requests.post(f"{box.url}/gateway.do", timeout=5).text


def test_page_pay_lands_on_the_payment_page_under_a_prefix(box: Box) -> None:
    opened = box.open("D-1", 1999)
    assert opened.status_code == 302
    assert opened.headers["Location"] == f"{box.url}/pay/D-1"
    page = requests.get(opened.headers["Location"], timeout=5)
    assert "¥19.99" in page.text and "D-1" in page.text
    # Opening again is fine; the same order number for another amount is not.
    assert box.open("D-1", 1999).status_code == 302
    changed = box.open("D-1", 2000)
    assert changed.status_code == 400 and "ACQ.CONTEXT_INCONSISTENT" in changed.text
    wap = box.open("D-2", 500, scene=Scene.MOBILE)
    assert wap.status_code == 302 and box.gateway.trades["D-2"].method == "alipay.trade.wap.pay"


def test_the_payment_page_buttons(box: Box) -> None:
    box.open("D-1")
    failed = requests.post(f"{box.url}/pay/D-1", data={"action": "fail"}, timeout=5)
    assert "支付失败" in failed.text
    assert box.channel.query("D-1").state is TradeState.PENDING  # a failed attempt: still payable
    abandoned = requests.post(f"{box.url}/pay/D-1", data={"action": "abandon"},
                              allow_redirects=False, timeout=5)
    assert abandoned.headers["Location"] == "http://portal.test/return"
    assert requests.post(f"{box.url}/pay/D-1", data={"action": "?"}, timeout=5).status_code == 400
    assert requests.get(f"{box.url}/pay/D-404", timeout=5).status_code == 404
    confirmed = requests.post(f"{box.url}/pay/D-1", data={"action": "confirm"},
                              allow_redirects=False, timeout=5)
    assert confirmed.headers["Location"].startswith("http://portal.test/return?")
    assert box.gateway.sent == [("D-1", None)]  # no notify_url given: nothing to POST to
    assert "TRADE_SUCCESS" in requests.get(f"{box.url}/pay/D-1", timeout=5).text


def test_an_expired_trade_cannot_be_paid(box: Box) -> None:
    box.open("D-1")
    box.clock.advance(timedelta(minutes=15))
    closed = requests.post(f"{box.url}/pay/D-1", data={"action": "confirm"}, timeout=5)
    assert closed.status_code == 409
    control = requests.post(f"{box.url}/sandbox/pay/D-1", timeout=5)
    assert control.status_code == 409 and control.json() == {"error": "TRADE_CLOSED"}


def test_controls_pay_and_resend_and_refuse_unknown_trades(box: Box) -> None:
    assert requests.post(f"{box.url}/sandbox/pay/D-1", timeout=5).status_code == 404
    assert requests.post(f"{box.url}/sandbox/notify/D-1", timeout=5).status_code == 404
    box.open("D-1")
    paid = requests.post(f"{box.url}/sandbox/pay/D-1", timeout=5).json()
    assert paid["trade_status"] == "TRADE_SUCCESS" and paid["notify_status"] is None
    box.channel.refund(RefundRequest(order_no="D-1", refund_no="R1", amount_fen=300,
                                     order_amount_fen=1000, reason="x"))
    headers, body = box.gateway.notification(box.gateway.trades["D-1"])
    note = box.channel.parse_notification(headers, body)
    assert note.trade is not None and note.trade.state is TradeState.REFUNDED
    assert note.raw["refund_fee"] == "3.00" and note.raw["out_biz_no"] == "R1"
    resent = requests.post(f"{box.url}/sandbox/notify/D-1", timeout=5).json()
    assert resent["trade_status"] == "TRADE_SUCCESS"
    assert [s[0] for s in box.gateway.sent] == ["D-1", "D-1"]


def test_refund_and_refund_query_edge_cases(box: Box) -> None:
    box.open("D-1")
    requests.post(f"{box.url}/sandbox/pay/D-1", timeout=5)
    refund = "alipay.trade.refund"
    assert box.call(refund, {"out_trade_no": "D-1", "refund_amount": "1,00"})["sub_code"] == \
        "ACQ.INVALID_PARAMETER"
    first = box.call(refund, {"out_trade_no": "D-1", "refund_amount": "1.00",
                              "out_request_no": "R1"})
    assert (first["fund_change"], first["refund_fee"]) == ("Y", "1.00")
    other_amount = box.call(refund, {"out_trade_no": "D-1", "refund_amount": "2.00",
                                     "out_request_no": "R1"})
    assert other_amount["sub_code"] == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    # Without out_request_no Alipay uses the order number as the request number.
    assert box.call(refund, {"out_trade_no": "D-1", "refund_amount": "2.00"})["fund_change"] == "Y"
    query = box.call("alipay.trade.fastpay.refund.query", {"out_trade_no": "D-1"})
    assert (query["out_request_no"], query["refund_amount"]) == ("D-1", "2.00")
    assert box.call("alipay.trade.fastpay.refund.query", {"out_trade_no": "D-9"})["sub_code"] == \
        "ACQ.TRADE_NOT_EXIST"


def test_bill_download_url_errors_and_single_use(box: Box) -> None:
    bill = "alipay.data.dataservice.bill.downloadurl.query"
    assert box.call(bill, {"bill_type": "signcustomer", "bill_date": "2026-12-03"})["sub_code"] \
        == "isp.bill_type_not_supported"
    assert box.call(bill, {"bill_type": "trade", "bill_date": "2026-12"})["sub_code"] == \
        "isv.invalid-bill-date"
    assert box.call(bill, {"bill_type": "trade", "bill_date": "2026-12-03"})["sub_code"] == \
        "isp.bill_not_exist"
    box.open("D-1")
    requests.post(f"{box.url}/sandbox/pay/D-1", timeout=5)
    url = box.call(bill, {"bill_type": "trade", "bill_date": "2026-12-03"})["bill_download_url"]
    assert requests.get(url, timeout=5).content[:2] == b"PK"
    assert requests.get(url, timeout=5).status_code == 404
    statement = box.channel.fetch_statement(date(2026, 12, 3))
    assert statement is not None
    assert [r.order_no for r in read(statement.content)] == ["D-1"]


def test_page_pay_parameters_are_checked(box: Box) -> None:
    def page_pay(biz: dict[str, str]) -> requests.Response:
        params = {"app_id": box.keys.app_id, "method": "alipay.trade.page.pay",
                  "sign_type": "RSA2", "biz_content": json.dumps(biz)}
        app_key = box.channel.settings.app_private_key.get_secret_value()
        params["sign"] = sign_with_rsa2(app_key, get_sign_content(params), "utf-8")
        return requests.get(f"{box.url}/gateway.do", params=params, allow_redirects=False,
                            timeout=5)

    good = {"out_trade_no": "D-1", "total_amount": "1.00",
            "product_code": "FAST_INSTANT_TRADE_PAY"}
    for broken in ({**good, "product_code": "QUICK_WAP_WAY"}, {**good, "total_amount": "0.00"},
                   {**good, "total_amount": "1.001"}, {**good, "time_expire": "soon"}):
        answer = page_pay(broken)
        assert answer.status_code == 400 and "ACQ.INVALID_PARAMETER" in answer.text
    assert page_pay(good).status_code == 302
    assert box.gateway.trades["D-1"].expires_at is None

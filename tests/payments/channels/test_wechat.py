"""WeChat Pay v3 channel against its sandbox gateway over real HTTP on loopback."""

from __future__ import annotations

import base64
import gzip
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import SecretStr
from werkzeug.wrappers import Request, Response

from payments.channels.base import (
    ChannelError,
    ChannelUnavailable,
    InvalidNotification,
    OrderRequest,
    PaymentChannel,
    RefundRequest,
    RefundState,
    Scene,
    TradeState,
)
from payments.channels.wechat import WechatPayChannel, WechatPaySettings
from payments.reconcile import wechat as wechat_bill
from payments.sandbox.wechat import (
    WechatSandbox,
    WechatSandboxKeys,
    _signed_headers,
    channel_settings,
    generate_keys,
    make_gateway,
    notification_for,
    signed_notification,
)
from portal.kernel.clock import FrozenClock, SystemClock

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)  # 10:00 in Beijing


@pytest.fixture(scope="module")
def keys() -> WechatSandboxKeys:
    return generate_keys()


@pytest.fixture(scope="module")
def other_keys() -> WechatSandboxKeys:
    return generate_keys()


@dataclass
class Receiver:
    """Our notify endpoint in miniature: parse with the channel, answer with its ack."""

    channel: WechatPayChannel | None = None
    received: list[Any] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        assert self.channel is not None
        try:
            notification = self.channel.parse_notification(request.headers, request.get_data())
        except InvalidNotification as exc:
            status, headers, body = self.channel.ack(False, exc.status, exc.reason)
        else:
            self.received.append(notification)
            status, headers, body = self.channel.ack(True)
        return Response(body, status=status, headers=dict(headers))(environ, start_response)


@dataclass
class World:
    keys: WechatSandboxKeys
    gateway: WechatSandbox
    gateway_url: str
    notify_url: str
    channel: WechatPayChannel
    receiver: Receiver
    clock: FrozenClock


@pytest.fixture
def world(keys: WechatSandboxKeys, wsgi_server: Callable[..., str]) -> World:
    clock = FrozenClock(NOW)
    gateways: list[WechatSandbox] = []

    def build(url: str) -> WechatSandbox:
        gateways.append(make_gateway(keys, url, clock=clock))
        return gateways[0]

    gateway_url = wsgi_server(build)
    receiver = Receiver()
    notify_url = wsgi_server(lambda url: receiver) + "/notify/wechat"
    channel = WechatPayChannel(channel_settings(keys, gateway_url, notify_url), clock=clock)
    receiver.channel = channel
    return World(keys, gateways[0], gateway_url, notify_url, channel, receiver, clock)


def order(no: str = "DF20261203000001", amount_fen: int = 12345, **kw: Any) -> OrderRequest:
    values: dict[str, Any] = {
        "order_no": no,
        "amount_fen": amount_fen,
        "description": "电费 2026-11",
        "scene": Scene.DESKTOP,
        "notify_url": "http://127.0.0.1:9/notify/wechat",
        "return_url": "http://127.0.0.1:9/return",
        "expires_at": NOW + timedelta(minutes=30),
    }
    values.update(kw)
    return OrderRequest(**values)


def paid(world: World, no: str = "DF20261203000001", amount_fen: int = 12345) -> None:
    world.channel.create(order(no, amount_fen, notify_url=world.notify_url))
    world.gateway.pay(no)


def test_is_a_payment_channel(world: World) -> None:
    assert isinstance(world.channel, PaymentChannel)
    assert world.channel.name == "wechat"


# -- orders -----------------------------------------------------------------------------------


def test_native_order_gives_a_code_url_showing_the_sandbox_pay_page(world: World) -> None:
    checkout = world.channel.create(order())

    assert checkout.pay_params is None
    assert checkout.code_url is not None
    assert checkout.code_url.startswith(world.gateway_url + "/pay/")
    page = requests.get(checkout.code_url, timeout=5)
    assert page.status_code == 200
    assert "123.45" in page.text
    assert "DF20261203000001" in page.text


def test_jsapi_order_gives_request_payment_params_signed_with_the_merchant_key(
    world: World, keys: WechatSandboxKeys
) -> None:
    checkout = world.channel.create(order(scene=Scene.MINIPROGRAM, payer_openid="o-user-1"))

    params = checkout.pay_params
    assert params is not None and checkout.code_url is None
    sandbox_order = world.gateway.orders["DF20261203000001"]
    assert params["package"] == f"prepay_id={sandbox_order.prepay_id}"
    assert sandbox_order.openid == "o-user-1"
    assert params["appId"] == keys.appid
    assert params["timeStamp"] == str(int(NOW.timestamp()))
    assert params["signType"] == "RSA"
    public = serialization.load_pem_public_key(keys.merchant_public_key_pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    signed = "".join(
        params[name] + "\n" for name in ("appId", "timeStamp", "nonceStr", "package")
    )
    public.verify(  # raises InvalidSignature when wrong
        base64.b64decode(params["paySign"]), signed.encode(), padding.PKCS1v15(), hashes.SHA256()
    )


def test_jsapi_order_needs_the_payer_openid(world: World) -> None:
    with pytest.raises(ChannelError) as info:
        world.channel.create(order(scene=Scene.MINIPROGRAM))
    assert info.value.code == "openid_required"


def test_a_library_refusal_is_not_hidden(world: World) -> None:
    with pytest.raises(Exception, match="description is not assigned"):
        world.channel.create(order(description=""))
    assert world.gateway.orders == {}


def test_only_cny(world: World) -> None:
    with pytest.raises(ChannelError) as info:
        world.channel.create(order(currency="USD"))
    assert info.value.code == "unsupported_currency"


def test_a_reused_order_number_with_another_amount_is_refused(world: World) -> None:
    world.channel.create(order(amount_fen=100))
    with pytest.raises(ChannelError) as info:
        world.channel.create(order(amount_fen=200))
    assert info.value.code == "INVALID_REQUEST"


def test_query_follows_the_trade_from_unpaid_to_paid(world: World) -> None:
    world.channel.create(order(notify_url=world.notify_url))

    pending = world.channel.query("DF20261203000001")
    assert pending.state is TradeState.PENDING
    assert pending.amount_fen == 12345
    assert pending.paid_at is None

    world.gateway.pay("DF20261203000001")

    trade = world.channel.query("DF20261203000001")
    assert trade.state is TradeState.SUCCEEDED
    assert trade.amount_fen == 12345
    assert trade.currency == "CNY"
    assert trade.paid_at == NOW
    assert trade.channel_trade_no == world.gateway.orders["DF20261203000001"].transaction_id


def test_confirming_on_the_pay_page_sends_a_notification_the_channel_accepts(
    world: World,
) -> None:
    checkout = world.channel.create(order(notify_url=world.notify_url))
    assert checkout.code_url is not None

    page = requests.post(checkout.code_url, data={"outcome": "confirm"}, timeout=10)

    assert page.status_code == 200
    assert "SUCCESS" in page.text
    assert world.gateway.orders["DF20261203000001"].notifications == [204]
    [notification] = world.receiver.received
    assert notification.event_type == "TRANSACTION.SUCCESS"
    assert notification.trade is not None
    assert notification.trade.order_no == "DF20261203000001"
    assert notification.trade.state is TradeState.SUCCEEDED
    assert notification.trade.amount_fen == 12345


def test_failing_on_the_pay_page_sends_nothing_and_queries_as_failed(world: World) -> None:
    checkout = world.channel.create(order(notify_url=world.notify_url))
    assert checkout.code_url is not None

    requests.post(checkout.code_url, data={"outcome": "fail"}, timeout=10)

    assert world.receiver.received == []
    assert world.channel.query("DF20261203000001").state is TradeState.FAILED


def test_query_of_an_unknown_order_says_not_found(world: World) -> None:
    assert world.channel.query("DF-NEVER-SENT").state is TradeState.NOT_FOUND


def test_close_an_unpaid_order(world: World) -> None:
    world.channel.create(order())

    world.channel.close("DF20261203000001")
    world.channel.close("DF20261203000001")  # closing twice is fine
    world.channel.close("DF-NEVER-SENT")  # so is closing an unknown order

    assert world.channel.query("DF20261203000001").state is TradeState.CLOSED


def test_closing_a_paid_order_says_already_paid(world: World) -> None:
    paid(world)

    with pytest.raises(ChannelError) as info:
        world.channel.close("DF20261203000001")

    assert info.value.code == "already_paid"
    assert world.channel.query("DF20261203000001").state is TradeState.SUCCEEDED


# -- refunds ------------------------------------------------------------------------------------


def refund_request(no: str = "RF20261203000001", amount_fen: int = 2345) -> RefundRequest:
    return RefundRequest(
        order_no="DF20261203000001",
        refund_no=no,
        amount_fen=amount_fen,
        order_amount_fen=12345,
        reason="多缴退费",
    )


def test_refund_retried_with_the_same_number_refunds_once(world: World) -> None:
    paid(world)

    first = world.channel.refund(refund_request())
    again = world.channel.refund(refund_request())

    assert first.state is RefundState.PENDING
    assert first.amount_fen == 2345
    assert again.channel_refund_no == first.channel_refund_no
    assert world.gateway.refund_calls == 2
    assert len(world.gateway.refunds) == 1
    done = world.channel.query_refund(refund_request())
    assert done.state is RefundState.SUCCEEDED
    assert done.channel_refund_no == first.channel_refund_no
    assert world.channel.query("DF20261203000001").state is TradeState.REFUNDED


def test_an_abnormal_refund_stays_pending_until_it_is_finished_by_hand(world: World) -> None:
    paid(world)
    world.channel.refund(refund_request())
    [sent] = world.gateway.refunds.values()
    sent.status = "ABNORMAL"  # the payer's bank card was closed
    assert world.channel.query_refund(refund_request()).state is RefundState.PENDING
    sent.status = "SUCCESS"  # staff sent it to another account in the merchant platform
    assert world.channel.query_refund(refund_request()).state is RefundState.SUCCEEDED


def test_refund_beyond_the_order_amount_is_refused(world: World) -> None:
    paid(world)
    world.channel.refund(refund_request("RF1", 12000))

    with pytest.raises(ChannelError) as info:
        world.channel.refund(refund_request("RF2", 1000))

    assert info.value.code == "INVALID_REQUEST"
    assert list(world.gateway.refunds) == ["RF1"]


def test_refund_of_an_unpaid_order_is_refused(world: World) -> None:
    world.channel.create(order())
    with pytest.raises(ChannelError):
        world.channel.refund(refund_request())


def test_query_of_an_unknown_refund(world: World) -> None:
    with pytest.raises(ChannelError) as info:
        world.channel.query_refund(refund_request())
    assert info.value.code == "RESOURCE_NOT_EXISTS"


# -- statement ----------------------------------------------------------------------------------


def test_statement_lists_the_days_payments_and_refunds_in_fen(world: World) -> None:
    paid(world, "DF20261203000001", 12345)
    paid(world, "DF20261203000002", 100)
    world.channel.refund(refund_request("RF20261203000001", 345))

    statement = world.channel.fetch_statement(date(2026, 12, 3))
    assert statement is not None and statement.suffix == ".csv.gz"
    rows = list(wechat_bill.parse(io.BytesIO(statement.content)))

    by_kind = {(row.kind, row.order_no): row for row in rows}
    assert set(by_kind) == {
        ("payment", "DF20261203000001"),
        ("payment", "DF20261203000002"),
        ("refund", "DF20261203000001"),
    }
    payment = by_kind["payment", "DF20261203000001"]
    assert payment.amount_fen == 12345
    assert payment.fee_fen == 74  # 0.6% of 123.45, half up
    assert payment.occurred_at == NOW
    assert payment.channel_trade_no == world.gateway.orders["DF20261203000001"].transaction_id
    refund = by_kind["refund", "DF20261203000001"]
    assert refund.amount_fen == 345
    assert refund.fee_fen == 2  # given back
    assert refund.refund_no == "RF20261203000001"
    assert world.channel.fetch_statement(date(2026, 12, 2)) is None


def test_statement_whose_download_does_not_match_its_sha1_is_refused(
    world: World, monkeypatch: Any
) -> None:
    paid(world)
    genuine = world.gateway._download

    def altered(request: Request) -> Response:
        text = gzip.decompress(genuine(request).get_data()).decode()
        return Response(gzip.compress(text.replace("123.45", "923.45").encode()))

    monkeypatch.setattr(world.gateway, "_download", altered)
    with pytest.raises(ChannelError) as info:
        world.channel.fetch_statement(date(2026, 12, 3))
    assert info.value.code == "bad_statement"


def test_statement_download_that_is_not_gzip_is_refused(world: World, monkeypatch: Any) -> None:
    paid(world)
    monkeypatch.setattr(world.gateway, "_download", lambda request: Response(b"plain text"))
    with pytest.raises(ChannelError) as info:
        world.channel.fetch_statement(date(2026, 12, 3))
    assert info.value.code == "bad_statement"


BILL_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
    "付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,"
    "退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
SUMMARY_HEADER = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)


def bill_line(state: str = "SUCCESS", currency: str = "CNY", amount: str = "1.00") -> str:
    values = ["2026-12-03 10:00:00", "wx1", "1900", "0", "", "4200", "DF1", "o", "NATIVE", state,
              "OTHERS", currency, amount, "0.00", "", "", "0.00", "0.00", "", "", "电费", "",
              "0.01", "0.60%", amount, "0.00", ""]
    return ",".join("`" + v for v in values)


@pytest.mark.parametrize(
    "text",
    [
        "",
        BILL_HEADER + "\n" + bill_line(),
        BILL_HEADER + "\n" + bill_line() + "\n" + SUMMARY_HEADER + "\n`2,`1.00",
        BILL_HEADER + "\n" + bill_line("REVOKED") + "\n" + SUMMARY_HEADER + "\n`1,`1.00",
        BILL_HEADER + "\n" + bill_line(currency="USD") + "\n" + SUMMARY_HEADER + "\n`1,`1.00",
        BILL_HEADER + "\n" + bill_line(amount="1.5.0") + "\n" + SUMMARY_HEADER + "\n`1,`1.00",
        "交易时间,商户订单号\n" + SUMMARY_HEADER + "\n`0",
    ],
    ids=["empty", "no-summary", "count", "state", "currency", "amount", "columns"],
)
def test_malformed_bills_are_refused(text: str) -> None:
    with pytest.raises(ChannelError) as info:
        list(wechat_bill.parse(io.BytesIO(gzip.compress(text.encode()))))
    assert info.value.code == "bad_statement"


# -- transport failures -------------------------------------------------------------------------


def test_an_unreachable_gateway_is_unavailable(keys: WechatSandboxKeys) -> None:
    channel = WechatPayChannel(channel_settings(keys, "http://127.0.0.1:9", None))
    with pytest.raises(ChannelUnavailable):
        channel.query("DF20261203000001")


def test_a_5xx_is_unavailable(keys: WechatSandboxKeys, wsgi_server: Callable[..., str]) -> None:
    url = wsgi_server(lambda base: Response("busy", status=503))
    channel = WechatPayChannel(channel_settings(keys, url, None))
    with pytest.raises(ChannelUnavailable):
        channel.create(order())


def test_an_answer_signed_with_another_key_is_not_trusted(
    world: World, other_keys: WechatSandboxKeys
) -> None:
    settings = world.channel.settings.model_copy(
        update={"public_key_pem": other_keys.platform_public_key_pem}
    )
    channel = WechatPayChannel(settings)
    with pytest.raises(ChannelUnavailable):
        channel.create(order())


def test_requests_signed_with_another_merchant_key_are_refused(
    world: World, other_keys: WechatSandboxKeys
) -> None:
    settings = world.channel.settings.model_copy(
        update={"private_key_pem": SecretStr(other_keys.merchant_private_key_pem)}
    )
    with pytest.raises(ChannelError) as info:
        WechatPayChannel(settings).create(order())
    assert info.value.code == "SIGN_ERROR"
    assert world.gateway.orders == {}


# -- notifications ------------------------------------------------------------------------------

STAMP = int(NOW.timestamp())


@pytest.fixture
def channel(keys: WechatSandboxKeys) -> WechatPayChannel:
    # The gateway is never reached while parsing notifications (see the unknown-serial test).
    settings = channel_settings(keys, "http://127.0.0.1:9", None)
    return WechatPayChannel(settings, clock=FrozenClock(NOW))


def notify(keys: WechatSandboxKeys, **kw: Any) -> tuple[dict[str, str], bytes]:
    values: dict[str, Any] = {"out_trade_no": "DF20261203000001", "amount_fen": 12345,
                              "timestamp": STAMP}
    values.update(kw)
    return signed_notification(keys, **values)


def test_a_valid_notification_gives_the_verified_trade(
    channel: WechatPayChannel, keys: WechatSandboxKeys
) -> None:
    headers, body = notify(keys, event_id="EV-1", transaction_id="4200000001")

    notification = channel.parse_notification(headers, body)

    assert notification.event_id == "EV-1"
    assert notification.event_type == "TRANSACTION.SUCCESS"
    assert notification.trade is not None
    assert notification.trade.order_no == "DF20261203000001"
    assert notification.trade.state is TradeState.SUCCEEDED
    assert notification.trade.amount_fen == 12345
    assert notification.trade.channel_trade_no == "4200000001"
    assert notification.trade.paid_at == NOW
    assert notification.raw["resource"]["mchid"] == keys.mchid


def test_header_names_are_case_insensitive(
    channel: WechatPayChannel, keys: WechatSandboxKeys
) -> None:
    headers, body = notify(keys)
    lowered = {name.lower(): value for name, value in headers.items()}
    assert channel.parse_notification(lowered, body).trade is not None


@pytest.mark.parametrize(
    ("wechat_state", "state"),
    [("NOTPAY", TradeState.PENDING), ("USERPAYING", TradeState.PENDING),
     ("CLOSED", TradeState.CLOSED), ("REVOKED", TradeState.CLOSED),
     ("PAYERROR", TradeState.FAILED), ("REFUND", TradeState.REFUNDED)],
)
def test_trade_states_are_mapped(
    channel: WechatPayChannel, keys: WechatSandboxKeys, wechat_state: str, state: TradeState
) -> None:
    notification = channel.parse_notification(*notify(keys, trade_state=wechat_state))
    assert notification.trade is not None and notification.trade.state is state


def test_a_refund_event_is_verified_but_carries_no_trade(
    channel: WechatPayChannel, keys: WechatSandboxKeys
) -> None:
    resource = {"mchid": keys.mchid, "out_trade_no": "DF1", "out_refund_no": "RF1",
                "refund_status": "SUCCESS", "amount": {"refund": 1, "total": 1}}
    headers, body = notification_for(keys, resource, event_type="REFUND.SUCCESS",
                                     timestamp=STAMP)
    notification = channel.parse_notification(headers, body)
    assert notification.trade is None
    assert notification.raw["resource"]["out_refund_no"] == "RF1"


def _forge(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    forged = dict(headers)
    forged["Wechatpay-Signature"] = base64.b64encode(b"\x00" * 256).decode()
    return forged, body


def _tamper(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    envelope = json.loads(body)
    envelope["summary"] = "tampered"
    return headers, json.dumps(envelope).encode()


def _drop(name: str) -> Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]:
    return lambda headers, body: ({k: v for k, v in headers.items() if k != name}, body)


def _set(name: str, value: str) -> Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]:
    return lambda headers, body: ({**headers, name: value}, body)


@pytest.mark.parametrize(
    ("kw", "mutate", "status"),
    [
        ({}, _forge, 401),
        ({}, _tamper, 401),
        ({"wrong_key": True}, None, 401),
        ({"timestamp": STAMP - 301}, None, 401),
        ({"timestamp": STAMP + 301}, None, 401),
        ({}, _set("Wechatpay-Timestamp", "soon"), 401),
        ({}, _drop("Wechatpay-Signature"), 401),
        ({}, _set("Wechatpay-Signature-Type", "WECHATPAY2-SM2-WITH-SM3"), 401),
        ({"appid": "wx0000000000000000"}, None, 400),
        ({"mchid": "1900999999"}, None, 400),
        ({"currency": "USD"}, None, 400),
        ({"apiv3_key": "0" * 32}, None, 500),
    ],
    ids=["forged-signature", "tampered-body", "wrong-key", "stale", "future",
         "timestamp-not-a-number", "no-signature", "sm2-signature-type", "wrong-appid",
         "wrong-mchid", "wrong-currency", "undecryptable"],
)
def test_bad_notifications_are_rejected(
    channel: WechatPayChannel,
    keys: WechatSandboxKeys,
    other_keys: WechatSandboxKeys,
    kw: dict[str, Any],
    mutate: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]] | None,
    status: int,
) -> None:
    if kw.pop("wrong_key", False):
        kw["signing_key_pem"] = other_keys.platform_private_key_pem
    headers, body = notify(keys, **kw)
    if mutate is not None:
        headers, body = mutate(headers, body)

    with pytest.raises(InvalidNotification) as info:
        channel.parse_notification(headers, body)

    assert info.value.status == status


def test_stale_but_within_five_minutes_is_accepted(
    channel: WechatPayChannel, keys: WechatSandboxKeys
) -> None:
    assert channel.parse_notification(*notify(keys, timestamp=STAMP - 299)).trade is not None


def test_an_unknown_serial_is_rejected_without_calling_the_network(
    channel: WechatPayChannel, keys: WechatSandboxKeys, monkeypatch: Any
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the handler called the network")

    monkeypatch.setattr(requests.Session, "request", no_network)
    for serial in ("5157F09EFDC096DE15EBE81A47057A7232F1B8E1", "PUB_KEY_ID_0000"):
        headers, body = notify(keys, serial=serial)
        with pytest.raises(InvalidNotification) as info:
            channel.parse_notification(headers, body)
        assert info.value.status == 401


def _signed_body(keys: WechatSandboxKeys, body: str) -> tuple[dict[str, str], bytes]:
    return _signed_headers(keys.platform_private_key_pem, keys.public_key_id, body, STAMP), (
        body.encode()
    )


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "[1, 2]",
        json.dumps({"id": "EV", "resource_type": "plain", "resource": {}}),
        json.dumps({"id": "EV", "resource_type": "encrypt-resource",
                    "resource": {"algorithm": "AES-CBC"}}),
        json.dumps({"id": "EV", "resource_type": "encrypt-resource",
                    "resource": {"algorithm": "AEAD_AES_256_GCM", "nonce": "123456789012"}}),
    ],
    ids=["not-json", "not-object", "not-encrypted", "algorithm", "no-ciphertext"],
)
def test_malformed_signed_bodies_are_400(
    channel: WechatPayChannel, keys: WechatSandboxKeys, body: str
) -> None:
    with pytest.raises(InvalidNotification) as info:
        channel.parse_notification(*_signed_body(keys, body))
    assert info.value.status == 400


def test_a_body_that_is_not_utf8_is_400(
    channel: WechatPayChannel, keys: WechatSandboxKeys
) -> None:
    headers, _ = _signed_body(keys, "x")
    with pytest.raises(InvalidNotification) as info:
        channel.parse_notification(headers, b"\xff\xfe")
    assert info.value.status == 400


@pytest.mark.parametrize(
    "resource",
    [
        {"out_trade_no": "DF1", "trade_state": "WEIRD", "amount": {"total": 1}},
        {"out_trade_no": "DF1", "trade_state": "SUCCESS", "amount": {"total": 1.5}},
        {"out_trade_no": "DF1", "trade_state": "SUCCESS", "amount": {"total": 1},
         "success_time": "yesterday"},
        {"out_trade_no": "DF1", "trade_state": "SUCCESS", "amount": {"total": 1},
         "success_time": "2026-12-03T10:00:00"},
        {"trade_state": "SUCCESS", "amount": {"total": 1}},
        {"out_trade_no": "DF1", "trade_state": "SUCCESS"},
        {"out_trade_no": "DF1", "trade_state": "SUCCESS", "amount": {"currency": "CNY"}},
    ],
    ids=["state", "amount", "time", "naive-time", "no-order", "no-amount", "no-total"],
)
def test_a_signed_transaction_with_bad_fields_is_400(
    channel: WechatPayChannel, keys: WechatSandboxKeys, resource: dict[str, Any]
) -> None:
    full = {"appid": keys.appid, "mchid": keys.mchid, **resource}
    with pytest.raises(InvalidNotification) as info:
        channel.parse_notification(*notification_for(keys, full, timestamp=STAMP))
    assert info.value.status == 400


def test_a_notification_without_id_is_400(
    channel: WechatPayChannel, keys: WechatSandboxKeys
) -> None:
    with pytest.raises(InvalidNotification) as info:
        channel.parse_notification(*notify(keys, event_id=""))
    assert info.value.status == 400


def test_ack() -> None:
    channel = WechatPayChannel.__new__(WechatPayChannel)
    assert channel.ack(True) == (204, {}, b"")
    status, headers, body = channel.ack(False)
    assert status == 500
    assert json.loads(body) == {"code": "FAIL", "message": "FAIL"}
    assert headers["Content-Type"].startswith("application/json")
    assert channel.ack(False, 401, "签名错误")[0] == 401


# -- settings -------------------------------------------------------------------------------------


def test_settings_validation(keys: WechatSandboxKeys, tmp_path: Path) -> None:
    base = channel_settings(keys, "https://api.mch.weixin.qq.com", None).model_dump()
    base["sandbox"] = False
    for broken, message in (
        ({"apiv3_key": "short"}, "32 bytes"),
        ({"public_key_id": "5157F09E"}, "PUB_KEY_ID_"),
        ({"private_key_pem": None}, "exactly one"),
        ({"private_key_path": tmp_path / "key.pem"}, "exactly one"),
    ):
        values = {**base, **broken}
        values["apiv3_key"] = values["apiv3_key"] if broken.get("apiv3_key") else keys.apiv3_key
        if "private_key_pem" not in broken:
            values["private_key_pem"] = keys.merchant_private_key_pem
        with pytest.raises(ValueError, match=message):
            WechatPaySettings(**values)

    path = tmp_path / "key.pem"
    path.write_text(keys.merchant_private_key_pem)
    from_file = WechatPaySettings(
        **{**base, "apiv3_key": keys.apiv3_key, "private_key_pem": None, "private_key_path": path}
    )
    assert from_file.private_key() == keys.merchant_private_key_pem
    assert not from_file.uses_sandbox
    WechatPayChannel(from_file, clock=SystemClock())  # no network at construction


@pytest.mark.parametrize(
    ("gateway", "sandbox", "expected"),
    [
        ("https://api.mch.weixin.qq.com", False, False),
        ("https://api.mch.weixin.qq.com", True, True),
        ("http://api.mch.weixin.qq.com", False, True),
        ("https://127.0.0.1:8443", False, True),
        ("https://localhost", False, True),
    ],
)
def test_sandbox_settings_are_recognisable(
    keys: WechatSandboxKeys, gateway: str, sandbox: bool, expected: bool
) -> None:
    settings = channel_settings(keys, gateway, None).model_copy(update={"sandbox": sandbox})
    assert settings.uses_sandbox is expected


# -- a gateway giving odd answers (correctly signed) ------------------------------------------


@pytest.fixture
def rogue(
    keys: WechatSandboxKeys, wsgi_server: Callable[..., str]
) -> Callable[..., WechatPayChannel]:
    """A channel talking to a gateway that answers every request with one signed reply."""

    def build(status: int, data: Any, content_type: str = "application/json") -> WechatPayChannel:
        body = data if isinstance(data, str) else json.dumps(data)

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            headers = _signed_headers(keys.platform_private_key_pem, keys.public_key_id, body)
            response = Response(body, status=status, headers=headers, content_type=content_type)
            return response(environ, start_response)

        url = wsgi_server(lambda base: app)
        return WechatPayChannel(channel_settings(keys, url, None))

    return build


def test_a_query_answer_about_another_merchant_is_refused(
    rogue: Callable[..., WechatPayChannel], keys: WechatSandboxKeys
) -> None:
    answer = {"appid": keys.appid, "mchid": "1900000000", "out_trade_no": "DF20261203000001",
              "trade_state": "SUCCESS", "amount": {"total": 1}}
    with pytest.raises(ChannelError) as info:
        rogue(200, answer).query("DF20261203000001")
    assert info.value.code == "merchant_mismatch"


def test_a_query_answer_about_another_order_is_refused(
    rogue: Callable[..., WechatPayChannel], keys: WechatSandboxKeys
) -> None:
    answer = {"appid": keys.appid, "mchid": keys.mchid, "out_trade_no": "DF-OTHER",
              "trade_state": "SUCCESS", "amount": {"total": 1}}
    with pytest.raises(ChannelError) as info:
        rogue(200, answer).query("DF20261203000001")
    assert info.value.code == "bad_response"


@pytest.mark.parametrize(
    ("answer", "content_type"),
    [("not json", "application/json"), ("[]", "application/json"), ("<xml/>", "text/xml"),
     ({"prepay_id": "wx1"}, "application/json")],
    ids=["garbage", "not-object", "not-json-type", "no-code-url"],
)
def test_unreadable_answers_are_unavailable(
    rogue: Callable[..., WechatPayChannel], answer: Any, content_type: str
) -> None:
    with pytest.raises(ChannelUnavailable):
        rogue(200, answer, content_type).create(order())


@pytest.mark.parametrize("method", ["query", "close", "statement"])
def test_other_errors_pass_through(rogue: Callable[..., WechatPayChannel], method: str) -> None:
    channel = rogue(400, {"code": "PARAM_ERROR", "message": "参数错误"})
    with pytest.raises(ChannelError) as info:
        if method == "statement":
            channel.fetch_statement(date(2026, 12, 3))
        else:
            getattr(channel, method)("DF20261203000001")
    assert info.value.code == "PARAM_ERROR"
    assert info.value.message == "参数错误"


def test_a_close_that_times_out_is_unavailable(rogue: Callable[..., WechatPayChannel]) -> None:
    with pytest.raises(ChannelUnavailable):
        rogue(502, "bad gateway", "text/html").close("DF20261203000001")


def test_an_error_without_a_code_is_named_by_its_status(
    rogue: Callable[..., WechatPayChannel],
) -> None:
    with pytest.raises(ChannelError) as info:
        rogue(403, "forbidden", "text/plain").query("DF20261203000001")
    assert info.value.code == "HTTP_403"


def test_a_bill_link_to_another_host_is_not_followed(
    rogue: Callable[..., WechatPayChannel],
) -> None:
    answer = {"hash_type": "SHA1", "hash_value": "00",
              "download_url": "https://evil.example/v3/billdownload/file?token=x"}
    with pytest.raises(ChannelError) as info:
        rogue(200, answer).fetch_statement(date(2026, 12, 3))
    assert info.value.code == "bad_download_url"


@pytest.mark.parametrize(
    ("answer", "code"),
    [({"out_refund_no": "RF-OTHER", "status": "SUCCESS"}, "bad_response"),
     ({"out_refund_no": "RF20261203000001", "status": "WEIRD"}, "unknown_refund_state"),
     ({"out_refund_no": "RF20261203000001", "status": "SUCCESS"}, "bad_amount")],
)
def test_odd_refund_answers_are_refused(
    rogue: Callable[..., WechatPayChannel], answer: dict[str, Any], code: str
) -> None:
    with pytest.raises(ChannelError) as info:
        rogue(200, answer).query_refund(refund_request())
    assert info.value.code == code

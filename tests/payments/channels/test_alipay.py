"""AlipayChannel against the Alipay sandbox gateway over real HTTP on loopback."""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from alipay.aop.api.util.SignatureUtils import get_sign_content, verify_with_rsa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from payments.channels.alipay import AlipayChannel, AlipaySettings
from payments.channels.base import (
    ChannelError,
    ChannelUnavailable,
    InvalidNotification,
    Notification,
    OrderRequest,
    PaymentChannel,
    RefundRequest,
    RefundState,
    Scene,
    TradeState,
)
from payments.reconcile.alipay import read as parse_statement_zip
from payments.sandbox.alipay import (
    AlipayGateway,
    AlipaySandboxKeys,
    channel_settings,
    generate_keys,
    make_gateway,
    signed_notification,
)
from portal.kernel.clock import FrozenClock

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)  # 10:00 in Beijing


@pytest.fixture(scope="module")
def keys() -> AlipaySandboxKeys:
    return generate_keys()


@pytest.fixture(scope="module")
def other_keys() -> AlipaySandboxKeys:
    return generate_keys()


@dataclass
class Env:
    channel: AlipayChannel
    gateway: AlipayGateway
    base_url: str
    clock: FrozenClock
    received: list[Notification | InvalidNotification]


@pytest.fixture
def env(keys: AlipaySandboxKeys, wsgi_server: Callable[..., str]) -> Env:
    clock = FrozenClock(NOW)
    holder: dict[str, Any] = {}
    received: list[Notification | InvalidNotification] = []

    def portal_notify(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """Stands in for /notify/alipay: parse with the channel, answer with its ack."""
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        channel: AlipayChannel = holder["channel"]
        try:
            received.append(channel.parse_notification({}, body))
            status, headers, reply = channel.ack(True)
        except InvalidNotification as exc:
            received.append(exc)
            status, headers, reply = channel.ack(False)
        start_response(f"{status} X", list(headers.items()))
        return [reply]

    portal_url = wsgi_server(lambda base: portal_notify)
    gateway_holder: dict[str, AlipayGateway] = {}

    def build(base: str) -> AlipayGateway:
        gateway_holder["g"] = make_gateway(keys, base, clock)
        return gateway_holder["g"]

    base_url = wsgi_server(build)
    settings = channel_settings(keys, f"{base_url}/gateway.do", notify_url=f"{portal_url}/notify",
                                return_url=f"{portal_url}/return")
    holder["channel"] = AlipayChannel(settings, clock)
    return Env(holder["channel"], gateway_holder["g"], base_url, clock, received)


@pytest.fixture
def offline(keys: AlipaySandboxKeys) -> AlipayChannel:
    """A channel for notification parsing: no gateway is needed (nor reachable)."""
    return AlipayChannel(channel_settings(keys, "http://127.0.0.1:9/gateway.do"), FrozenClock(NOW))


def order(order_no: str = "D202612030001", amount_fen: int = 1234,
          scene: Scene = Scene.DESKTOP) -> OrderRequest:
    return OrderRequest(order_no=order_no, amount_fen=amount_fen, description="电费 2026-11",
                        scene=scene, notify_url="", return_url="",
                        expires_at=NOW + timedelta(minutes=30))


def open_and_pay(env: Env, request: OrderRequest) -> None:
    """The buyer opens the pay URL (the trade appears at the gateway) and pays."""
    url = env.channel.create(request).redirect_url
    assert url is not None
    assert requests.get(url, allow_redirects=False, timeout=5).status_code == 302
    paid = requests.post(f"{env.base_url}/sandbox/pay/{request.order_no}", timeout=5)
    assert paid.status_code == 200, paid.text


def open_only(env: Env, request: OrderRequest) -> None:
    url = env.channel.create(request).redirect_url
    assert url is not None
    assert requests.get(url, allow_redirects=False, timeout=5).status_code == 302


def test_the_channel_is_a_payment_channel(env: Env) -> None:
    assert isinstance(env.channel, PaymentChannel)
    assert env.channel.name == "alipay"


# -- create --------------------------------------------------------------------------------


@pytest.mark.parametrize(("scene", "method", "product_code"), [
    (Scene.DESKTOP, "alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
    (Scene.MOBILE, "alipay.trade.wap.pay", "QUICK_WAP_WAY"),
])
def test_create_gives_a_signed_redirect_to_the_gateway(
        env: Env, keys: AlipaySandboxKeys, scene: Scene, method: str, product_code: str) -> None:
    url = env.channel.create(order(scene=scene, amount_fen=1205)).redirect_url
    assert url is not None and url.startswith(f"{env.base_url}/gateway.do?")
    params = dict(parse_qsl(urlsplit(url).query))
    assert params["method"] == method and params["sign_type"] == "RSA2"
    assert params["app_id"] == keys.app_id
    assert params["notify_url"].endswith("/notify") and params["return_url"].endswith("/return")
    sign = params.pop("sign")
    assert verify_with_rsa(keys.app_public_key, get_sign_content(params).encode(), sign)
    assert f'"product_code":"{product_code}"' in params["biz_content"]
    assert '"total_amount":"12.05"' in params["biz_content"]
    assert '"time_expire":"2026-12-03 10:30:00"' in params["biz_content"]  # Beijing time
    # The sandbox verifies that signature and sends the browser to its payment page.
    page = requests.get(url, timeout=5)
    assert page.status_code == 200 and "¥12.05" in page.text


def test_create_refuses_scenes_and_currencies_alipay_cannot_pay(env: Env) -> None:
    with pytest.raises(ChannelError) as scene:
        env.channel.create(order(scene=Scene.MINIPROGRAM))
    assert scene.value.code == "unsupported_scene"
    usd = OrderRequest(order_no="D1", amount_fen=100, description="x", scene=Scene.DESKTOP,
                       notify_url="", return_url="", expires_at=NOW, currency="USD")
    with pytest.raises(ChannelError) as currency:
        env.channel.create(usd)
    assert currency.value.code == "unsupported_currency"


def test_a_tampered_redirect_is_refused_by_the_gateway(env: Env) -> None:
    url = env.channel.create(order()).redirect_url
    assert url is not None
    forged = url.replace("12.34", "0.01")
    answer = requests.get(forged, allow_redirects=False, timeout=5)
    assert answer.status_code == 400 and "isv.invalid-signature" in answer.text
    assert env.gateway.trades == {}


# -- query, close --------------------------------------------------------------------------


def test_query_follows_the_trade_from_unknown_to_paid(env: Env) -> None:
    assert env.channel.query("D202612030001").state is TradeState.NOT_FOUND
    open_only(env, order())
    pending = env.channel.query("D202612030001")
    assert (pending.state, pending.amount_fen, pending.paid_at) == (TradeState.PENDING, 1234, None)
    requests.post(f"{env.base_url}/sandbox/pay/D202612030001", timeout=5)
    paid = env.channel.query("D202612030001")
    assert (paid.state, paid.amount_fen, paid.paid_at) == (TradeState.SUCCEEDED, 1234, NOW)
    assert paid.channel_trade_no == env.gateway.trades["D202612030001"].trade_no


def test_close_an_unpaid_trade_then_again_then_an_unknown_one(env: Env) -> None:
    open_only(env, order())
    env.channel.close("D202612030001")
    assert env.channel.query("D202612030001").state is TradeState.CLOSED
    env.channel.close("D202612030001")  # closing a closed trade is fine
    env.channel.close("NEVER-OPENED")   # so is one the buyer never opened


def test_close_after_paid_says_already_paid(env: Env) -> None:
    open_and_pay(env, order())
    with pytest.raises(ChannelError) as err:
        env.channel.close("D202612030001")
    assert err.value.code == "already_paid"
    assert env.channel.query("D202612030001").state is TradeState.SUCCEEDED


def test_an_expired_trade_reads_closed(env: Env) -> None:
    open_only(env, order())
    env.clock.advance(timedelta(minutes=31))
    assert env.channel.query("D202612030001").state is TradeState.CLOSED


# -- refunds -------------------------------------------------------------------------------


def refund(no: str = "R1", amount_fen: int = 500) -> RefundRequest:
    return RefundRequest(order_no="D202612030001", refund_no=no, amount_fen=amount_fen,
                         order_amount_fen=1234, reason="多缴")


def test_refund_retried_with_the_same_number_refunds_once(env: Env) -> None:
    open_and_pay(env, order())
    first = env.channel.refund(refund())
    again = env.channel.refund(refund())  # e.g. after a timeout: fund_change=N, not proof
    assert (first.state, again.state) == (RefundState.SUCCEEDED, RefundState.PENDING)
    assert (first.amount_fen, again.amount_fen) == (500, 500)
    assert env.gateway.trades["D202612030001"].refunded_fen == 500
    queried = env.channel.query_refund(refund())
    assert (queried.state, queried.amount_fen) == (RefundState.SUCCEEDED, 500)
    assert env.channel.query_refund(refund("R-NEVER-SENT")).state is RefundState.PENDING


def test_full_refund_reads_refunded_and_over_refund_is_a_channel_error(env: Env) -> None:
    open_and_pay(env, order())
    with pytest.raises(ChannelError) as over:
        env.channel.refund(refund("R1", 1235))
    assert over.value.code == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    env.channel.refund(refund("R2", 1234))
    assert env.channel.query("D202612030001").state is TradeState.REFUNDED


def test_refund_of_an_unpaid_trade_is_a_channel_error(env: Env) -> None:
    open_only(env, order())
    with pytest.raises(ChannelError) as err:
        env.channel.refund(refund())
    assert err.value.code == "ACQ.TRADE_STATUS_ERROR"
    assert not isinstance(err.value, ChannelUnavailable)


# -- statement -----------------------------------------------------------------------------


def test_statement_lists_payments_and_refunds_and_matches_its_footer(env: Env) -> None:
    open_and_pay(env, order("D-A", 1234))
    open_and_pay(env, order("D-B", 20000))
    env.clock.advance(timedelta(hours=1))
    env.channel.refund(RefundRequest(order_no="D-B", refund_no="R-B1", amount_fen=5000,
                                     order_amount_fen=20000, reason="多缴"))
    statement = env.channel.fetch_statement(date(2026, 12, 3))
    assert statement is not None and statement.suffix == ".zip"
    rows = parse_statement_zip(statement.content)
    got = sorted((r.kind, r.order_no, r.amount_fen, r.fee_fen, r.refund_no, r.occurred_at)
                 for r in rows)
    assert got == [
        ("payment", "D-A", 1234, 7, None, NOW),       # 0.6 % of 12.34 = 0.074 -> 0.07
        ("payment", "D-B", 20000, 120, None, NOW),
        ("refund", "D-B", 5000, 30, "R-B1", NOW + timedelta(hours=1)),
    ]
    assert {r.channel_trade_no for r in rows} == {t.trade_no for t in env.gateway.trades.values()}
    assert env.channel.fetch_statement(date(2026, 12, 2)) is None


def _rewrite_detail(data: bytes, edit: Callable[[str], str]) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            if "汇总" not in info.filename:
                content = edit(content.decode("gbk")).encode("gbk")
            target.writestr(info.filename, content)
    return out.getvalue()


def test_statement_with_a_row_missing_or_a_bad_amount_is_refused(env: Env) -> None:
    open_and_pay(env, order("D-A", 1234))
    open_and_pay(env, order("D-B", 2000))
    data = env.gateway.bill_zip(date(2026, 12, 3))
    assert data is not None
    assert len(parse_statement_zip(data)) == 2
    drop_row = _rewrite_detail(data, lambda t: "\r\n".join(
        line for line in t.split("\r\n") if "D-B" not in line))
    bad_amount = _rewrite_detail(data, lambda t: t.replace(",20.00,20.00,", ",20.005,20.005,"))
    no_markers = _rewrite_detail(data, lambda t: t.replace("业务明细列表", "列表"))
    no_end = _rewrite_detail(data, lambda t: t.replace("业务明细列表结束", "结束"))
    unknown_kind = _rewrite_detail(data, lambda t: t.replace(",交易,", ",转账,"))
    unsigned_refund = _rewrite_detail(data, lambda t: t.replace(",交易,", ",退款,", 1))
    bad_time = _rewrite_detail(data, lambda t: t.replace(
        "10:00:00,2026-12-03 10:00:00,", "10:00:00,10:00,"))  # 完成时间
    for broken in (drop_row, bad_amount, no_markers, no_end, unknown_kind, unsigned_refund,
                   bad_time, b"not a zip"):
        with pytest.raises(ChannelError) as err:
            parse_statement_zip(broken)
        assert err.value.code == "bad_statement"


def test_statement_zip_with_gbk_file_names_as_alipay_sends_them(env: Env) -> None:
    """Alipay's zip names are GBK bytes without zip's UTF-8 flag; the summary file is skipped."""
    open_and_pay(env, order("D-A", 1234))
    data = env.gateway.bill_zip(date(2026, 12, 3))
    assert data is not None
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:  # ASCII stand-ins of the GBK names' byte length
        for info in source.infolist():
            stand_in = ("S" if "汇总" in info.filename else "D") * 8
            target.writestr(f"2088_{stand_in}.csv", source.read(info))
    gbk = out.getvalue().replace(b"D" * 8, "业务明细".encode("gbk"))
    gbk = gbk.replace(b"S" * 8, "明细汇总".encode("gbk"))
    infos = zipfile.ZipFile(io.BytesIO(gbk)).infolist()
    assert [info.flag_bits & 0x800 for info in infos] == [0, 0]
    [row] = parse_statement_zip(gbk)
    assert (row.order_no, row.amount_fen) == ("D-A", 1234)


def test_statement_in_the_layout_alipay_exports() -> None:
    """Cells padded with tabs, a refund row with negative amounts and its request number, the
    footer wording of real exports ("商家实收退款共-X元")."""
    header = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,"
              "操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,"
              "支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,"
              "卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")
    tail = ",0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,"
    text = "\n".join([
        "#支付宝业务明细查询", "#账号：[20881234567890120156]",
        "#起始日期：[2026年12月02日 00:00:00]   终止日期：[2026年12月03日 00:00:00]",
        "#" + "-" * 41 + "业务明细列表" + "-" * 40, header,
        "2026120222001400000000000001\t,D-1\t,交易\t,电费,2026-12-02 09:00:00,"
        "2026-12-02 09:00:05,\t,\t,\t,\t,*三(138****0000)\t,88.50,88.50" + tail
        + "\t,0.53,0.00,电费",
        "2026120222001400000000000001\t,D-1\t,退款\t,电费,2026-12-02 09:00:00,"
        "2026-12-02 15:30:00,\t,\t,\t,\t,*三(138****0000)\t,-8.50,-8.50" + tail
        + "R-1\t,0.00,0.00,电费",
        "#" + "-" * 41 + "业务明细列表结束" + "-" * 36,
        "#交易合计：1笔，商家实收共88.50元，商家优惠共0.00元",
        "#退款合计：1笔，商家实收退款共-8.50元，商家优惠退款共0.00元",
        "#导出时间：[2026年12月03日 05:46:49]"])
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("20881234567890120156_20261202_detail.csv", text.encode("gbk"))
    payment, refund = parse_statement_zip(data.getvalue())
    assert (payment.kind, payment.order_no, payment.amount_fen, payment.fee_fen) == (
        "payment", "D-1", 8850, 53)
    assert payment.channel_trade_no == "2026120222001400000000000001"
    assert payment.occurred_at == datetime(2026, 12, 2, 1, 0, 5, tzinfo=UTC)
    assert (refund.kind, refund.amount_fen, refund.refund_no) == ("refund", 850, "R-1")


# -- gateway failures ----------------------------------------------------------------------


def test_5xx_unreachable_and_unverifiable_answers_are_unavailable(
        env: Env, keys: AlipaySandboxKeys, other_keys: AlipaySandboxKeys) -> None:
    requests.post(f"{env.base_url}/sandbox/fail-next?status=503", timeout=5)
    with pytest.raises(ChannelUnavailable):
        env.channel.query("D1")
    closed = AlipayChannel(channel_settings(keys, "http://127.0.0.1:9/gateway.do"))
    with pytest.raises(ChannelUnavailable):
        closed.query("D1")
    # An answer signed by someone else's key is not trusted: the outcome is unknown.
    wrong = keys.model_copy(update={"alipay_public_key": other_keys.alipay_public_key})
    with pytest.raises(ChannelUnavailable):
        AlipayChannel(channel_settings(wrong, f"{env.base_url}/gateway.do")).query("D1")


def test_alipay_busy_is_unavailable_and_odd_signed_answers_are_channel_errors(env: Env) -> None:
    requests.post(f"{env.base_url}/sandbox/fail-next?sub_code=ACQ.SYSTEM_ERROR", timeout=5)
    with pytest.raises(ChannelUnavailable):
        env.channel.query("D202612030001")
    open_only(env, order())
    env.gateway.trades["D202612030001"].status = "TRADE_LOST"
    with pytest.raises(ChannelError) as status:
        env.channel.query("D202612030001")
    assert status.value.code == "unknown_trade_status"
    env.gateway.trades["D202612030001"].status = "WAIT_BUYER_PAY"
    env.gateway.trades["D202612030001"].amount_fen = -5  # the sandbox then says "-0.05"
    with pytest.raises(ChannelError) as amount:
        env.channel.query("D202612030001")
    assert amount.value.code == "bad_amount"


def test_a_request_signed_with_the_wrong_app_key_is_a_channel_error(
        env: Env, keys: AlipaySandboxKeys, other_keys: AlipaySandboxKeys) -> None:
    wrong = keys.model_copy(update={"app_private_key": other_keys.app_private_key})
    with pytest.raises(ChannelError) as err:
        AlipayChannel(channel_settings(wrong, f"{env.base_url}/gateway.do")).query("D1")
    assert err.value.code == "isv.invalid-signature"


# -- settings ------------------------------------------------------------------------------


def test_settings_accept_pkcs8_pkcs1_and_bare_base64_and_store_pkcs1(
        keys: AlipaySandboxKeys) -> None:
    pkcs8 = keys.app_private_key
    key = serialization.load_pem_private_key(pkcs8.encode(), password=None)
    pkcs1 = key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()).decode()
    bare = "".join(pkcs8.strip().splitlines()[1:-1])
    bare_public = "".join(keys.alipay_public_key.strip().splitlines()[1:-1])
    stored = {
        AlipaySettings(app_id="a", seller_id="s", app_private_key=text,
                       alipay_public_key=public).app_private_key.get_secret_value()
        for text, public in ((pkcs8, keys.alipay_public_key), (pkcs1, bare_public),
                             (bare, keys.alipay_public_key))}
    assert stored == {pkcs1}
    assert pkcs1.startswith("-----BEGIN RSA PRIVATE KEY-----")


def test_settings_refuse_unreadable_and_non_rsa_keys(keys: AlipaySandboxKeys) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_private = ec_key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()
    ec_public = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    for private, public in (("garbage", keys.alipay_public_key), (ec_private,
                            keys.alipay_public_key), (keys.app_private_key, "garbage"),
                            (keys.app_private_key, ec_public), (keys.app_private_key, 42),
                            (42, keys.alipay_public_key)):
        with pytest.raises(ValidationError):
            AlipaySettings(app_id="a", seller_id="s", app_private_key=private,
                           alipay_public_key=public)


# -- notifications -------------------------------------------------------------------------


def test_the_pay_page_confirm_notifies_the_portal_and_returns_signed(
        env: Env, keys: AlipaySandboxKeys) -> None:
    url = env.channel.create(order()).redirect_url
    assert url is not None
    browser = requests.Session()
    page = browser.get(url, timeout=5)
    assert "确认付款" in page.text
    back = browser.post(f"{env.base_url}/pay/D202612030001", data={"action": "confirm"},
                        allow_redirects=False, timeout=5)
    assert back.status_code == 302
    location = back.headers["Location"]
    assert location.startswith(env.channel.settings.return_url or "-")
    params = dict(parse_qsl(urlsplit(location).query))
    sign = params.pop("sign")
    params.pop("sign_type")
    assert verify_with_rsa(keys.alipay_public_key, get_sign_content(params).encode(), sign)
    [notification] = env.received
    assert isinstance(notification, Notification)
    assert notification.trade is not None
    assert (notification.trade.state, notification.trade.amount_fen) == (TradeState.SUCCEEDED,
                                                                         1234)
    assert env.gateway.sent == [("D202612030001", 200)]


def body_of(keys: AlipaySandboxKeys, **kw: Any) -> bytes:
    kw.setdefault("notify_time", NOW)
    return signed_notification(keys, out_trade_no="D202612030001", amount_fen=1234, **kw)[1]


def test_a_valid_notification_is_parsed(offline: AlipayChannel, keys: AlipaySandboxKeys) -> None:
    headers, body = signed_notification(keys, out_trade_no="D202612030001", amount_fen=1234,
                                        notify_time=NOW - timedelta(hours=25), notify_id="n-1")
    note = offline.parse_notification(headers, body)
    assert (note.event_id, note.event_type) == ("n-1", "trade_status_sync")
    assert note.trade is not None
    assert note.trade.order_no == "D202612030001"
    assert (note.trade.state, note.trade.amount_fen) == (TradeState.SUCCEEDED, 1234)
    assert note.trade.paid_at == NOW - timedelta(hours=25)
    assert note.raw["seller_id"] == keys.seller_id
    assert offline.ack(True) == (200, {"Content-Type": "text/plain; charset=utf-8"},
                                     b"success")
    assert offline.ack(False)[2] == b"fail"


@pytest.mark.parametrize(("status", "extra", "state"), [
    ("WAIT_BUYER_PAY", {}, TradeState.PENDING),
    ("TRADE_FINISHED", {}, TradeState.SUCCEEDED),
    ("TRADE_CLOSED", {}, TradeState.CLOSED),
    ("TRADE_SUCCESS", {"refund_fee": "5.00", "gmt_refund": "2026-12-03 10:00:00"},
     TradeState.REFUNDED),
])
def test_trade_status_maps_to_our_states(offline: AlipayChannel, keys: AlipaySandboxKeys,
                                         status: str, extra: dict[str, str],
                                         state: TradeState) -> None:
    note = offline.parse_notification({}, body_of(keys, trade_status=status, extra=extra))
    assert note.trade is not None and note.trade.state is state


@pytest.mark.parametrize(("breakage", "reason"), [
    ({"tamper": {"sign": base64.b64encode(b"\0" * 256).decode()}}, "bad_signature"),
    ({"tamper": {"sign": "not base64!"}}, "bad_signature"),
    ({"tamper": {"total_amount": "0.01"}}, "bad_signature"),
    ({"tamper": {"out_trade_no": "D-OTHER"}}, "bad_signature"),
    ({"wrong_key": True}, "bad_signature"),
    ({"sign_type": "RSA", "digest": "SHA-1"}, "wrong_sign_type"),
    ({"digest": "SHA-1"}, "wrong_sign_type"),
    ({"app_id": "9021000000000000"}, "wrong_app_id"),
    ({"seller_id": "2088000000000000"}, "wrong_seller_id"),
    ({"total_amount": "1.005"}, "bad_amount"),
    ({"total_amount": "abc"}, "bad_amount"),
    ({"total_amount": "-12.34"}, "bad_amount"),
    ({"total_amount": "1e3"}, "bad_amount"),
    ({"notify_time": NOW - timedelta(hours=26, seconds=1)}, "stale"),
    ({"trade_status": "TRADE_PENDING"}, "unknown_trade_status"),
    ({"extra": {"trans_currency": "USD"}}, "wrong_currency"),
    ({"extra": {"notify_time": "yesterday"}}, "bad_time"),
    ({"extra": {"notify_id": ""}}, "missing_field"),
    ({"extra": {"charset": "gbk"}}, "wrong_charset"),
])
def test_broken_notifications_are_refused(offline: AlipayChannel, keys: AlipaySandboxKeys,
                                          other_keys: AlipaySandboxKeys, breakage: dict[str, Any],
                                          reason: str) -> None:
    if breakage.pop("wrong_key", False):
        breakage["signing_key"] = other_keys.alipay_private_key
    with pytest.raises(InvalidNotification) as err:
        offline.parse_notification({}, body_of(keys, **breakage))
    assert (err.value.reason, err.value.status) == (reason, 400)


@pytest.mark.parametrize("body", [
    b"\xff\xfe", b"a=1&a=2", b"no-equals-sign", b"",
])
def test_malformed_bodies_are_refused(offline: AlipayChannel, body: bytes) -> None:
    with pytest.raises(InvalidNotification) as err:
        offline.parse_notification({}, body)
    assert err.value.status == 400


def test_notification_without_notify_time_is_refused(offline: AlipayChannel,
                                                     keys: AlipaySandboxKeys) -> None:
    body = body_of(keys, extra={"notify_time": ""})
    with pytest.raises(InvalidNotification) as err:
        offline.parse_notification({}, body)
    assert err.value.reason == "bad_time"

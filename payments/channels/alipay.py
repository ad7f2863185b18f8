"""Alipay (支付宝) with ``alipay-sdk-python`` 3.7 (``alipay.aop.api``): page pay on desktop, wap
pay on mobile, query, close, refund, refund query and the daily trade statement.

Two SDK limits are solved here, once:

* **PKCS#1 app key.** The SDK wraps the app key in ``BEGIN RSA PRIVATE KEY`` markers and loads it
  with ``rsa.PrivateKey.load_pkcs1``. ``AlipaySettings`` accepts PKCS#8 or PKCS#1 (PEM, or the bare
  base64 the Alipay key tool prints) and converts it to PKCS#1 PEM with ``cryptography`` when the
  settings are built, so the SDK only ever sees PKCS#1.
* **Gateway URL with a port.** ``WebUtils.get_http_connection`` always connects to port 80/443
  (and concatenates the int port to a str if there is one), so the SDK cannot reach
  ``http://127.0.0.1:8765/gateway.do``. ``_GatewayClient`` subclasses ``DefaultAlipayClient`` and
  replaces only ``execute``'s transport: it still uses the SDK's own request signing
  (``__prepare_request``) and response-signature check (``__parse_response``), but posts with a
  ``requests.Session`` owned by this client instance, honouring the port and our connect/read
  timeouts. No module of the SDK is patched; ``page_execute`` only builds a URL and needs nothing.

Deployment note: the SDK stamps requests with ``datetime.now()`` (naive local time) and Alipay
expects Beijing time, so the worker processes must run with ``TZ=Asia/Shanghai``.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import requests
import rsa
from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
from alipay.aop.api.constant.CommonConstants import THREAD_LOCAL
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
from alipay.aop.api.request.AlipayDataDataserviceBillDownloadurlQueryRequest import (
    AlipayDataDataserviceBillDownloadurlQueryRequest,
)
from alipay.aop.api.request.AlipayTradeCloseRequest import AlipayTradeCloseRequest
from alipay.aop.api.request.AlipayTradeFastpayRefundQueryRequest import (
    AlipayTradeFastpayRefundQueryRequest,
)
from alipay.aop.api.request.AlipayTradePagePayRequest import AlipayTradePagePayRequest
from alipay.aop.api.request.AlipayTradeQueryRequest import AlipayTradeQueryRequest
from alipay.aop.api.request.AlipayTradeRefundRequest import AlipayTradeRefundRequest
from alipay.aop.api.request.AlipayTradeWapPayRequest import AlipayTradeWapPayRequest
from alipay.aop.api.util.SignatureUtils import verify_with_rsa
from alipay.aop.api.util.WebUtils import url_encode
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from payments.channels.base import (
    ChannelError,
    ChannelUnavailable,
    Checkout,
    InvalidNotification,
    Notification,
    OrderRequest,
    RefundRequest,
    RefundResult,
    RefundState,
    Scene,
    StatementFile,
    Trade,
    TradeState,
)
from portal.kernel.clock import Clock, SystemClock
from portal.kernel.money import MoneyFormatError, fen_to_yuan_str, parse_yuan

BEIJING: Final = ZoneInfo("Asia/Shanghai")
ALIPAY_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"  # Alipay's times are Beijing wall-clock times
# Alipay resends an unacknowledged notification 8 times within 25 hours (4m ... 15h). A signed
# notification older than that can only be a replay, so it is refused; a fresher replay is
# harmless because payments.service de-duplicates on notify_id and applies each state once.
# There is no lower bound: a notify_time ahead of our clock is clock skew, not an attack.
NOTIFY_MAX_AGE: Final = timedelta(hours=26)
OK_CODE: Final = "10000"
TRADE_STATES: Final = {
    "WAIT_BUYER_PAY": TradeState.PENDING,
    "TRADE_SUCCESS": TradeState.SUCCEEDED,
    "TRADE_FINISHED": TradeState.SUCCEEDED,
    "TRADE_CLOSED": TradeState.CLOSED,
}
PRODUCT_CODES: Final = {Scene.DESKTOP: "FAST_INSTANT_TRADE_PAY", Scene.MOBILE: "QUICK_WAP_WAY"}
# Codes that mean "Alipay could not decide now; ask again" rather than a business answer.
RETRYABLE_SUB_CODES: Final = frozenset({"ACQ.SYSTEM_ERROR", "isp.unknow-error",
                                        "aop.ACQ.SYSTEM_ERROR"})


def _pkcs1_private_pem(text: str) -> str:
    """An RSA private key (PKCS#8 or PKCS#1, PEM or bare base64 DER) as PKCS#1 PEM."""
    raw = text.strip()
    try:
        if raw.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(raw.encode(), password=None)
        else:
            key = serialization.load_der_private_key(base64.b64decode(raw), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("app_private_key is not a readable unencrypted RSA private key") from exc
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("app_private_key must be an RSA key")
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,  # = PKCS#1
                             serialization.NoEncryption()).decode()


def _public_pem(text: str) -> str:
    """An RSA public key (PEM or the bare base64 Alipay's console shows) as SPKI PEM."""
    raw = text.strip()
    try:
        if raw.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(raw.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(raw))
    except (ValueError, TypeError) as exc:
        raise ValueError("alipay_public_key is not a readable RSA public key") from exc
    if not isinstance(key, RSAPublicKey):
        raise ValueError("alipay_public_key must be an RSA key")
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class AlipaySettings(BaseModel):
    """Credentials of one Alipay app. The channel is enabled exactly when these exist."""

    model_config = ConfigDict(frozen=True)

    app_id: str = Field(min_length=1)
    seller_id: str = Field(min_length=1)        # the merchant's PID (2088...)
    app_private_key: SecretStr                  # PKCS#8 or PKCS#1; stored as PKCS#1 PEM
    alipay_public_key: str                      # Alipay's key (not the app's), SPKI PEM
    gateway_url: str = "https://openapi.alipay.com/gateway.do"
    notify_url: str | None = None   # used when an order carries none
    return_url: str | None = None   # used when an order carries none
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=15.0, gt=0)

    @field_validator("app_private_key", mode="before")
    @classmethod
    def _to_pkcs1(cls, value: object) -> SecretStr:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str):
            raise ValueError("app_private_key must be text")
        return SecretStr(_pkcs1_private_pem(text))

    @field_validator("alipay_public_key", mode="before")
    @classmethod
    def _to_spki(cls, value: object) -> str:
        if not isinstance(value, str):
            raise ValueError("alipay_public_key must be text")
        return _public_pem(value)


class _GatewayClient(DefaultAlipayClient):  # type: ignore[misc]
    """``DefaultAlipayClient`` whose ``execute`` posts with ``requests`` (see the module doc).

    The name-mangled helpers are the SDK's own signing and response verification; only the
    socket work differs. Transport failures surface as ``requests`` exceptions and bad response
    signatures as the SDK's ``ResponseException``; ``AlipayChannel._call`` maps both.
    """

    def __init__(self, config: AlipayClientConfig, timeouts: tuple[float, float]) -> None:
        super().__init__(config)
        self._url = config.server_url
        self._charset = config.charset
        self._timeouts = timeouts
        self._local = threading.local()  # requests.Session is not thread-safe: one per thread

    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def execute(self, request: Any) -> str:
        THREAD_LOCAL.uuid = str(uuid.uuid4())
        query_string, params = self._DefaultAlipayClient__prepare_request(request)
        response = self.session().post(
            f"{self._url}?{query_string}",
            data=url_encode(params, self._charset).encode(self._charset),
            headers={"Content-Type": f"application/x-www-form-urlencoded;charset={self._charset}"},
            timeout=self._timeouts,
            allow_redirects=False,
        )
        if response.status_code != 200:
            raise ChannelUnavailable(f"gateway answered HTTP {response.status_code}")
        content: str = self._DefaultAlipayClient__parse_response(response.content)
        return content


def _beijing_time(text: str) -> datetime:
    """Alipay's "yyyy-MM-dd HH:mm:ss" Beijing time as aware UTC; ValueError when malformed."""
    return datetime.strptime(text, ALIPAY_TIME_FORMAT).replace(tzinfo=BEIJING).astimezone(UTC)


class AlipayChannel:
    name = "alipay"

    def __init__(self, settings: AlipaySettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        config = AlipayClientConfig()
        config.app_id = settings.app_id
        config.app_private_key = settings.app_private_key.get_secret_value()
        config.alipay_public_key = settings.alipay_public_key
        config.server_url = settings.gateway_url
        config.sign_type = "RSA2"
        config.timeout = settings.read_timeout
        self._timeouts = (settings.connect_timeout, settings.read_timeout)
        self._client = _GatewayClient(config, self._timeouts)
        self._alipay_key = rsa.PublicKey.load_pkcs1_openssl_pem(settings.alipay_public_key.encode())

    # -- checkout ---------------------------------------------------------------------------

    def create(self, order: OrderRequest) -> Checkout:
        if order.currency != "CNY":
            raise ChannelError("unsupported_currency", order.currency)
        request: Any
        if order.scene is Scene.DESKTOP:
            request = AlipayTradePagePayRequest()
        elif order.scene is Scene.MOBILE:
            request = AlipayTradeWapPayRequest()
        else:
            raise ChannelError("unsupported_scene", str(order.scene))
        return_url = order.return_url or self.settings.return_url
        biz: dict[str, Any] = {
            "out_trade_no": order.order_no,
            "total_amount": fen_to_yuan_str(order.amount_fen),
            "subject": order.description[:256],
            "product_code": PRODUCT_CODES[order.scene],
            "time_expire": order.expires_at.astimezone(BEIJING).strftime(ALIPAY_TIME_FORMAT),
        }
        if order.scene is Scene.MOBILE and return_url:
            biz["quit_url"] = return_url
        request.biz_content = biz
        request.notify_url = order.notify_url or self.settings.notify_url
        request.return_url = return_url
        url: str = self._client.page_execute(request, http_method="GET")
        return Checkout(redirect_url=url)

    # -- notifications ----------------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        fields = self._verified_fields(body)
        s = self.settings
        if fields.get("app_id") != s.app_id:
            raise InvalidNotification("wrong_app_id")
        if fields.get("seller_id") != s.seller_id:
            raise InvalidNotification("wrong_seller_id")
        for currency_field in ("currency", "trans_currency"):
            if fields.get(currency_field, "CNY") != "CNY":
                raise InvalidNotification("wrong_currency")
        notify_id = fields.get("notify_id")
        order_no = fields.get("out_trade_no")
        if not notify_id or not order_no:
            raise InvalidNotification("missing_field")
        try:
            notify_time = _beijing_time(fields.get("notify_time", ""))
            paid_at = _beijing_time(fields["gmt_payment"]) if fields.get("gmt_payment") else None
        except ValueError as exc:
            raise InvalidNotification("bad_time") from exc
        if self.clock.now() - notify_time > NOTIFY_MAX_AGE:
            raise InvalidNotification("stale")
        try:
            amount_fen = parse_yuan(fields.get("total_amount", ""))
        except MoneyFormatError as exc:
            raise InvalidNotification("bad_amount") from exc
        status = fields.get("trade_status", "")
        if status not in TRADE_STATES:
            raise InvalidNotification("unknown_trade_status")
        state = TRADE_STATES[status]
        if fields.get("gmt_refund") or fields.get("refund_fee"):
            # A refund notice (partial: TRADE_SUCCESS, full: TRADE_CLOSED), not a payment.
            state = TradeState.REFUNDED
        trade = Trade(order_no=order_no, state=state, amount_fen=amount_fen,
                      channel_trade_no=fields.get("trade_no"), paid_at=paid_at)
        return Notification(event_id=notify_id,
                            event_type=fields.get("notify_type", "trade_status_sync"),
                            trade=trade, raw=fields)

    def _verified_fields(self, body: bytes) -> dict[str, str]:
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidNotification("malformed") from exc
        fields = dict(pairs)
        if len(fields) != len(pairs):
            raise InvalidNotification("malformed")  # a repeated key: which one was signed?
        if fields.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
            raise InvalidNotification("wrong_charset")
        if fields.get("sign_type") != "RSA2":
            raise InvalidNotification("wrong_sign_type")
        sign = fields.get("sign", "")
        message = "&".join(f"{k}={v}" for k, v in sorted(fields.items())
                           if k not in ("sign", "sign_type")).encode("utf-8")
        try:
            # The SDK's verify raises (rsa.VerificationError, binascii.Error) on a bad signature
            # and accepts whichever hash the signature names; RSA2 means SHA-256, so check that.
            verify_with_rsa(self.settings.alipay_public_key, message, sign)
            hash_name = rsa.find_signature_hash(base64.b64decode(sign), self._alipay_key)
        except Exception as exc:  # anything that fails to verify is a bad signature
            raise InvalidNotification("bad_signature") from exc
        if hash_name != "SHA-256":
            raise InvalidNotification("wrong_sign_type")
        return fields

    def ack(self, ok: bool) -> tuple[int, Mapping[str, str], bytes]:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        # Alipay only looks for the 7 characters "success"; anything else is retried.
        return (200, headers, b"success") if ok else (400, headers, b"fail")

    # -- server-to-server -------------------------------------------------------------------

    def _call(self, request: Any, biz: Mapping[str, Any], *,
              accept: frozenset[str] = frozenset()) -> dict[str, Any]:
        """Execute one gateway method; return its verified response object.

        A sub_code in ``accept`` is returned instead of raised (the caller decides)."""
        request.biz_content = dict(biz)
        try:
            # execute() returns the verified "..._response" object's text, so this is a dict.
            response: dict[str, Any] = json.loads(self._client.execute(request))
        except ChannelUnavailable:
            raise
        except requests.RequestException as exc:
            raise ChannelUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from exc
        except Exception as exc:  # the SDK's ResponseException: bad shape or bad signature
            raise ChannelUnavailable(f"unverifiable response: {exc}"[:300]) from exc
        code = str(response.get("code", ""))
        sub_code = str(response.get("sub_code", ""))
        if code == OK_CODE:
            return response
        if sub_code in accept:
            return response
        if code == "20000" or sub_code in RETRYABLE_SUB_CODES or not sub_code:
            raise ChannelUnavailable(f"{code} {sub_code} {response.get('sub_msg', '')}".strip())
        raise ChannelError(sub_code, str(response.get("sub_msg", "")))

    def _parse_amount(self, text: Any) -> int:
        try:
            return parse_yuan(text)
        except MoneyFormatError as exc:
            raise ChannelError("bad_amount", str(text)[:32]) from exc

    def query(self, order_no: str, channel_ref: str | None = None) -> Trade:
        response = self._call(AlipayTradeQueryRequest(), {"out_trade_no": order_no},
                              accept=frozenset({"ACQ.TRADE_NOT_EXIST"}))
        if response.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
            # Page/wap pay trades exist at Alipay only once the buyer opened the pay page.
            return Trade(order_no=order_no, state=TradeState.NOT_FOUND)
        status = str(response.get("trade_status", ""))
        if status not in TRADE_STATES:
            raise ChannelError("unknown_trade_status", status)
        state = TRADE_STATES[status]
        paid = response.get("send_pay_date")
        paid_at = _beijing_time(paid) if paid else None
        if state is TradeState.CLOSED and paid_at is not None:
            state = TradeState.REFUNDED  # TRADE_CLOSED after payment means fully refunded
        return Trade(order_no=order_no, state=state,
                     amount_fen=self._parse_amount(response.get("total_amount")),
                     channel_trade_no=response.get("trade_no"), paid_at=paid_at)

    def close(self, order_no: str, channel_ref: str | None = None) -> None:
        response = self._call(AlipayTradeCloseRequest(), {"out_trade_no": order_no},
                              accept=frozenset({"ACQ.TRADE_NOT_EXIST", "ACQ.TRADE_STATUS_ERROR"}))
        # TRADE_NOT_EXIST: the buyer never opened the pay page; time_expire still bounds it.
        if response.get("sub_code") == "ACQ.TRADE_STATUS_ERROR":
            # Either paid or already closed: ask which.
            state = self.query(order_no).state
            if state in (TradeState.SUCCEEDED, TradeState.REFUNDED):
                raise ChannelError("already_paid")

    def refund(self, request: RefundRequest) -> RefundResult:
        response = self._call(AlipayTradeRefundRequest(), {
            "out_trade_no": request.order_no,
            "out_request_no": request.refund_no,  # reused verbatim on retry: refunds once
            "refund_amount": fen_to_yuan_str(request.amount_fen),
            "refund_reason": request.reason[:256],
        })
        # code 10000 with fund_change=Y: the money moved now. N (or none) is not a failure but
        # not proof either (Alipay: a repeat of a refunded out_request_no, or one still being
        # processed): pending, and query_refund's refund_status decides.
        moved = response.get("fund_change") == "Y"
        return RefundResult(refund_no=request.refund_no,
                            state=RefundState.SUCCEEDED if moved else RefundState.PENDING,
                            channel_refund_no=response.get("trade_no"),
                            amount_fen=request.amount_fen)

    def query_refund(self, request: RefundRequest) -> RefundResult:
        response = self._call(AlipayTradeFastpayRefundQueryRequest(), {
            "out_trade_no": request.order_no,
            "out_request_no": request.refund_no,
        })
        if response.get("refund_status") == "REFUND_SUCCESS":
            return RefundResult(refund_no=request.refund_no, state=RefundState.SUCCEEDED,
                                channel_refund_no=response.get("trade_no"),
                                amount_fen=self._parse_amount(response.get("refund_amount")))
        # An empty answer: Alipay has not accepted this refund; calling refund again with the
        # same refund_no is safe.
        return RefundResult(refund_no=request.refund_no, state=RefundState.PENDING)

    # -- statement --------------------------------------------------------------------------

    def fetch_statement(self, day: date) -> StatementFile | None:
        """The trade bill zip as downloaded (``payments.reconcile.alipay`` reads it)."""
        response = self._call(AlipayDataDataserviceBillDownloadurlQueryRequest(),
                              {"bill_type": "trade", "bill_date": day.isoformat()},
                              accept=frozenset({"isp.bill_not_exist"}))
        if response.get("sub_code") == "isp.bill_not_exist":
            return None
        try:  # the URL is valid for 30 seconds
            download = self._client.session().get(str(response.get("bill_download_url")),
                                                  timeout=self._timeouts)
            download.raise_for_status()
        except requests.RequestException as exc:
            raise ChannelUnavailable(f"bill download: {exc}"[:300]) from exc
        return StatementFile(download.content, ".zip")

"""WeChat Pay API v3 (微信支付 v3) with ``wechatpayv3`` in platform-public-key mode.

Mini-program orders are JSAPI orders (the client gets the ``wx.requestPayment`` parameters, signed
with the merchant key); desktop and mobile browsers get a Native ``code_url`` shown as a QR code.
Notifications are verified with the WeChat Pay public key, checked for freshness (the library does
not), decrypted with the APIv3 key and checked for our app id, merchant and currency.
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import json
import secrets
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import requests
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.utils import aes_decrypt, load_public_key, rsa_verify

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

PRODUCTION_GATEWAY = "https://api.mch.weixin.qq.com"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"
BEIJING = ZoneInfo("Asia/Shanghai")

TRADE_STATES: Mapping[str, TradeState] = {
    "SUCCESS": TradeState.SUCCEEDED,
    "NOTPAY": TradeState.PENDING,
    "USERPAYING": TradeState.PENDING,
    "CLOSED": TradeState.CLOSED,
    "REVOKED": TradeState.CLOSED,
    "PAYERROR": TradeState.FAILED,
    "REFUND": TradeState.REFUNDED,
}
REFUND_STATES: Mapping[str, RefundState] = {
    "SUCCESS": RefundState.SUCCEEDED,
    "PROCESSING": RefundState.PENDING,
    "CLOSED": RefundState.FAILED,
    # The payer's card refused the money: staff finish it in the merchant platform, after which
    # it reads SUCCESS. Not failed: a failed refund frees its amount for another refund, and
    # the customer would be paid twice.
    "ABNORMAL": RefundState.PENDING,
}
# Close answers these when the order was paid (the v3 docs and live gateways use both spellings).
ALREADY_PAID_CODES = frozenset({"ORDERPAID", "ORDER_PAID", "TRADE_STATE_ERROR"})


class WechatPaySettings(BaseModel):
    """Credentials of one WeChat Pay merchant (直连商户) in platform-public-key mode."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mchid: str
    appid: str
    merchant_serial_no: str                  # serial of the merchant API certificate
    private_key_pem: SecretStr | None = None  # merchant API private key, PKCS#8 PEM ...
    private_key_path: Path | None = None      # ... or a file holding it (exactly one of the two)
    apiv3_key: SecretStr                      # 32 bytes
    public_key_pem: str                       # the WeChat Pay public key (微信支付公钥)
    public_key_id: str                        # PUB_KEY_ID_...
    gateway_url: str = PRODUCTION_GATEWAY
    notify_url: str | None = None             # refund results (None: the merchant default)
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    notification_max_age_seconds: int = 300
    sandbox: bool = False                     # set by payments.sandbox.wechat.channel_settings

    @field_validator("apiv3_key")
    @classmethod
    def _apiv3_key_is_32_bytes(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) != 32:
            raise ValueError("the APIv3 key must be exactly 32 bytes")
        return value

    @field_validator("public_key_id")
    @classmethod
    def _public_key_id_prefix(cls, value: str) -> str:
        if not value.startswith(PUBLIC_KEY_ID_PREFIX):
            raise ValueError(f"the WeChat Pay public key id starts with {PUBLIC_KEY_ID_PREFIX}")
        return value

    @model_validator(mode="after")
    def _one_private_key(self) -> WechatPaySettings:
        if (self.private_key_pem is None) == (self.private_key_path is None):
            raise ValueError("give exactly one of private_key_pem and private_key_path")
        return self

    @property
    def uses_sandbox(self) -> bool:
        """True for the local sandbox gateway: production settings must refuse these."""
        host = urlsplit(self.gateway_url).hostname or ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        return self.sandbox or loopback or not self.gateway_url.startswith("https://")

    def private_key(self) -> str:
        if self.private_key_pem is not None:
            return self.private_key_pem.get_secret_value()
        # the validator guarantees the path when there is no PEM
        return cast(Path, self.private_key_path).read_text(encoding="utf-8")


class WechatPayChannel:
    name = "wechat"

    def __init__(self, settings: WechatPaySettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self._clock: Clock = clock or SystemClock()
        # Public-key mode: with public_key/public_key_id the constructor makes no network call
        # (without them it downloads platform certificates at once).
        self._pay = WeChatPay(
            wechatpay_type=WeChatPayType.NATIVE,
            mchid=settings.mchid,
            private_key=settings.private_key(),
            cert_serial_no=settings.merchant_serial_no,
            appid=settings.appid,
            apiv3_key=settings.apiv3_key.get_secret_value(),
            notify_url=settings.notify_url,
            timeout=(settings.connect_timeout, settings.read_timeout),
            public_key=settings.public_key_pem,
            public_key_id=settings.public_key_id,
        )
        # The library hard-codes the gateway in the private ``Core._gate_way`` and builds every
        # URL as ``_gate_way + path``; this is the one place we point it elsewhere (the sandbox).
        self._pay._core._gate_way = settings.gateway_url.rstrip("/")
        self._public_key = load_public_key(settings.public_key_pem)

    # -- orders ---------------------------------------------------------------------------

    def create(self, order: OrderRequest) -> Checkout:
        if order.currency != "CNY":
            raise ChannelError("unsupported_currency", order.currency)
        common: dict[str, Any] = {
            "description": order.description[:127],
            "out_trade_no": order.order_no,
            "amount": {"total": order.amount_fen, "currency": "CNY"},
            "time_expire": order.expires_at.astimezone(BEIJING).isoformat(timespec="seconds"),
            "notify_url": order.notify_url,
        }
        if order.scene is Scene.MINIPROGRAM:
            if not order.payer_openid:
                raise ChannelError("openid_required", "a JSAPI order needs the payer's openid")
            _, data = self._call(
                self._pay.pay,
                payer={"openid": order.payer_openid},
                pay_type=WeChatPayType.MINIPROG,
                **common,
            )
            return Checkout(pay_params=self._pay_params(_field(data, "prepay_id")))
        _, data = self._call(self._pay.pay, pay_type=WeChatPayType.NATIVE, **common)
        return Checkout(code_url=_field(data, "code_url"))

    def _pay_params(self, prepay_id: str) -> dict[str, str]:
        """The ``wx.requestPayment`` parameters; paySign covers the four lines, not signType."""
        appid = self.settings.appid
        timestamp = str(int(self._clock.now().timestamp()))
        nonce = secrets.token_hex(16)
        package = f"prepay_id={prepay_id}"
        return {
            "appId": appid,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": self._pay.sign([appid, timestamp, nonce, package]),
        }

    def query(self, order_no: str, channel_ref: str | None = None) -> Trade:
        try:
            _, data = self._call(self._pay.query, out_trade_no=order_no)
        except ChannelError as exc:
            if exc.code == "ORDER_NOT_EXIST":
                return Trade(order_no=order_no, state=TradeState.NOT_FOUND)
            raise
        if data.get("mchid") != self.settings.mchid or data.get("appid") != self.settings.appid:
            raise ChannelError("merchant_mismatch", "the answer is about another merchant")
        trade = _trade(data)
        if trade is None or trade.order_no != order_no:
            raise ChannelError("bad_response", "the answer is about another order")
        return trade

    def close(self, order_no: str, channel_ref: str | None = None) -> None:
        try:
            self._call(self._pay.close, out_trade_no=order_no)
        except ChannelError as exc:  # ChannelUnavailable's code is channel_unavailable
            if exc.code in ALREADY_PAID_CODES:
                raise ChannelError("already_paid", exc.message) from exc
            if exc.code not in {"ORDER_NOT_EXIST", "ORDER_CLOSED"}:
                raise

    # -- refunds --------------------------------------------------------------------------

    def refund(self, request: RefundRequest) -> RefundResult:
        _, data = self._call(
            self._pay.refund,
            out_refund_no=request.refund_no,
            out_trade_no=request.order_no,
            amount={
                "refund": request.amount_fen,
                "total": request.order_amount_fen,
                "currency": "CNY",
            },
            reason=request.reason[:80] or None,
        )
        return _refund_result(data, request.refund_no)

    def query_refund(self, request: RefundRequest) -> RefundResult:
        _, data = self._call(self._pay.query_refund, out_refund_no=request.refund_no)
        return _refund_result(data, request.refund_no)

    # -- notifications --------------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        lower = {key.lower(): value for key, value in headers.items()}
        signature = lower.get("wechatpay-signature", "")
        timestamp = lower.get("wechatpay-timestamp", "")
        nonce = lower.get("wechatpay-nonce", "")
        serial = lower.get("wechatpay-serial", "")
        if not (signature and timestamp and nonce and serial):
            raise InvalidNotification("missing Wechatpay-* signature headers", 401)
        # wechatpayv3 raises on any other signature type: refuse it here, as a 401.
        if lower.get("wechatpay-signature-type", SIGNATURE_TYPE) != SIGNATURE_TYPE:
            raise InvalidNotification("unsupported Wechatpay-Signature-Type", 401)
        # With any serial but our public key id the library would download platform
        # certificates from inside this handler; we only trust the configured public key.
        if serial != self.settings.public_key_id:
            raise InvalidNotification(f"unknown Wechatpay-Serial {serial[:64]!r}", 401)
        try:
            sent_at = int(timestamp)
        except ValueError:
            raise InvalidNotification("Wechatpay-Timestamp is not a number", 401) from None
        skew = abs(self._clock.now().timestamp() - sent_at)
        if skew > self.settings.notification_max_age_seconds:
            raise InvalidNotification("Wechatpay-Timestamp is too old or in the future", 401)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidNotification("body is not UTF-8", 400) from None
        # The library's verification: SHA256-with-RSA over "timestamp\nnonce\nbody\n".
        if not rsa_verify(timestamp, nonce, text, signature, self._public_key):
            raise InvalidNotification("signature does not verify", 401)
        envelope = _json_object(text, "body")
        resource = envelope.get("resource")
        if envelope.get("resource_type") != "encrypt-resource" or not isinstance(resource, dict):
            raise InvalidNotification("no encrypted resource", 400)
        if resource.get("algorithm") != "AEAD_AES_256_GCM":
            raise InvalidNotification("unsupported resource algorithm", 400)
        try:
            plain = aes_decrypt(
                nonce=str(resource["nonce"]),
                ciphertext=str(resource["ciphertext"]),
                associated_data=str(resource.get("associated_data") or ""),
                apiv3_key=self.settings.apiv3_key.get_secret_value(),
            )
        except (KeyError, ValueError) as exc:  # missing fields, bad base64 or nonce length
            raise InvalidNotification(f"resource cannot be decrypted: {exc}", 400) from None
        if plain is None:
            # Signed by WeChat Pay yet undecryptable: our APIv3 key is wrong. 500 makes WeChat
            # retry, so nothing is lost once the key is fixed.
            raise InvalidNotification("resource does not decrypt with our APIv3 key", 500)
        data = _json_object(plain, "resource")
        event_type = str(envelope.get("event_type", ""))
        event_id = envelope.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise InvalidNotification("notification without id", 400)
        if data.get("mchid") != self.settings.mchid:
            raise InvalidNotification("notification for another merchant (mchid)", 400)
        trade = None
        if event_type.startswith("TRANSACTION."):
            if data.get("appid") != self.settings.appid:
                raise InvalidNotification("notification for another app (appid)", 400)
            try:
                trade = _trade(data)
            except ChannelError as exc:
                raise InvalidNotification(exc.message or exc.code, 400) from None
            if trade is None:
                raise InvalidNotification("notification without a trade", 400)
            if trade.currency != "CNY":
                raise InvalidNotification(f"unexpected currency {trade.currency!r}", 400)
        return Notification(
            event_id=event_id,
            event_type=event_type,
            trade=trade,
            raw={**envelope, "resource": data},
        )

    def ack(
        self, ok: bool, status: int = 500, message: str = "FAIL"
    ) -> tuple[int, Mapping[str, str], bytes]:
        """204 accepts; any other status makes WeChat retry (a FAIL body with 200 would not)."""
        if ok:
            return 204, {}, b""
        body = json.dumps({"code": "FAIL", "message": message}, ensure_ascii=False)
        return status, {"Content-Type": "application/json; charset=utf-8"}, body.encode()

    # -- reconciliation -------------------------------------------------------------------

    def fetch_statement(self, day: date) -> StatementFile | None:
        """The ALL trade bill as downloaded (gzip), after checking the SHA1 WeChat gives for
        the unzipped bill (the download itself is not signed)."""
        try:
            _, meta = self._call(self._pay.trade_bill, bill_date=day.isoformat(), tar_type="GZIP")
        except ChannelError as exc:
            if exc.code == "NO_STATEMENT_EXIST":
                return None  # no trade that day
            raise
        url = _field(meta, "download_url")
        gateway = self._pay._core._gate_way
        if not url.startswith(gateway + "/"):
            # download_bill would send our signed Authorization to whatever host this names
            raise ChannelError("bad_download_url", url[:200])
        _, content = self._call(self._pay.download_bill, url=url, expect_json=False)
        try:
            raw = gzip.decompress(content)
        except (OSError, EOFError, zlib.error):
            raise ChannelError("bad_statement", "the bill is not gzip") from None
        if meta.get("hash_type") != "SHA1" or (
            hashlib.sha1(raw).hexdigest() != str(meta.get("hash_value", "")).lower()  # noqa: S324
        ):
            raise ChannelError("bad_statement", "SHA1 of the bill does not match")
        return StatementFile(content, ".csv.gz")

    # -- plumbing -------------------------------------------------------------------------

    def _call(
        self, method: Callable[..., tuple[int, Any]], expect_json: bool = True, **kwargs: Any
    ) -> tuple[int, Any]:
        """Call the library; timeouts, 5xx and unverifiable answers become ChannelUnavailable,
        4xx answers ChannelError(<WeChat's code>)."""
        try:
            status, payload = method(**kwargs)
        except requests.RequestException as exc:
            raise ChannelUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from exc
        except Exception as exc:
            # wechatpayv3 raises a bare Exception when a 2xx answer's signature fails.
            if "verify the signature" in str(exc):
                raise ChannelUnavailable("the answer's signature does not verify") from exc
            raise
        if status >= 500 or status == 429:
            raise ChannelUnavailable(f"HTTP {status}")
        if status >= 400:
            error = _maybe_json(payload)
            raise ChannelError(
                str(error.get("code") or f"HTTP_{status}"), str(error.get("message") or "")
            )
        if status == 204 or not expect_json:
            return status, payload
        if not isinstance(payload, str):
            raise ChannelUnavailable(f"HTTP {status} without a JSON body")
        data = _maybe_json(payload)
        if not data:
            raise ChannelUnavailable(f"HTTP {status} with an unreadable body")
        return status, data


def _maybe_json(payload: Any) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidNotification(f"{what} is not JSON", 400) from None
    if not isinstance(data, dict):
        raise InvalidNotification(f"{what} is not a JSON object", 400)
    return data


def _field(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ChannelUnavailable(f"answer without {key}")
    return value


def _fen(amount: Any, key: str) -> int:
    value = amount.get(key) if isinstance(amount, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ChannelError("bad_amount", f"amount is not a whole number of fen: {value!r}")
    return value


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ChannelError("bad_time", f"not a time: {value!r}") from None
    if parsed.tzinfo is None:
        raise ChannelError("bad_time", f"time without an offset: {value!r}")
    return parsed.astimezone(UTC)


def _trade(data: Mapping[str, Any]) -> Trade | None:
    """A Trade from a query answer or a decrypted TRANSACTION.* resource."""
    order_no = data.get("out_trade_no")
    if not isinstance(order_no, str) or not order_no:
        return None
    raw_state = data.get("trade_state")
    state = TRADE_STATES.get(str(raw_state))
    if state is None:
        raise ChannelError("unknown_trade_state", f"unknown trade_state {raw_state!r}")
    amount: Any = data.get("amount")
    return Trade(
        order_no=order_no,
        state=state,
        amount_fen=_fen(amount, "total"),
        currency=str(amount.get("currency")),  # _fen made sure amount is a dict
        channel_trade_no=data.get("transaction_id") or None,
        paid_at=_time(data.get("success_time")),
    )


def _refund_result(data: Mapping[str, Any], refund_no: str) -> RefundResult:
    if data.get("out_refund_no") != refund_no:
        raise ChannelError("bad_response", "the answer is about another refund")
    state = REFUND_STATES.get(str(data.get("status")))
    if state is None:
        raise ChannelError("unknown_refund_state", f"unknown status {data.get('status')!r}")
    return RefundResult(
        refund_no=refund_no,
        state=state,
        channel_refund_no=data.get("refund_id") or None,
        amount_fen=_fen(data.get("amount"), "refund"),
    )

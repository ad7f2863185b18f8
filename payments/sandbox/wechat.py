"""A local WeChat Pay v3 gateway with generated test keys, so the real channel code runs in the
demo and in tests. It is a WSGI app (werkzeug), state in memory, never for production: settings
made by ``channel_settings`` carry ``sandbox=True``.

It checks our ``Authorization`` signature with the merchant public key, signs every answer with
the "WeChat Pay public key" pair (``PUB_KEY_ID_...``), and on a confirmed payment POSTs an
AES-256-GCM encrypted, signed ``TRANSACTION.SUCCESS`` notification to the order's notify_url.
Refunds are accepted as PROCESSING and read SUCCESS from the first query on.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import json
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from payments.channels.wechat import SIGNATURE_TYPE, WechatPaySettings
from portal.kernel.clock import Clock, SystemClock
from portal.kernel.money import fen_to_yuan_str

BEIJING = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class WechatSandboxKeys:
    """Everything both sides need; plain strings, so ``asdict`` / ``json`` round-trip it."""

    mchid: str
    appid: str
    merchant_serial_no: str
    merchant_private_key_pem: str  # PKCS#8
    merchant_public_key_pem: str
    public_key_id: str             # PUB_KEY_ID_...
    platform_private_key_pem: str  # signs answers and notifications (WeChat's side)
    platform_public_key_pem: str
    apiv3_key: str                 # 32 characters

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WechatSandboxKeys:
        return cls(**json.loads(text))


def _key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public


def generate_keys() -> WechatSandboxKeys:
    merchant_private, merchant_public = _key_pair()
    platform_private, platform_public = _key_pair()
    return WechatSandboxKeys(
        mchid="1900" + "".join(secrets.choice("0123456789") for _ in range(6)),
        appid="wx" + secrets.token_hex(8),
        merchant_serial_no=secrets.token_hex(20).upper(),
        merchant_private_key_pem=merchant_private,
        merchant_public_key_pem=merchant_public,
        public_key_id="PUB_KEY_ID_" + secrets.token_hex(16).upper(),
        platform_private_key_pem=platform_private,
        platform_public_key_pem=platform_public,
        apiv3_key=secrets.token_hex(16),
    )


def channel_settings(
    keys: WechatSandboxKeys, gateway_url: str, notify_url: str | None = None
) -> WechatPaySettings:
    return WechatPaySettings(
        mchid=keys.mchid,
        appid=keys.appid,
        merchant_serial_no=keys.merchant_serial_no,
        private_key_pem=keys.merchant_private_key_pem,
        apiv3_key=keys.apiv3_key,
        public_key_pem=keys.platform_public_key_pem,
        public_key_id=keys.public_key_id,
        gateway_url=gateway_url,
        notify_url=notify_url,
        sandbox=True,
    )


# -- signing helpers (WeChat's side) ------------------------------------------------------------


def _sign(private_key_pem: str, message: str) -> str:
    key = cast(rsa.RSAPrivateKey,
               serialization.load_pem_private_key(private_key_pem.encode(), password=None))
    signature = key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def _verify(public_key_pem: str, message: str, signature: str) -> bool:
    key = cast(rsa.RSAPublicKey, serialization.load_pem_public_key(public_key_pem.encode()))
    try:
        key.verify(base64.b64decode(signature), message.encode(), padding.PKCS1v15(),
                   hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def _signed_headers(
    private_key_pem: str, serial: str, body: str, timestamp: int | None = None
) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = secrets.token_hex(16)
    return {
        "Wechatpay-Timestamp": stamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": _sign(private_key_pem, f"{stamp}\n{nonce}\n{body}\n"),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": SIGNATURE_TYPE,
    }


def _encrypt(apiv3_key: str, plaintext: str, associated_data: str) -> dict[str, str]:
    nonce = secrets.token_hex(6)  # 12 characters = the 12-byte nonce WeChat uses
    ciphertext = AESGCM(apiv3_key.encode()).encrypt(
        nonce.encode(), plaintext.encode(), associated_data.encode()
    )
    return {
        "original_type": "transaction",
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(ciphertext).decode(),
        "associated_data": associated_data,
        "nonce": nonce,
    }


def _beijing(at: datetime) -> str:
    return at.astimezone(BEIJING).isoformat(timespec="seconds")


def notification_for(
    keys: WechatSandboxKeys,
    resource: Mapping[str, Any],
    *,
    event_type: str = "TRANSACTION.SUCCESS",
    event_id: str | None = None,
    timestamp: int | None = None,
    signing_key_pem: str | None = None,
    serial: str | None = None,
    apiv3_key: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """A notification as WeChat Pay sends it: encrypted resource, signed envelope."""
    stamp = int(time.time()) if timestamp is None else timestamp
    envelope = {
        "id": secrets.token_hex(18) if event_id is None else event_id,
        "create_time": _beijing(datetime.fromtimestamp(stamp, UTC)),
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "支付成功",
        "resource": _encrypt(
            apiv3_key or keys.apiv3_key,
            json.dumps(resource, ensure_ascii=False, separators=(",", ":")),
            "transaction",
        ),
    }
    body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
    headers = _signed_headers(
        signing_key_pem or keys.platform_private_key_pem,
        serial or keys.public_key_id,
        body,
        stamp,
    )
    headers["Content-Type"] = "application/json"
    return headers, body.encode()


def signed_notification(
    keys: WechatSandboxKeys,
    *,
    out_trade_no: str,
    amount_fen: int,
    trade_state: str = "SUCCESS",
    timestamp: int | None = None,
    appid: str | None = None,
    mchid: str | None = None,
    currency: str = "CNY",
    transaction_id: str | None = None,
    event_id: str | None = None,
    signing_key_pem: str | None = None,
    serial: str | None = None,
    apiv3_key: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """A valid payment notification, or a deliberately broken one (wrong key, appid, ...)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    resource = _transaction(
        appid=appid or keys.appid,
        mchid=mchid or keys.mchid,
        out_trade_no=out_trade_no,
        amount_fen=amount_fen,
        currency=currency,
        trade_state=trade_state,
        trade_type="NATIVE",
        transaction_id=transaction_id or _transaction_id(),
        success_time=datetime.fromtimestamp(stamp, UTC) if trade_state == "SUCCESS" else None,
        openid=None,
    )
    return notification_for(
        keys,
        resource,
        event_id=event_id,
        timestamp=stamp,
        signing_key_pem=signing_key_pem,
        serial=serial,
        apiv3_key=apiv3_key,
    )


def _transaction_id() -> str:
    return "4200" + "".join(secrets.choice("0123456789") for _ in range(24))


def _transaction(
    *,
    appid: str,
    mchid: str,
    out_trade_no: str,
    amount_fen: int,
    currency: str,
    trade_state: str,
    trade_type: str,
    transaction_id: str | None,
    success_time: datetime | None,
    openid: str | None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "appid": appid,
        "mchid": mchid,
        "out_trade_no": out_trade_no,
        "trade_type": trade_type,
        "trade_state": trade_state,
        "trade_state_desc": trade_state,
        "amount": {
            "total": amount_fen,
            "payer_total": amount_fen,
            "currency": currency,
            "payer_currency": currency,
        },
    }
    if trade_state in {"SUCCESS", "REFUND"}:
        data["transaction_id"] = transaction_id
        data["bank_type"] = "OTHERS"
        data["payer"] = {"openid": openid or "o-sandbox-payer"}
        if success_time is not None:
            data["success_time"] = _beijing(success_time)
    return data


# -- the gateway --------------------------------------------------------------------------------


@dataclass
class SandboxOrder:
    out_trade_no: str
    trade_type: str  # JSAPI | NATIVE
    amount_fen: int
    description: str
    notify_url: str
    prepay_id: str
    openid: str | None = None
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: datetime | None = None
    notifications: list[int] = field(default_factory=list)  # statuses our endpoint answered


@dataclass
class SandboxRefund:
    out_refund_no: str
    refund_id: str
    out_trade_no: str
    amount_fen: int
    created_at: datetime
    status: str = "PROCESSING"


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_AUTH_RE = re.compile(r'(\w+)="([^"]*)"')


class WechatSandbox:
    """The WSGI gateway. ``orders`` and ``refunds`` are open for tests to inspect."""

    def __init__(self, keys: WechatSandboxKeys, public_url: str, clock: Clock | None = None):
        self.keys = keys
        self.public_url = public_url.rstrip("/")
        self.clock: Clock = clock or SystemClock()
        self.orders: dict[str, SandboxOrder] = {}
        self.refunds: dict[str, SandboxRefund] = {}
        self.refund_calls = 0
        self._bills: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._url_map = Map([
            Rule("/v3/pay/transactions/jsapi", methods=["POST"], endpoint="create_jsapi"),
            Rule("/v3/pay/transactions/native", methods=["POST"], endpoint="create_native"),
            Rule("/v3/pay/transactions/out-trade-no/<no>", methods=["GET"], endpoint="query"),
            Rule("/v3/pay/transactions/out-trade-no/<no>/close", methods=["POST"],
                 endpoint="close"),
            Rule("/v3/refund/domestic/refunds", methods=["POST"], endpoint="refund"),
            Rule("/v3/refund/domestic/refunds/<no>", methods=["GET"], endpoint="query_refund"),
            Rule("/v3/bill/tradebill", methods=["GET"], endpoint="tradebill"),
            Rule("/v3/billdownload/file", methods=["GET"], endpoint="download"),
            Rule("/pay/<token>", methods=["GET", "POST"], endpoint="page"),
            Rule("/sandbox/pay/<no>", methods=["POST"], endpoint="control_pay"),
        ])

    # -- WSGI -----------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = self._url_map.bind_to_environ(environ).match()
            if endpoint in {"page", "control_pay"}:
                response = getattr(self, f"_{endpoint}")(request, **args)
            else:
                self._check_authorization(request)
                with self._lock:
                    response = getattr(self, f"_{endpoint}")(request, **args)
        except _ApiError as exc:
            response = self._json(exc.status, {"code": exc.code, "message": exc.message})
        except HTTPException as exc:
            response = self._json(exc.code or 500, {"code": "NOT_FOUND", "message": str(exc)})
        result: Iterable[bytes] = response(environ, start_response)
        return result

    def _json(self, status: int, data: Mapping[str, Any] | None) -> Response:
        body = "" if data is None else json.dumps(data, ensure_ascii=False)
        headers = _signed_headers(self.keys.platform_private_key_pem, self.keys.public_key_id,
                                  body)
        headers["Request-ID"] = secrets.token_hex(8)
        if data is None:
            return Response(status=status, headers=headers)
        return Response(body, status=status, headers=headers,
                        content_type="application/json; charset=utf-8")

    def _check_authorization(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, params = header.partition(" ")
        fields = dict(_AUTH_RE.findall(params))
        path = request.path + (f"?{request.query_string.decode()}" if request.query_string else "")
        message = "\n".join([
            request.method, path, fields.get("timestamp", ""), fields.get("nonce_str", ""),
            request.get_data(as_text=True),
        ]) + "\n"
        if (
            scheme != SIGNATURE_TYPE
            or fields.get("mchid") != self.keys.mchid
            or fields.get("serial_no") != self.keys.merchant_serial_no
            or not _verify(self.keys.merchant_public_key_pem, message, fields.get("signature", ""))
        ):
            raise _ApiError(401, "SIGN_ERROR", "签名错误")

    def _body(self, request: Request) -> dict[str, Any]:
        try:
            data = json.loads(request.get_data(as_text=True) or "{}")
        except ValueError:
            raise _ApiError(400, "PARAM_ERROR", "body is not JSON") from None
        if not isinstance(data, dict):
            raise _ApiError(400, "PARAM_ERROR", "body is not a JSON object")
        return data

    def _order(self, no: str) -> SandboxOrder:
        order = self.orders.get(no)
        if order is None:
            raise _ApiError(404, "ORDER_NOT_EXIST", "订单不存在")
        return order

    # -- API ------------------------------------------------------------------------------

    def _create(self, request: Request, trade_type: str) -> Response:
        data = self._body(request)
        if data.get("appid") != self.keys.appid or data.get("mchid") != self.keys.mchid:
            raise _ApiError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        amount = data.get("amount") or {}
        total = amount.get("total")
        no = str(data.get("out_trade_no", ""))
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            raise _ApiError(400, "PARAM_ERROR", "amount.total must be a positive integer")
        if amount.get("currency", "CNY") != "CNY":
            raise _ApiError(400, "PARAM_ERROR", "currency must be CNY")
        if not re.fullmatch(r"[A-Za-z0-9_\-|*]{6,32}", no):
            raise _ApiError(400, "PARAM_ERROR", "out_trade_no must be 6-32 characters")
        if not data.get("notify_url") or not data.get("description"):
            raise _ApiError(400, "PARAM_ERROR", "notify_url and description are required")
        openid = (data.get("payer") or {}).get("openid")
        if trade_type == "JSAPI" and not openid:
            raise _ApiError(400, "PARAM_ERROR", "payer.openid is required")
        order = self.orders.get(no)
        if order is not None:
            if order.trade_state in {"SUCCESS", "REFUND"}:
                raise _ApiError(400, "ORDERPAID", "该订单已支付")
            if order.amount_fen != total or order.trade_type != trade_type:
                raise _ApiError(400, "INVALID_REQUEST", "订单号重复")
        else:
            order = SandboxOrder(
                out_trade_no=no, trade_type=trade_type, amount_fen=total,
                description=str(data["description"]), notify_url=str(data["notify_url"]),
                prepay_id="wx" + secrets.token_hex(16), openid=openid,
            )
            self.orders[no] = order
        if trade_type == "JSAPI":
            return self._json(200, {"prepay_id": order.prepay_id})
        return self._json(200, {"code_url": self.pay_page_url(order)})

    def _create_jsapi(self, request: Request) -> Response:
        return self._create(request, "JSAPI")

    def _create_native(self, request: Request) -> Response:
        return self._create(request, "NATIVE")

    def _transaction_of(self, order: SandboxOrder) -> dict[str, Any]:
        return _transaction(
            appid=self.keys.appid, mchid=self.keys.mchid, out_trade_no=order.out_trade_no,
            amount_fen=order.amount_fen, currency="CNY", trade_state=order.trade_state,
            trade_type=order.trade_type, transaction_id=order.transaction_id,
            success_time=order.success_time, openid=order.openid,
        )

    def _query(self, request: Request, no: str) -> Response:
        if request.args.get("mchid") != self.keys.mchid:
            raise _ApiError(400, "PARAM_ERROR", "mchid does not match")
        return self._json(200, self._transaction_of(self._order(no)))

    def _close(self, request: Request, no: str) -> Response:
        if self._body(request).get("mchid") != self.keys.mchid:
            raise _ApiError(400, "PARAM_ERROR", "mchid does not match")
        order = self._order(no)
        if order.trade_state in {"SUCCESS", "REFUND"}:
            raise _ApiError(400, "ORDERPAID", "该订单已支付")
        order.trade_state = "CLOSED"
        return self._json(204, None)

    def _refund(self, request: Request) -> Response:
        self.refund_calls += 1
        data = self._body(request)
        no = str(data.get("out_refund_no", ""))
        amount = data.get("amount") or {}
        refund = self.refunds.get(no)
        if refund is None:
            order = self._order(str(data.get("out_trade_no", "")))
            if order.trade_state not in {"SUCCESS", "REFUND"}:
                raise _ApiError(400, "INVALID_REQUEST", "订单未支付")
            if amount.get("total") != order.amount_fen:
                raise _ApiError(400, "PARAM_ERROR", "amount.total is not the order amount")
            refunded = sum(r.amount_fen for r in self.refunds.values()
                           if r.out_trade_no == order.out_trade_no)
            wanted = amount.get("refund")
            if not isinstance(wanted, int) or wanted <= 0 or refunded + wanted > order.amount_fen:
                raise _ApiError(400, "INVALID_REQUEST", "退款金额超过订单可退金额")
            refund = SandboxRefund(
                out_refund_no=no, refund_id="50" + secrets.token_hex(14),
                out_trade_no=order.out_trade_no, amount_fen=wanted, created_at=self.clock.now(),
            )
            self.refunds[no] = refund
            order.trade_state = "REFUND"
        return self._json(200, self._refund_of(refund))

    def _refund_of(self, refund: SandboxRefund) -> dict[str, Any]:
        order = self.orders[refund.out_trade_no]
        return {
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": order.transaction_id,
            "out_trade_no": order.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": _beijing(refund.created_at),
            "status": refund.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": order.amount_fen, "refund": refund.amount_fen,
                "payer_total": order.amount_fen, "payer_refund": refund.amount_fen,
                "settlement_total": order.amount_fen, "settlement_refund": refund.amount_fen,
                "discount_refund": 0, "currency": "CNY",
            },
        }

    def _query_refund(self, request: Request, no: str) -> Response:
        refund = self.refunds.get(no)
        if refund is None:
            raise _ApiError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        if refund.status == "PROCESSING":  # settled by the time anyone asks (a test may set
            refund.status = "SUCCESS"      # another status, e.g. ABNORMAL)
        return self._json(200, self._refund_of(refund))

    def _tradebill(self, request: Request) -> Response:
        try:
            day = date.fromisoformat(request.args.get("bill_date", ""))
        except ValueError:
            raise _ApiError(400, "PARAM_ERROR", "bill_date must be yyyy-MM-dd") from None
        text = self.trade_bill(day)
        if text is None:
            raise _ApiError(400, "NO_STATEMENT_EXIST", "账单不存在")
        raw = text.encode("utf-8")
        token = secrets.token_urlsafe(16)
        gzipped = request.args.get("tar_type") == "GZIP"
        self._bills[token] = gzip.compress(raw, mtime=0) if gzipped else raw
        return self._json(200, {
            "hash_type": "SHA1",
            "hash_value": hashlib.sha1(raw).hexdigest(),  # noqa: S324 (WeChat's choice)
            "download_url": f"{request.root_url}v3/billdownload/file?token={token}",
        })

    def _download(self, request: Request) -> Response:
        content = self._bills.get(request.args.get("token", ""))
        if content is None:
            raise _ApiError(400, "INVALID_REQUEST", "下载链接已失效")
        return Response(content, content_type="application/octet-stream")  # not signed

    def trade_bill(self, day: date) -> str | None:
        """The ALL trade bill (交易账单) of one Beijing day as WeChat formats it, or None."""
        columns = ["交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号",
                   "商户订单号", "用户标识", "交易类型", "交易状态", "付款银行", "货币种类",
                   "应结订单金额", "代金券金额", "微信退款单号", "商户退款单号", "退款金额",
                   "充值券退款金额", "退款类型", "退款状态", "商品名称", "商户数据包", "手续费",
                   "费率", "订单金额", "申请退款金额", "费率备注"]
        lines: list[dict[str, str]] = []
        paid = refunded = fees = 0
        for order in self.orders.values():
            if order.success_time is None or order.success_time.astimezone(BEIJING).date() != day:
                continue
            fee = (order.amount_fen * 6 + 500) // 1000  # 0.6%, half up
            paid += order.amount_fen
            fees += fee
            lines.append(self._bill_line(order, order.success_time, "SUCCESS", {
                "应结订单金额": fen_to_yuan_str(order.amount_fen), "手续费": fen_to_yuan_str(fee),
                "订单金额": fen_to_yuan_str(order.amount_fen),
            }))
        for refund in self.refunds.values():
            if refund.created_at.astimezone(BEIJING).date() != day:
                continue
            order = self.orders[refund.out_trade_no]
            fee = -((refund.amount_fen * 6 + 500) // 1000)
            refunded += refund.amount_fen
            fees += fee
            lines.append(self._bill_line(order, refund.created_at, "REFUND", {
                "应结订单金额": "0.00", "手续费": fen_to_yuan_str(fee),
                "订单金额": fen_to_yuan_str(order.amount_fen),
                "微信退款单号": refund.refund_id, "商户退款单号": refund.out_refund_no,
                "退款金额": fen_to_yuan_str(refund.amount_fen), "退款类型": "ORIGINAL",
                "退款状态": refund.status, "申请退款金额": fen_to_yuan_str(refund.amount_fen),
            }))
        if not lines:
            return None
        out = [",".join(columns)]
        out += [",".join("`" + line.get(name, "") for name in columns) for line in lines]
        out.append("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,"
                   "申请退款总金额")
        summary = [str(len(lines)), fen_to_yuan_str(paid), fen_to_yuan_str(refunded), "0.00",
                   fen_to_yuan_str(fees), fen_to_yuan_str(paid), fen_to_yuan_str(refunded)]
        out.append(",".join("`" + value for value in summary))
        return "\r\n".join(out) + "\r\n"

    def _bill_line(self, order: SandboxOrder, at: datetime, state: str,
                   values: Mapping[str, str]) -> dict[str, str]:
        return {
            "交易时间": at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
            "公众账号ID": self.keys.appid, "商户号": self.keys.mchid, "特约商户号": "0",
            "微信订单号": order.transaction_id or "", "商户订单号": order.out_trade_no,
            "用户标识": order.openid or "o-sandbox-payer", "交易类型": order.trade_type,
            "交易状态": state, "付款银行": "OTHERS", "货币种类": "CNY", "代金券金额": "0.00",
            "商品名称": order.description.replace(",", " "), "费率": "0.60%",
            **values,
        }

    # -- paying -----------------------------------------------------------------------------

    def pay_page_url(self, order: SandboxOrder) -> str:
        return f"{self.public_url}/pay/{order.prepay_id}"

    def pay(self, out_trade_no: str, outcome: str = "confirm") -> SandboxOrder:
        """What the payer does: ``confirm`` (SUCCESS + notification), ``fail`` (PAYERROR) or
        ``abandon`` (stays NOTPAY). The notification is sent outside the lock."""
        with self._lock:
            order = self._order(out_trade_no)
            if order.trade_state not in {"NOTPAY", "USERPAYING", "PAYERROR"}:
                return order
            if outcome == "fail":
                order.trade_state = "PAYERROR"
                return order
            if outcome != "confirm":
                return order
            order.trade_state = "SUCCESS"
            order.transaction_id = _transaction_id()
            order.success_time = self.clock.now()
            resource = self._transaction_of(order)
        self.notify(order, resource)
        return order

    def notify(self, order: SandboxOrder, resource: Mapping[str, Any] | None = None) -> int:
        """POST the signed, encrypted TRANSACTION.SUCCESS notification; return the status (0 when
        the endpoint could not be reached). WeChat would retry; tests may call this again."""
        headers, body = notification_for(
            self.keys, resource or self._transaction_of(order),
            timestamp=int(self.clock.now().timestamp()),
        )
        try:
            status = requests.post(order.notify_url, data=body, headers=headers,
                                   timeout=5).status_code
        except requests.RequestException:
            status = 0
        order.notifications.append(status)
        return status

    def _control_pay(self, request: Request, no: str) -> Response:
        order = self.pay(no, request.args.get("outcome", "confirm"))
        return self._json(200, {"trade_state": order.trade_state,
                                "notifications": order.notifications})

    def _page(self, request: Request, token: str) -> Response:
        order = next((o for o in self.orders.values() if o.prepay_id == token), None)
        if order is None:
            raise NotFound()
        message = ""
        if request.method == "POST":
            outcome = request.form.get("outcome", "")
            order = self.pay(order.out_trade_no, outcome)
            message = {"confirm": "Paid. 支付成功", "fail": "Payment failed. 支付失败",
                       "abandon": "Abandoned. 已放弃"}.get(outcome, "")
        buttons = "".join(
            f'<button type="submit" name="outcome" value="{value}">{label}</button> '
            for value, label in (("confirm", "Confirm payment 确认支付"), ("fail", "Fail 支付失败"),
                                 ("abandon", "Abandon 放弃"))
        )
        page = f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>WeChat Pay sandbox 微信支付沙箱</title></head><body>
<h1>WeChat Pay sandbox 微信支付沙箱</h1>
<p>{html.escape(order.description)}</p>
<p>Order 订单 <code>{html.escape(order.out_trade_no)}</code>:
 ¥<strong>{fen_to_yuan_str(order.amount_fen)}</strong></p>
<p id="state">Status 状态: {html.escape(order.trade_state)}</p>
<p id="message">{html.escape(message)}</p>
<form method="post">{buttons}</form></body></html>"""
        return Response(page, content_type="text/html; charset=utf-8")


def make_gateway(
    keys: WechatSandboxKeys, public_url: str, clock: Clock | None = None
) -> WechatSandbox:
    """The sandbox as a WSGI app; ``public_url`` is where payers' browsers reach it."""
    return WechatSandbox(keys, public_url, clock)

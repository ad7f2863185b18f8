"""A local Alipay gateway for the demo and the tests: the real ``AlipayChannel`` talks to it.

It speaks Alipay's protocol with generated keys: requests to ``/gateway.do`` are verified with the
app's public key, answers are the signed JSON envelope the SDK verifies, notifications are signed
form POSTs, and the daily bill is a zip of GBK CSVs in Alipay's layout.

Routes (relative to ``public_url``, which may carry a port and a path prefix):

* ``GET|POST /gateway.do``: ``alipay.trade.page.pay`` / ``alipay.trade.wap.pay`` (the browser lands
  here from ``Checkout.redirect_url`` and is sent on to the payment page), ``alipay.trade.query``,
  ``alipay.trade.close``, ``alipay.trade.refund``, ``alipay.trade.fastpay.refund.query``,
  ``alipay.data.dataservice.bill.downloadurl.query``.
* ``GET /pay/<out_trade_no>``: the payment page (confirm / fail / abandon).
  ``POST`` with ``action=confirm`` marks the trade paid, POSTs the signed notification to the
  order's ``notify_url`` and redirects the browser to ``return_url`` with the signed sync-return
  parameters; ``fail`` shows a failure page (the trade stays payable, as at Alipay); ``abandon``
  goes back to ``return_url`` unsigned, leaving the trade unpaid.
* ``GET /bill/<token>.zip``: a bill handed out by the download-URL method.
* Test controls: ``POST /sandbox/pay/<out_trade_no>`` (pay and notify, JSON answer),
  ``POST /sandbox/notify/<out_trade_no>`` (send the current state's notification again),
  ``POST /sandbox/fail-next?status=503`` (the next gateway call answers that HTTP status) or
  ``?sub_code=ACQ.SYSTEM_ERROR`` (it answers that signed error, code 20000).

A page/wap trade exists only once its pay URL was opened (as at Alipay, where the trade appears
when the buyer reaches the cashier), so a test opens ``redirect_url`` before ``/sandbox/pay``.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import secrets
import threading
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal
from urllib.parse import urlencode

import requests
import rsa
from alipay.aop.api.util.SignatureUtils import (
    get_sign_content,
    sign_with_rsa,
    sign_with_rsa2,
    verify_with_rsa,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
from pydantic import BaseModel
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from payments.channels.alipay import (
    ALIPAY_TIME_FORMAT,
    BEIJING,
    PRODUCT_CODES,
    AlipaySettings,
)
from payments.channels.base import Scene
from portal.kernel.clock import Clock, SystemClock
from portal.kernel.money import MoneyFormatError, fen_to_yuan_str, parse_yuan, round_to_fen

FEE_RATE: Final = Decimal("0.006")  # the sandbox's service fee, 0.6 %, per row half up
PAY_METHODS: Final = {"alipay.trade.page.pay": Scene.DESKTOP, "alipay.trade.wap.pay": Scene.MOBILE}
NOTIFY_TIMEOUT: Final = 10.0
GATEWAY_MESSAGES: Final = {"20000": "Service Currently Unavailable", "40002": "Invalid Arguments",
                           "40004": "Business Failed"}


class AlipaySandboxKeys(BaseModel):
    """Generated credentials: the app's key pair (the app key in PKCS#8, as Alipay's key tool
    gives Java users, so the channel's PKCS#1 conversion is exercised) and Alipay's pair."""

    app_id: str
    seller_id: str
    app_private_key: str     # PKCS#8 PEM
    app_public_key: str      # SPKI PEM
    alipay_private_key: str  # PKCS#1 PEM (the SDK's signing wants PKCS#1)
    alipay_public_key: str   # SPKI PEM


def _key_pair(private_format: serialization.PrivateFormat) -> tuple[str, str]:
    key = rsa_keys.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, private_format,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public.decode()


def generate_keys() -> AlipaySandboxKeys:
    app_private, app_public = _key_pair(serialization.PrivateFormat.PKCS8)
    alipay_private, alipay_public = _key_pair(serialization.PrivateFormat.TraditionalOpenSSL)
    return AlipaySandboxKeys(
        app_id="9021" + "".join(secrets.choice("0123456789") for _ in range(12)),
        seller_id="2088" + "".join(secrets.choice("0123456789") for _ in range(12)),
        app_private_key=app_private, app_public_key=app_public,
        alipay_private_key=alipay_private, alipay_public_key=alipay_public)


def channel_settings(keys: AlipaySandboxKeys, gateway_url: str, notify_url: str | None = None,
                     return_url: str | None = None) -> AlipaySettings:
    """Settings that point ``AlipayChannel`` at a sandbox (``gateway_url`` ends in /gateway.do;
    a port is fine)."""
    return AlipaySettings(app_id=keys.app_id, seller_id=keys.seller_id,
                          app_private_key=keys.app_private_key,
                          alipay_public_key=keys.alipay_public_key, gateway_url=gateway_url,
                          notify_url=notify_url, return_url=return_url)


def _beijing(at: datetime) -> str:
    return at.astimezone(BEIJING).strftime(ALIPAY_TIME_FORMAT)


def _trade_no(at: datetime) -> str:
    return f"{at.astimezone(BEIJING):%Y%m%d}2200{secrets.randbelow(10**14):014d}"


def sign_params(private_key: str, params: Mapping[str, str],
                digest: Literal["SHA-256", "SHA-1"] = "SHA-256") -> str:
    """Alipay's signature over notification/return parameters: drop ``sign`` and ``sign_type``,
    sort, join ``k=v`` with ``&``, RSA with ``digest`` (RSA2 = SHA-256)."""
    content = get_sign_content({k: v for k, v in params.items() if k not in ("sign", "sign_type")})
    signer = sign_with_rsa2 if digest == "SHA-256" else sign_with_rsa
    signature: str = signer(private_key, content, "utf-8")
    return signature


def signed_notification(
    keys: AlipaySandboxKeys, *, out_trade_no: str, amount_fen: int,
    trade_status: str = "TRADE_SUCCESS", notify_time: datetime | None = None,
    notify_id: str | None = None, trade_no: str | None = None,
    total_amount: str | None = None, app_id: str | None = None, seller_id: str | None = None,
    sign_type: str = "RSA2", digest: Literal["SHA-256", "SHA-1"] = "SHA-256",
    signing_key: str | None = None, extra: Mapping[str, str] | None = None,
    tamper: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], bytes]:
    """``(headers, body)`` of an asynchronous notification as Alipay POSTs it.

    Valid by default (signed with Alipay's key, ``notify_time`` = now from the system clock:
    pass the channel's clock time when it is frozen). To break it on purpose: ``total_amount``
    replaces the amount text ("1.005"), ``app_id``/``seller_id`` replace ours, ``sign_type`` the
    label, ``digest`` the hash, ``signing_key`` the key (e.g. the app's own), ``tamper`` changes
    fields after signing, ``extra`` adds signed fields."""
    at = notify_time or SystemClock().now()
    fields: dict[str, str] = {
        "notify_time": _beijing(at), "notify_type": "trade_status_sync",
        "notify_id": notify_id or secrets.token_hex(16), "charset": "utf-8", "version": "1.0",
        "app_id": app_id or keys.app_id, "auth_app_id": app_id or keys.app_id,
        "seller_id": seller_id or keys.seller_id,
        "trade_no": trade_no or _trade_no(at),
        "out_trade_no": out_trade_no, "trade_status": trade_status,
        "total_amount": fen_to_yuan_str(amount_fen) if total_amount is None else total_amount,
        "receipt_amount": fen_to_yuan_str(amount_fen), "buyer_id": "2088102177846875",
        "subject": "电费", "gmt_create": _beijing(at),
    }
    if trade_status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
        fields["gmt_payment"] = _beijing(at)
    fields.update(extra or {})
    fields["sign_type"] = sign_type
    fields["sign"] = sign_params(signing_key or keys.alipay_private_key, fields, digest)
    fields.update(tamper or {})
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    return headers, urlencode(fields).encode("utf-8")


@dataclass
class SandboxRefund:
    out_request_no: str
    amount_fen: int
    refunded_at: datetime


@dataclass
class SandboxTrade:
    out_trade_no: str
    trade_no: str
    amount_fen: int
    subject: str
    method: str
    notify_url: str
    return_url: str
    expires_at: datetime | None
    created_at: datetime
    status: str = "WAIT_BUYER_PAY"
    paid_at: datetime | None = None
    refunds: dict[str, SandboxRefund] = field(default_factory=dict)

    @property
    def refunded_fen(self) -> int:
        return sum(r.amount_fen for r in self.refunds.values())


class _Failure(Exception):
    def __init__(self, sub_code: str, sub_msg: str, code: str = "40004") -> None:
        super().__init__(sub_code)
        self.code, self.sub_code, self.sub_msg = code, sub_code, sub_msg


class AlipayGateway:
    """The WSGI app ``make_gateway`` returns; ``trades`` and ``sent`` are there for tests."""

    def __init__(self, keys: AlipaySandboxKeys, public_url: str, clock: Clock | None = None):
        self.keys = keys
        self.public_url = public_url.rstrip("/")
        self.clock: Clock = clock or SystemClock()
        self.trades: dict[str, SandboxTrade] = {}
        self.sent: list[tuple[str, int | None]] = []  # (out_trade_no, notify HTTP status)
        self.fail_next: int | str | None = None  # an HTTP status, or a sub_code to answer
        self._bills: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._app_key = rsa.PublicKey.load_pkcs1_openssl_pem(keys.app_public_key.encode())
        self._urls = Map([
            Rule("/gateway.do", endpoint="gateway", methods=["GET", "POST"]),
            Rule("/pay/<out_trade_no>", endpoint="pay_page", methods=["GET", "POST"]),
            Rule("/bill/<token>.zip", endpoint="bill", methods=["GET"]),
            Rule("/sandbox/pay/<out_trade_no>", endpoint="control_pay", methods=["POST"]),
            Rule("/sandbox/notify/<out_trade_no>", endpoint="control_notify", methods=["POST"]),
            Rule("/sandbox/fail-next", endpoint="control_fail", methods=["POST"]),
        ])

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = self._urls.bind_to_environ(environ).match()
            response = getattr(self, f"_on_{endpoint}")(request, **args)
        except HTTPException as exc:
            response = exc.get_response(environ)
        result: Iterable[bytes] = response(environ, start_response)
        return result

    # -- the gateway ------------------------------------------------------------------------

    def _on_gateway(self, request: Request) -> Response:
        params = {**request.args.to_dict(), **request.form.to_dict()}
        method = params.get("method", "")
        with self._lock:
            fail, self.fail_next = self.fail_next, None
        if isinstance(fail, int):
            return Response("sandbox failure", status=fail)
        try:
            if fail:
                raise _Failure(fail, "系统繁忙 (sandbox)", code="20000")
            self._verify_request(params)
            biz = json.loads(params.get("biz_content") or "{}")
            if method in PAY_METHODS:
                return self._page_pay(method, params, biz)
            handler = {
                "alipay.trade.query": self._query, "alipay.trade.close": self._close,
                "alipay.trade.refund": self._refund,
                "alipay.trade.fastpay.refund.query": self._refund_query,
                "alipay.data.dataservice.bill.downloadurl.query": self._bill_url,
            }.get(method)
            if handler is None:
                raise _Failure("isv.invalid-method", "不存在的方法名", code="40002")
            with self._lock:
                body = {"code": "10000", "msg": "Success", **handler(biz)}
        except _Failure as failure:
            if method in PAY_METHODS:
                return self._html(f"<h1>{html.escape(failure.sub_code)}</h1>"
                                  f"<p>{html.escape(failure.sub_msg)}</p>", status=400)
            body = {"code": failure.code, "msg": GATEWAY_MESSAGES[failure.code],
                    "sub_code": failure.sub_code, "sub_msg": failure.sub_msg}
        return self._envelope(method, body)

    def _verify_request(self, params: dict[str, str]) -> None:
        sign = params.pop("sign", "")
        if params.get("app_id") != self.keys.app_id:
            raise _Failure("isv.invalid-app-id", "无效的AppID参数", code="40002")
        if params.get("sign_type") != "RSA2":
            raise _Failure("isv.invalid-signature-type", "无效的签名类型", code="40002")
        try:  # requests are signed over every parameter but sign (sign_type included)
            verify_with_rsa(self.keys.app_public_key,
                            get_sign_content(params).encode("utf-8"), sign)
            if rsa.find_signature_hash(base64.b64decode(sign), self._app_key) != "SHA-256":
                raise ValueError("not SHA-256")
        except Exception as exc:
            raise _Failure("isv.invalid-signature", "验签出错", code="40002") from exc

    def _envelope(self, method: str, body: Mapping[str, Any]) -> Response:
        key = (method.replace(".", "_") if method else "error") + "_response"
        inner = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        sign = sign_with_rsa2(self.keys.alipay_private_key, inner, "utf-8")
        text = f'{{"{key}":{inner},"sign":"{sign}"}}'
        return Response(text.encode("utf-8"), content_type="application/json;charset=utf-8")

    def _trade(self, biz: Mapping[str, Any]) -> SandboxTrade:
        trade = self.trades.get(str(biz.get("out_trade_no", "")))
        if trade is None:
            raise _Failure("ACQ.TRADE_NOT_EXIST", "交易不存在")
        return trade

    def _page_pay(self, method: str, params: Mapping[str, str],
                  biz: Mapping[str, Any]) -> Response:
        now = self.clock.now()
        order_no = str(biz.get("out_trade_no", ""))
        if not order_no or biz.get("product_code") != PRODUCT_CODES[PAY_METHODS[method]]:
            raise _Failure("ACQ.INVALID_PARAMETER", "out_trade_no / product_code")
        try:
            amount = parse_yuan(str(biz.get("total_amount", "")))
            expires = (datetime.strptime(biz["time_expire"], ALIPAY_TIME_FORMAT)
                       .replace(tzinfo=BEIJING) if biz.get("time_expire") else None)
        except (MoneyFormatError, ValueError) as exc:
            raise _Failure("ACQ.INVALID_PARAMETER", str(exc)) from exc
        if amount <= 0:
            raise _Failure("ACQ.INVALID_PARAMETER", "total_amount")
        with self._lock:
            trade = self.trades.get(order_no)
            if trade is not None and (trade.amount_fen != amount or trade.method != method):
                raise _Failure("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            if trade is None:
                trade = self.trades[order_no] = SandboxTrade(
                    out_trade_no=order_no,
                    trade_no=_trade_no(now),
                    amount_fen=amount, subject=str(biz.get("subject", "")), method=method,
                    notify_url=params.get("notify_url", ""),
                    return_url=params.get("return_url", ""), expires_at=expires, created_at=now)
        return Response(status=302, headers={"Location": f"{self.public_url}/pay/{order_no}"})

    def _query(self, biz: Mapping[str, Any]) -> dict[str, str]:
        trade = self._trade(biz)
        self._expire(trade)
        answer = {"out_trade_no": trade.out_trade_no, "trade_no": trade.trade_no,
                  "trade_status": trade.status, "total_amount": fen_to_yuan_str(trade.amount_fen),
                  "buyer_logon_id": "159****5620"}
        if trade.paid_at:
            answer["send_pay_date"] = _beijing(trade.paid_at)
        return answer

    def _close(self, biz: Mapping[str, Any]) -> dict[str, str]:
        trade = self._trade(biz)
        self._expire(trade)
        if trade.status != "WAIT_BUYER_PAY":
            raise _Failure("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        trade.status = "TRADE_CLOSED"
        return {"out_trade_no": trade.out_trade_no, "trade_no": trade.trade_no}

    def _refund(self, biz: Mapping[str, Any]) -> dict[str, str]:
        trade = self._trade(biz)
        request_no = str(biz.get("out_request_no") or trade.out_trade_no)
        try:
            amount = parse_yuan(str(biz.get("refund_amount", "")))
        except MoneyFormatError as exc:
            raise _Failure("ACQ.INVALID_PARAMETER", "refund_amount") from exc
        previous = trade.refunds.get(request_no)
        if previous is not None:
            if previous.amount_fen != amount:
                raise _Failure("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额与原请求不一致")
            fund_change = "N"  # this out_request_no was refunded before: nothing moves again
        else:
            if trade.paid_at is None or trade.status not in ("TRADE_SUCCESS", "TRADE_FINISHED"):
                raise _Failure("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            if amount <= 0 or trade.refunded_fen + amount > trade.amount_fen:
                raise _Failure("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            trade.refunds[request_no] = SandboxRefund(request_no, amount, self.clock.now())
            if trade.refunded_fen == trade.amount_fen:
                trade.status = "TRADE_CLOSED"
            fund_change = "Y"
        return {"out_trade_no": trade.out_trade_no, "trade_no": trade.trade_no,
                "fund_change": fund_change, "refund_fee": fen_to_yuan_str(trade.refunded_fen),
                "gmt_refund_pay": _beijing(trade.refunds[request_no].refunded_at),
                "buyer_logon_id": "159****5620"}

    def _refund_query(self, biz: Mapping[str, Any]) -> dict[str, str]:
        trade = self._trade(biz)
        refund = trade.refunds.get(str(biz.get("out_request_no") or trade.out_trade_no))
        if refund is None:
            return {}  # Alipay answers an empty success for a refund it never accepted
        return {"out_trade_no": trade.out_trade_no, "trade_no": trade.trade_no,
                "out_request_no": refund.out_request_no, "refund_status": "REFUND_SUCCESS",
                "total_amount": fen_to_yuan_str(trade.amount_fen),
                "refund_amount": fen_to_yuan_str(refund.amount_fen)}

    def _bill_url(self, biz: Mapping[str, Any]) -> dict[str, str]:
        if biz.get("bill_type") != "trade":
            raise _Failure("isp.bill_type_not_supported", "bill_type")
        try:
            day = date.fromisoformat(str(biz.get("bill_date", "")))
        except ValueError as exc:
            raise _Failure("isv.invalid-bill-date", "bill_date") from exc
        data = self.bill_zip(day)
        if data is None:
            raise _Failure("isp.bill_not_exist", "账单不存在")
        token = secrets.token_urlsafe(16)
        self._bills[token] = data
        return {"bill_download_url": f"{self.public_url}/bill/{token}.zip"}

    def _on_bill(self, request: Request, token: str) -> Response:
        with self._lock:
            data = self._bills.pop(token, None)  # one download per URL, like the 30 s link
        if data is None:
            raise NotFound()
        return Response(data, content_type="application/zip")

    def _expire(self, trade: SandboxTrade) -> None:
        if (trade.status == "WAIT_BUYER_PAY" and trade.expires_at is not None
                and self.clock.now() >= trade.expires_at):
            trade.status = "TRADE_CLOSED"

    # -- the bill ---------------------------------------------------------------------------

    def bill_zip(self, day: date) -> bytes | None:
        """Alipay's trade bill for one Beijing day: a zip with the detail and summary CSVs."""
        rows: list[list[str]] = []
        paid = [t for t in self.trades.values()
                if t.paid_at and t.paid_at.astimezone(BEIJING).date() == day]
        refunds = [(t, r) for t in self.trades.values() for r in t.refunds.values()
                   if r.refunded_at.astimezone(BEIJING).date() == day]
        if not paid and not refunds:
            return None
        for trade in paid:
            assert trade.paid_at is not None  # noqa: S101 (filtered above; for mypy)
            rows.append(self._bill_row(trade, "交易", trade.amount_fen, trade.paid_at, ""))
        for trade, refund in refunds:
            rows.append(self._bill_row(trade, "退款", -refund.amount_fen, refund.refunded_at,
                                       refund.out_request_no))
        pay_total = sum(t.amount_fen for t in paid)
        refund_total = sum(r.amount_fen for _, r in refunds)
        header = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,"
                  "操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,"
                  "支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,"
                  "卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")
        start = _beijing(datetime.combine(day, datetime.min.time(), BEIJING))
        end = _beijing(datetime.combine(day + timedelta(days=1), datetime.min.time(), BEIJING))
        rule = "-" * 41
        exported = _beijing(self.clock.now())
        lines = [
            "#支付宝业务明细查询", f"#账号：[{self.keys.seller_id}0156]",
            f"#起始日期：[{start}]   终止日期：[{end}]",
            f"#{rule}业务明细列表{rule[:-1]}",
            header, *_csv_lines(rows),
            f"#{rule}业务明细列表结束{rule[:-5]}",
            f"#交易合计：{len(paid)}笔，商家实收共{fen_to_yuan_str(pay_total)}元，商家优惠共0.00元",
            f"#退款合计：{len(refunds)}笔，商家实收退款共{fen_to_yuan_str(-refund_total)}元，"
            "商家优惠退款共0.00元",
            f"#导出时间：[{exported}]",
        ]
        summary = ["#支付宝业务汇总查询", "#-----业务汇总列表-----",
                   "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）",
                   f"合计,,{len(paid)},{len(refunds)},{fen_to_yuan_str(pay_total - refund_total)}",
                   f"#导出时间：[{exported}]"]
        prefix = f"{self.keys.seller_id}0156_{day:%Y%m%d}"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{prefix}_业务明细.csv",
                             "\r\n".join(lines).encode("gbk", errors="replace"))
            archive.writestr(f"{prefix}_业务明细(汇总).csv", "\r\n".join(summary).encode("gbk"))
        return buffer.getvalue()

    @staticmethod
    def _fee(amount_fen: int) -> int:
        return round_to_fen(Decimal(amount_fen) / 100 * FEE_RATE)

    def _bill_row(self, trade: SandboxTrade, kind: str, amount_fen: int, at: datetime,
                  request_no: str) -> list[str]:
        fee = self._fee(abs(amount_fen))
        amount = fen_to_yuan_str(amount_fen)
        return [trade.trade_no + "\t", trade.out_trade_no + "\t", kind, trade.subject,
                _beijing(trade.created_at), _beijing(at), "", "", "", "", "159****5620",
                amount, amount, "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00", "0.00",
                request_no, fen_to_yuan_str(-fee if amount_fen > 0 else fee), "0.00", ""]

    # -- the payment page -------------------------------------------------------------------

    def _html(self, body: str, status: int = 200) -> Response:
        page = ("<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width,initial-scale=1'>"
                "<title>支付宝沙箱 Alipay sandbox</title></head>"
                f"<body style='font-family:sans-serif;max-width:32rem;margin:2rem auto'>{body}"
                "</body></html>")
        return Response(page, status=status, content_type="text/html; charset=utf-8")

    def _on_pay_page(self, request: Request, out_trade_no: str) -> Response:
        with self._lock:
            trade = self.trades.get(out_trade_no)
            if trade is None:
                raise NotFound()
            self._expire(trade)
            if request.method == "GET":
                return self._pay_form(trade)
            action = request.form.get("action")
            if action == "confirm":
                if not self._pay(trade):
                    return self._html("<h1>交易已关闭 Trade closed</h1>", status=409)
            elif action == "fail":
                return self._html(
                    "<h1>支付失败 Payment failed</h1><p>余额不足 Insufficient balance</p>"
                    f"<p><a href='{self.public_url}/pay/{html.escape(out_trade_no)}'>"
                    "重新支付 Try again</a></p>")
            elif action == "abandon":
                return Response(status=302, headers={"Location": trade.return_url})
            else:
                return self._html("<h1>unknown action</h1>", status=400)
        self._notify(trade)  # outside the lock: the portal may query us while handling it
        return Response(status=302, headers={"Location": self._return_location(trade)})

    def _pay_form(self, trade: SandboxTrade) -> Response:
        if trade.status != "WAIT_BUYER_PAY":
            return self._html(f"<h1>{html.escape(trade.status)}</h1>"
                              f"<p><a href='{html.escape(trade.return_url)}'>返回商户 Back</a></p>")
        buttons = "".join(
            f"<button name='action' value='{value}' style='margin:.3rem'>{label}</button>"
            for value, label in (("confirm", "确认付款 Confirm"), ("fail", "付款失败 Fail"),
                                 ("abandon", "放弃付款 Abandon")))
        return self._html(
            "<h1>支付宝沙箱 Alipay sandbox</h1>"
            f"<p id='subject'>{html.escape(trade.subject)}</p>"
            f"<p>订单号 Order <code>{html.escape(trade.out_trade_no)}</code></p>"
            f"<p id='amount'>¥{fen_to_yuan_str(trade.amount_fen)}</p>"
            f"<form method='post' action='{self.public_url}/pay/"
            f"{html.escape(trade.out_trade_no)}'>{buttons}</form>")

    def _pay(self, trade: SandboxTrade) -> bool:
        if trade.status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
            return True
        if trade.status != "WAIT_BUYER_PAY":
            return False
        trade.status, trade.paid_at = "TRADE_SUCCESS", self.clock.now()
        return True

    def _return_location(self, trade: SandboxTrade) -> str:
        params = {
            "charset": "utf-8", "out_trade_no": trade.out_trade_no,
            "method": f"{trade.method}.return",
            "total_amount": fen_to_yuan_str(trade.amount_fen), "trade_no": trade.trade_no,
            "auth_app_id": self.keys.app_id, "version": "1.0", "app_id": self.keys.app_id,
            "seller_id": self.keys.seller_id, "timestamp": _beijing(self.clock.now()),
            "sign_type": "RSA2"}
        params["sign"] = sign_params(self.keys.alipay_private_key, params)
        separator = "&" if "?" in trade.return_url else "?"
        return f"{trade.return_url}{separator}{urlencode(params)}"

    def notification(self, trade: SandboxTrade) -> tuple[dict[str, str], bytes]:
        """The signed notification of the trade's current state."""
        extra = {"subject": trade.subject, "gmt_create": _beijing(trade.created_at)}
        if trade.paid_at:
            extra["gmt_payment"] = _beijing(trade.paid_at)
        if trade.refunds:
            last = max(trade.refunds.values(), key=lambda r: r.refunded_at)
            extra |= {"refund_fee": fen_to_yuan_str(trade.refunded_fen),
                      "gmt_refund": _beijing(last.refunded_at),
                      "out_biz_no": last.out_request_no}
        return signed_notification(self.keys, out_trade_no=trade.out_trade_no,
                                   amount_fen=trade.amount_fen, trade_status=trade.status,
                                   notify_time=self.clock.now(), trade_no=trade.trade_no,
                                   extra=extra)

    def _notify(self, trade: SandboxTrade) -> int | None:
        headers, body = self.notification(trade)
        status: int | None = None
        if trade.notify_url:
            try:
                status = requests.post(trade.notify_url, data=body, headers=headers,
                                       timeout=NOTIFY_TIMEOUT).status_code
            except requests.RequestException:
                status = None
        with self._lock:
            self.sent.append((trade.out_trade_no, status))
        return status

    # -- test controls ----------------------------------------------------------------------

    def _on_control_pay(self, request: Request, out_trade_no: str) -> Response:
        with self._lock:
            trade = self.trades.get(out_trade_no)
            if trade is None:
                raise NotFound("open the pay URL first: the trade does not exist yet")
            self._expire(trade)
            paid = self._pay(trade)
        if not paid:
            return Response(json.dumps({"error": trade.status}), status=409,
                            content_type="application/json")
        return self._control_answer(trade, self._notify(trade))

    def _on_control_notify(self, request: Request, out_trade_no: str) -> Response:
        trade = self.trades.get(out_trade_no)
        if trade is None:
            raise NotFound()
        return self._control_answer(trade, self._notify(trade))

    def _control_answer(self, trade: SandboxTrade, status: int | None) -> Response:
        answer = {"trade_status": trade.status, "notify_status": status,
                  "return_url": self._return_location(trade)}
        return Response(json.dumps(answer), content_type="application/json")

    def _on_control_fail(self, request: Request) -> Response:
        with self._lock:
            sub_code = request.args.get("sub_code")
            self.fail_next = sub_code or int(request.args.get("status", "503"))
        return Response(status=204)


def _csv_lines(rows: list[list[str]]) -> list[str]:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().splitlines()


def make_gateway(keys: AlipaySandboxKeys, public_url: str,
                 clock: Clock | None = None) -> AlipayGateway:
    """The sandbox as a WSGI app reachable at ``public_url`` (e.g. ``http://127.0.0.1:5100/alipay``
    behind a DispatcherMiddleware); the channel's gateway URL is ``public_url + "/gateway.do"``.
    Pass the portal's clock so notification times agree with the channel's staleness check."""
    return AlipayGateway(keys, public_url, clock)

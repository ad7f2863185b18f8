"""``BillingSystem`` over HTTP: an external billing system speaking docs/billing-api.md.

Transport policy, in one place: every request has a timeout; timeouts, connection errors and 5xx
answers are retried with exponential backoff (urllib3's ``Retry``) and, once the retries are
spent, raise ``BillingUnavailable``; a 4xx is never retried and raises ``BillingRejected`` with
the server's code. Every POST carries an ``Idempotency-Key`` derived from our business number
(order number, adjustment number), so a retry of a request whose reply was lost changes nothing.
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from billing_adapter.base import (
    AccountInfo,
    Adjustment,
    BillInfo,
    BillingUnavailable,
    PaymentPosting,
    PostingReceipt,
    ReadingReceipt,
    ReadingSubmission,
)
from billing_adapter.http import mapping

T = TypeVar("T")


class HttpBillingSystem:
    def __init__(self, base_url: str, token: str, timeout: float = 10.0, retries: int = 2,
                 session: requests.Session | None = None, *, backoff: float = 0.5) -> None:
        """``retries`` extra attempts after the first; waits grow as ``backoff`` x 2^n seconds
        (urllib3 retries the first time at once)."""
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.http = session or requests.Session()
        retry = Retry(total=retries, connect=retries, read=retries, status=retries, other=0,
                      allowed_methods=None,  # POSTs too: each carries an Idempotency-Key
                      status_forcelist=frozenset(range(500, 600)), backoff_factor=backoff,
                      raise_on_status=False, respect_retry_after_header=False)
        self.http.mount(self.base_url + "/", HTTPAdapter(max_retries=retry))

    def _call(self, operation: str, body: Any = None, *, key: str | None = None,
              params: dict[str, str] | None = None, **path: str) -> Any:
        method, template = mapping.ROUTES[operation]
        url = self.base_url + template.format(**{k: quote(v, safe="") for k, v in path.items()})
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if key is not None:  # every POST has one
            headers["Idempotency-Key"] = key
            headers["Content-Type"] = "application/json"
        try:
            response = self.http.request(
                method, url, params=params, headers=headers, timeout=self.timeout,
                data=None if body is None else mapping.dumps(body))
        except requests.RequestException as exc:
            raise BillingUnavailable(f"{method} {template}: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise BillingUnavailable(f"{method} {template}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise mapping.rejection(response.status_code, response.content)
        try:
            return mapping.loads(response.content)
        except mapping.MalformedMessage as exc:
            raise BillingUnavailable(f"{method} {template}: {exc}") from None

    @staticmethod
    def _decode(cls: type[T], data: Any) -> T:
        try:
            return mapping.decode(cls, data)
        except mapping.MalformedMessage as exc:
            raise BillingUnavailable(f"malformed answer: {exc}") from None

    def get_account(self, account_no: str) -> AccountInfo:
        return self._decode(AccountInfo, self._call("get_account", account_no=account_no))

    def list_bills(self, account_no: str, since: str) -> list[BillInfo]:
        data = self._call("list_bills", params={"since": since}, account_no=account_no)
        return list(self._decode(mapping.BillList, data).bills)

    def submit_reading(self, reading: ReadingSubmission) -> ReadingReceipt:
        data = self._call("submit_reading", mapping.encode(reading),
                          key=mapping.reading_key(reading))
        return self._decode(ReadingReceipt, data)

    def post_payment(self, posting: PaymentPosting) -> PostingReceipt:
        data = self._call("post_payment", mapping.encode(posting),
                          key=mapping.payment_key(posting.order_no))
        return self._decode(PostingReceipt, data)

    def reverse_payment(self, order_no: str, reason: str, *, reversal_no: str,
                        amount_fen: int) -> PostingReceipt:
        body = mapping.encode(mapping.Reversal(reversal_no, amount_fen, reason))
        data = self._call("reverse_payment", body, key=mapping.reversal_key(reversal_no),
                          order_no=order_no)
        return self._decode(PostingReceipt, data)

    def apply_adjustment(self, adjustment: Adjustment) -> BillInfo:
        data = self._call("apply_adjustment", mapping.encode(adjustment),
                          key=mapping.adjustment_key(adjustment.adjustment_no))
        return self._decode(BillInfo, data)

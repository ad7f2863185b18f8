"""The wire format of the billing API (docs/billing-api.md): the only module that knows it.

Routes, the Idempotency-Key of each POST, and DTO <-> JSON. On the wire money is an integer
number of fen, kWh and prices are decimal *strings* ("123.45", never a JSON float), dates are
``YYYY-MM-DD`` and instants ISO 8601 with an offset. A JSON object carries exactly the DTO's field
names; unknown fields are ignored (a server may add some), missing optional ones take their
default. Anything else raises ``MalformedMessage``.
"""

from __future__ import annotations

import dataclasses
import json
import types
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeVar, Union, get_args, get_origin, get_type_hints

from billing_adapter.base import BillInfo, BillingRejected, ReadingSubmission

T = TypeVar("T")

# operation -> (HTTP method, path template under the base URL). The OpenAPI file names each.
ROUTES: Final[dict[str, tuple[str, str]]] = {
    "get_account": ("GET", "/v1/accounts/{account_no}"),
    "list_bills": ("GET", "/v1/accounts/{account_no}/bills"),
    "submit_reading": ("POST", "/v1/readings"),
    "post_payment": ("POST", "/v1/payments"),
    "reverse_payment": ("POST", "/v1/payments/{order_no}/reversal"),
    "apply_adjustment": ("POST", "/v1/adjustments"),
}


class MalformedMessage(ValueError):
    """A body that does not follow the contract."""


# --- idempotency keys (one per business operation, so a retry repeats the same key) ---------

def payment_key(order_no: str) -> str:
    return f"payment:{order_no}"


def reversal_key(reversal_no: str) -> str:
    return f"reversal:{reversal_no}"


def adjustment_key(adjustment_no: str) -> str:
    return f"adjustment:{adjustment_no}"


def reading_key(reading: ReadingSubmission) -> str:
    return (f"reading:{reading.account_no}:{reading.meter_no}:{reading.period}:"
            f"{reading.read_on.isoformat()}:{reading.value_kwh}")


# --- bytes <-> JSON values -----------------------------------------------------------------

def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def loads(body: bytes) -> Any:
    """Parse a body; a JSON float stays a Decimal so it can never slip into an int field."""
    try:
        return json.loads(body, parse_float=Decimal)
    except ValueError as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None


# --- DTO <-> JSON values -------------------------------------------------------------------

def encode(value: Any) -> Any:
    """A DTO (or a value inside one) as JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not sent; pass an aware one")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [encode(item) for item in value]
    return value


def decode(cls: type[T], data: Any) -> T:
    """Build DTO ``cls`` from JSON data, checking every field's type."""
    if not isinstance(data, dict):
        raise MalformedMessage(f"{cls.__name__}: expected an object")
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise MalformedMessage(f"{cls.__name__}: {f.name} is missing")
            continue
        values[f.name] = _value(hints[f.name], data[f.name], f"{cls.__name__}.{f.name}")
    return cls(**values)


def _value(hint: Any, raw: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        if raw is None:
            return None
        (inner,) = [arg for arg in get_args(hint) if arg is not type(None)]
        return _value(inner, raw, where)
    if origin is tuple:
        if not isinstance(raw, list):
            raise MalformedMessage(f"{where}: expected a list")
        return tuple(_value(get_args(hint)[0], item, where) for item in raw)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return decode(hint, raw)
    if hint is bool or hint is str:
        if not isinstance(raw, hint):
            raise MalformedMessage(f"{where}: expected {hint.__name__}")
        return raw
    if hint is int:
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise MalformedMessage(f"{where}: expected an integer")
        return raw
    if not isinstance(raw, str):
        raise MalformedMessage(f"{where}: expected a string")
    try:
        if hint is Decimal:
            number = Decimal(raw)
            if not number.is_finite():
                raise ValueError(raw)
            return number
        if hint is datetime:
            instant = datetime.fromisoformat(raw)
            if instant.tzinfo is None:
                raise ValueError("no UTC offset")
            return instant.astimezone(UTC)
        if hint is date:
            return date.fromisoformat(raw)
    except (ValueError, InvalidOperation) as exc:
        raise MalformedMessage(f"{where}: {exc}") from None
    raise TypeError(f"{where}: no mapping for {hint!r}")  # a DTO field of a new type


# --- messages ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BillList:
    """The body of ``list_bills``: ``{"bills": [...]}``."""

    bills: tuple[BillInfo, ...]


@dataclasses.dataclass(frozen=True)
class Reversal:
    """The body of ``reverse_payment`` (the order number is in the path)."""

    reversal_no: str
    amount_fen: int
    reason: str


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def rejection(status: int, body: bytes) -> BillingRejected:
    """A 4xx answer as the error it stands for; a body off the contract still says the status."""
    try:
        error = loads(body)["error"]
        return BillingRejected(str(error["code"]), str(error.get("message", "")))
    except (MalformedMessage, KeyError, TypeError, AttributeError):
        return BillingRejected(f"http_{status}", body[:200].decode(errors="replace"))


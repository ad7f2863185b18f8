"""The wire format: the OpenAPI file names every route the client uses and every DTO field (no
drift), and the mapping round-trips DTOs while refusing bodies off the contract."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from billing_adapter.base import (
    AccountInfo,
    Adjustment,
    BillInfo,
    BillLineInfo,
    PaymentPosting,
    PostingReceipt,
    ReadingReceipt,
    ReadingSubmission,
)
from billing_adapter.http import mapping

SPEC = yaml.safe_load((Path(__file__).resolve().parents[3] / "docs" / "billing-api.openapi.yaml")
                      .read_text(encoding="utf-8"))
SCHEMAS: dict[str, type[Any]] = {
    "Account": AccountInfo, "Bill": BillInfo, "BillLine": BillLineInfo,
    "BillList": mapping.BillList, "ReadingSubmission": ReadingSubmission,
    "ReadingReceipt": ReadingReceipt, "PaymentPosting": PaymentPosting,
    "PostingReceipt": PostingReceipt, "Reversal": mapping.Reversal, "Adjustment": Adjustment,
}
LINE = BillLineInfo(kind="energy", amount_fen=11719, description="第1档 240 kWh × 0.4883",
                    tier=1, kwh=Decimal("240.00"), unit_price=Decimal("0.48830"))
BILL = BillInfo(account_no="9900000001", period="2026-11", version=2,
                period_start=date(2026, 11, 1), period_end=date(2026, 11, 30),
                kwh=Decimal("240"), tariff_code="beijing-residential", total_fen=11719,
                status="issued", due_date=date(2026, 12, 25), lines=(LINE,))


def test_the_openapi_file_names_every_route_the_client_uses() -> None:
    assert SPEC["openapi"].startswith("3.1")
    for operation, (method, path) in mapping.ROUTES.items():
        spec = SPEC["paths"][path][method.lower()]
        assert spec["operationId"] == operation
        refs = [p.get("$ref") for p in spec.get("parameters", [])]
        assert ("#/components/parameters/IdempotencyKey" in refs) == (method == "POST")
    assert len(SPEC["paths"]) == len(mapping.ROUTES)


def test_every_reference_in_the_openapi_file_resolves() -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if "$ref" in node else []
            return own + [r for v in node.values() for r in refs(v)]
        return [r for v in node for r in refs(v)] if isinstance(node, list) else []

    found = refs(SPEC)
    assert found
    for ref in found:
        target = SPEC
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_each_schema_has_exactly_the_fields_of_its_dto(name: str) -> None:
    schema, fields = SPEC["components"]["schemas"][name], dataclasses.fields(SCHEMAS[name])
    assert set(schema["properties"]) == {f.name for f in fields}
    assert set(schema["required"]) == {
        f.name for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


@pytest.mark.parametrize("dto", [
    BILL,
    AccountInfo("9900000001", "张三", "北京市", "residential", "beijing-residential", "bj-01"),
    ReadingSubmission("9900000001", "990000001234", "2026-11", date(2026, 11, 28),
                      Decimal("1234.5"), "customer", peak_kwh=Decimal("1"),
                      flat_kwh=Decimal("2"), valley_kwh=Decimal("0")),
    PaymentPosting("DF1", "9900000001", 100, datetime(2026, 12, 3, 10, tzinfo=UTC), "wechat",
                   ("2026-10", "2026-11")),
    ReadingReceipt("R1", False, "awaiting_validation"), PostingReceipt("DF1", "P1", True),
    Adjustment("ADJ-1", "9900000001", "2026-11", -100, "退费"),
    mapping.BillList((BILL, BILL)),
])
def test_dtos_round_trip_through_json_bytes(dto: Any) -> None:
    assert mapping.decode(type(dto), mapping.loads(mapping.dumps(mapping.encode(dto)))) == dto


def test_the_wire_shape() -> None:
    wire = mapping.encode(BILL)
    assert wire["kwh"] == "240" and wire["lines"][0]["unit_price"] == "0.48830"
    assert wire["total_fen"] == 11719 and wire["due_date"] == "2026-12-25"
    assert wire["review_reason"] is None
    posting = PaymentPosting("DF1", "1", 100, datetime(2026, 12, 3, 18, tzinfo=UTC), "alipay")
    assert mapping.encode(posting)["paid_at"] == "2026-12-03T18:00:00Z"
    with pytest.raises(ValueError, match="naive"):
        mapping.encode(dataclasses.replace(posting, paid_at=datetime(2026, 12, 3)))  # noqa: DTZ001


def _bill_with(**changes: Any) -> dict[str, Any]:
    wire = mapping.encode(BILL)
    wire.update(changes)
    return wire  # type: ignore[no-any-return]


@pytest.mark.parametrize("body", [
    [],
    _bill_with(total_fen=117.19),     # a float where fen are an integer
    _bill_with(total_fen=True),
    _bill_with(total_fen="11719"),
    _bill_with(kwh=240.5),            # kWh must be a decimal string
    _bill_with(kwh="NaN"),
    _bill_with(kwh="lots"),
    _bill_with(due_date="25/12/2026"),
    _bill_with(status=None),
    _bill_with(lines={"kind": "energy"}),
    {k: v for k, v in mapping.encode(BILL).items() if k != "period"},
])
def test_bodies_off_the_contract_are_refused(body: Any) -> None:
    with pytest.raises(mapping.MalformedMessage):
        mapping.decode(BillInfo, mapping.loads(mapping.dumps(body)))


def test_instants_need_an_offset_and_unknown_fields_are_ignored() -> None:
    wire = mapping.encode(PaymentPosting("DF1", "1", 100, datetime(2026, 12, 3, tzinfo=UTC),
                                         "wechat"))
    wire["paid_at"] = "2026-12-03T08:00:00+08:00"
    wire["extra"] = "a field a newer server added"
    assert mapping.decode(PaymentPosting, wire).paid_at == datetime(2026, 12, 3, tzinfo=UTC)
    wire["paid_at"] = "2026-12-03T08:00:00"
    with pytest.raises(mapping.MalformedMessage, match="offset"):
        mapping.decode(PaymentPosting, wire)


def test_errors() -> None:
    assert mapping.loads(mapping.dumps(mapping.error_body("unknown_account", "无此户号"))) == {
        "error": {"code": "unknown_account", "message": "无此户号"}}
    rejected = mapping.rejection(404, mapping.dumps(mapping.error_body("unknown_account", "x")))
    assert (rejected.code, rejected.message) == ("unknown_account", "x")
    proxy = mapping.rejection(404, b"<html>Not Found</html>")
    assert proxy.code == "http_404" and "Not Found" in proxy.message
    with pytest.raises(mapping.MalformedMessage):
        mapping.loads(b"{")


def test_missing_optional_fields_take_their_defaults() -> None:
    wire = mapping.encode(PaymentPosting("DF1", "1", 100, datetime(2026, 12, 3, tzinfo=UTC),
                                         "wechat", ("2026-11",)))
    del wire["bill_periods"]
    assert mapping.decode(PaymentPosting, wire).bill_periods == ()


@dataclasses.dataclass(frozen=True)
class _FloatField:
    ratio: float


def test_a_dto_field_of_an_unmapped_type_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="no mapping"):
        mapping.decode(_FloatField, {"ratio": "0.5"})

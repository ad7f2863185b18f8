"""The plausibility rules, pure: one fact at a time."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from billing_adapter.local.verification import Thresholds
from portal.readings import rules
from portal.readings.rules import Facts, Registers

T = Thresholds()
HISTORY = [D(100)] * 6


def assess(total: str, previous: str | None = "1000", history=HISTORY, installed=False,
           parts=None, previous_parts=None, digits=6):
    reading = Registers(D(total), {k: D(v) for k, v in (parts or {}).items()})
    before = None if previous is None else Registers(
        D(previous), {k: D(v) for k, v in (previous_parts or {}).items()})
    return rules.assess(Facts(reading, "M1", before, installed, history, digits), T)


def codes(result) -> list[str]:
    return [f.code for f in result.flags]


def test_plausible_usage() -> None:
    result = assess("1100")
    assert result.plausible and result.usage_kwh == D(100) and not result.rollover


@pytest.mark.parametrize(("total", "expected"), [
    ("1299.99", []), ("1300.01", ["usage_high"]),   # 3 x the average of 100 (bill verification)
    ("1030", []), ("1029.99", ["usage_low"]),       # 0.3 x
])
def test_the_bill_verification_ratios(total, expected) -> None:
    assert codes(assess(total)) == expected


def test_no_ratio_rule_with_little_history() -> None:
    assert assess("5000", history=[D(100), D(100)]).plausible  # fewer than 3 months


def test_lower_without_rollover_is_flagged_with_no_usage() -> None:
    result = assess("999")
    assert codes(result) == ["reading_went_down"] and result.usage_kwh is None
    assert rules.decode(rules.encode(result.flags))[0].detail == (
        ("meter", "M1"), ("previous", "1000"), ("current", "999"))


def test_rollover_counts_through_the_wrap() -> None:
    result = assess("30", previous="999950")
    assert result.rollover and result.usage_kwh == D(80) and result.plausible
    # a wrap that would mean a tenth of the dial or more is a reading that went down
    assert codes(assess("1000", previous="500000")) == ["reading_went_down"]
    # a wrap is counted, then judged like any usage
    assert codes(assess("1000", previous="950000")) == ["usage_high"]
    assert assess("5", previous="9995", digits=4).usage_kwh == D(10)


def test_tou_sum_and_registers() -> None:
    ok = assess("1100", parts={"peak": "660", "valley": "440"},
                previous_parts={"peak": "600", "valley": "400"})
    assert ok.plausible and ok.register_usage == {"peak": D(60), "valley": D(40)}
    assert codes(assess("1100", parts={"peak": "600", "valley": "400"})) == ["tou_sum_mismatch"]
    down = assess("1100", parts={"peak": "700", "valley": "400"},
                  previous_parts={"peak": "600", "valley": "450"})
    assert codes(down) == ["reading_went_down"]  # valley went down (total fine)


def test_no_previous_reading() -> None:
    assert codes(assess("100", previous=None)) == ["no_previous_reading"]
    new_meter = assess("100", previous=None, installed=True)
    assert new_meter.plausible and new_meter.usage_kwh == D(100)


@pytest.mark.parametrize(("value", "code"), [
    (None, "reading_value_required"), (D("-0.01"), "reading_value_negative"),
    (D("1.001"), "reading_value_decimals"), (D("1000000"), "reading_value_too_many_digits"),
    (D("NaN"), "reading_value_required"), (D("-Infinity"), "reading_value_required"),
    # more digits than a Decimal holds once given two decimals: refused, not a crash
    (D("1E30"), "reading_value_too_many_digits"),
    (D("9" * 29), "reading_value_too_many_digits"),
])
def test_values_that_cannot_be_a_reading(value, code) -> None:
    with pytest.raises(rules.BadValue) as refused:
        rules.check_value(value, "value_kwh", 6)
    assert refused.value.code == code


def test_registers_must_match_the_meter() -> None:
    with pytest.raises(rules.BadValue) as plain:
        rules.check_shape(D(1), {"peak": D(1)}, (), 6)
    assert plain.value.code == "reading_registers_not_tou"
    with pytest.raises(rules.BadValue) as missing:
        rules.check_shape(D(1), {"peak": D(1)}, ("peak", "valley"), 6)
    assert (missing.value.code, missing.value.field) == ("reading_value_required", "valley_kwh")
    with pytest.raises(rules.BadValue) as extra:
        rules.check_shape(D(2), {"peak": D(1), "valley": D(1), "flat": D(0)}, ("peak", "valley"),
                          6)
    assert extra.value.code == "reading_register_unknown"


def test_encode_fits_the_column() -> None:
    many = [rules.Flag("usage_high", (("kwh", "9" * 100),))] * 5
    assert len(rules.encode(many)) <= rules.REASON_MAX_LENGTH
    assert rules.encode([]) is None

"""Bill verification (核): each rule holds a bill and says why; ordinary months are issued."""

from decimal import Decimal

import pytest

from billing_adapter.local.verification import (
    Facts,
    Hold,
    Reason,
    Thresholds,
    check,
    decode,
    encode,
)

D = Decimal
STEADY = [D(200), D(210), D(190), D(205), D(195), D(200)]  # average 200
RULES = Thresholds(low_ratio=D("0.3"), high_ratio=D(3), min_history_months=3)


def _codes(facts: Facts, thresholds: Thresholds = RULES) -> list[str]:
    return [hold.reason.value for hold in check(facts, thresholds)]


def test_an_ordinary_month_is_issued() -> None:
    assert check(Facts(kwh=D(230), history_kwh=STEADY), RULES) == ()
    assert encode(()) is None


def test_estimated_reading_is_held() -> None:
    assert _codes(Facts(kwh=D(200), history_kwh=STEADY, estimated=True)) == ["estimated_reading"]


def test_zero_usage_is_held_even_for_a_new_account() -> None:
    assert _codes(Facts(kwh=D(0))) == ["zero_usage"]


@pytest.mark.parametrize(("kwh", "code"), [(D(59), "usage_low"), (D(601), "usage_high")])
def test_usage_far_from_the_six_month_average_is_held(kwh: Decimal, code: str) -> None:
    holds = check(Facts(kwh=kwh, history_kwh=STEADY), RULES)
    assert [h.reason.value for h in holds] == [code]
    assert dict(holds[0].detail) == {"kwh": str(kwh), "average": "200.00", "months": "6"}


@pytest.mark.parametrize("kwh", [D(60), D(600)])
def test_the_multiples_themselves_are_still_issued(kwh: Decimal) -> None:
    assert check(Facts(kwh=kwh, history_kwh=STEADY), RULES) == ()


def test_thresholds_are_configurable() -> None:
    strict = Thresholds(low_ratio=D("0.8"), high_ratio=D("1.2"), min_history_months=3)
    assert _codes(Facts(kwh=D(250), history_kwh=STEADY), strict) == ["usage_high"]
    assert _codes(Facts(kwh=D(150), history_kwh=STEADY), strict) == ["usage_low"]


def test_only_the_last_six_months_count() -> None:
    # a huge month seven periods ago no longer lifts the average
    history = [D(5000), *STEADY]
    assert _codes(Facts(kwh=D(700), history_kwh=history)) == ["usage_high"]


def test_too_little_history_skips_the_ratio_rules_only() -> None:
    two_months = [D(100), D(100)]
    assert check(Facts(kwh=D(1000), history_kwh=two_months), RULES) == ()
    three_months = [D(100), D(100), D(100)]
    assert _codes(Facts(kwh=D(1000), history_kwh=three_months)) == ["usage_high"]
    assert _codes(Facts(kwh=D(0), history_kwh=two_months)) == ["zero_usage"]


def test_an_all_zero_history_is_no_average_to_compare_with() -> None:
    assert check(Facts(kwh=D(100), history_kwh=[D(0)] * 6), RULES) == ()


def test_reading_lower_than_before_is_held_with_both_readings() -> None:
    holds = check(Facts(kwh=D(0), history_kwh=STEADY,
                        went_down=("110101000001", D("1500.50"), D(1400))), RULES)
    assert holds == (Hold(Reason.READING_WENT_DOWN, (
        ("meter", "110101000001"), ("previous", "1500.50"), ("current", "1400"))),)


def test_no_previous_reading_and_unpriceable_usage_are_held() -> None:
    assert _codes(Facts(kwh=D(300), no_previous="990001")) == ["no_previous_reading"]
    assert _codes(Facts(kwh=D(300), tariff_known=False)) == ["unknown_tariff"]
    assert _codes(Facts(kwh=D(300), priced=False)) == ["cannot_price"]


def test_several_reasons_are_all_stored_and_read_back() -> None:
    holds = check(Facts(kwh=D(900), history_kwh=STEADY, estimated=True), RULES)
    stored = encode(holds)
    assert stored == "estimated_reading; usage_high kwh=900 average=200.00 months=6"
    assert decode(stored) == list(holds)


def test_stored_reason_fits_the_column_and_unknown_codes_are_skipped() -> None:
    long = [Hold(Reason.NO_PREVIOUS_READING, (("meter", "9" * 100),))] * 4
    stored = encode(long)
    assert stored is not None and len(stored) <= 255
    assert decode(stored) == long[:len(decode(stored))] and decode(stored)
    assert decode("something_new x=1; zero_usage") == [Hold(Reason.ZERO_USAGE)]
    assert decode(None) == [] and decode("") == []

"""Late fees (违约金), each figure worked by hand in the comment beside it."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_adapter.local.late_fees import (
    DEFAULT_RULES,
    RULES_1996,
    LateFee,
    LateFeeRule,
    LateFeeRules,
    late_fee,
)


def test_domain_example_200_yuan_residential_10_days_late() -> None:
    # 200.00 x 0.001 x 10 = 2.00 yuan
    assert late_fee("residential", 20000, date(2026, 11, 25), date(2026, 12, 5)) == LateFee(200, 10)


@pytest.mark.parametrize("paid", [date(2026, 11, 25), date(2026, 11, 1)])
def test_paid_on_or_before_the_due_date_costs_nothing(paid: date) -> None:
    assert late_fee("business", 10_000_000, date(2026, 11, 25), paid) == LateFee(0, 0)


def test_the_first_overdue_day_is_the_day_after_the_due_date() -> None:
    # 1,000.00 yuan, due the 25th, paid the 26th: one day, 1.00 yuan
    assert late_fee("residential", 100_000, date(2026, 11, 25), date(2026, 11, 26)) == (
        LateFee(100, 1))


def test_a_fee_under_one_yuan_is_charged_as_one_yuan() -> None:
    # 50.00 yuan x 0.001 x 3 = 0.15 yuan -> 1.00 yuan
    assert late_fee("residential", 5000, date(2026, 11, 25), date(2026, 11, 28)) == LateFee(100, 3)
    assert late_fee("residential", 0, date(2026, 11, 25), date(2026, 12, 28)) == LateFee(0, 33)


def test_business_across_a_year_end_mixes_two_and_three_per_mille() -> None:
    # 1,000.00 yuan due 2025-12-25, paid 2026-01-05: Dec 26-31 = 6 days x 2.00 = 12.00;
    # Jan 1-5 = 5 days x 3.00 = 15.00; total 27.00 over 11 days
    assert late_fee("business", 100_000, date(2025, 12, 25), date(2026, 1, 5)) == (
        LateFee(2700, 11))
    # a residential bill keeps 1 per mille across the year end: 11 x 1.00
    assert late_fee("residential", 100_000, date(2025, 12, 25), date(2026, 1, 5)) == (
        LateFee(1100, 11))


def test_the_total_is_rounded_once_half_up_not_per_day() -> None:
    # 12,345.67 yuan x 0.001 = 1234.567 fen a day; 3 days = 3703.701 -> 3704 fen.
    # Rounding each day (1235 x 3 = 3705) would differ.
    assert late_fee("residential", 1_234_567, date(2026, 1, 1), date(2026, 1, 4)).fee_fen == 3704
    # 1,505.00 yuan x 0.001 = 150.5 fen -> 151 (half up; half-even would give 150)
    assert late_fee("residential", 150_500, date(2026, 1, 1), date(2026, 1, 2)).fee_fen == 151


def test_rules_switch_per_day_on_2024_06_01() -> None:
    # The shipped 2024 rules keep the 1996 rates: 5 days x 1.00 on 1,000.00 yuan
    due, paid = date(2024, 5, 29), date(2024, 6, 3)
    assert late_fee("residential", 100_000, due, paid) == LateFee(500, 5)
    assert DEFAULT_RULES.on(date(2024, 5, 31)).effective_from == date(1996, 10, 8)
    assert DEFAULT_RULES.on(date(2024, 6, 1)).effective_from == date(2024, 6, 1)
    # A utility whose 2024 rules halve the residential rate and drop the minimum:
    # May 30-31 at 1 per mille = 2.00; June 1-3 at 0.5 per mille = 1.50; total 3.50
    halved = LateFeeRules((RULES_1996, LateFeeRule(date(2024, 6, 1), Decimal("0.0005"),
                                                   Decimal("0.002"), Decimal("0.003"), 0)))
    assert late_fee("residential", 100_000, due, paid, halved) == LateFee(350, 5)
    # The minimum is the one in force on the payment day: 10.00 yuan x 0.0005 = 0.5 fen -> 1 fen
    # after the switch (no minimum); 10.00 x 0.001 = 1 fen -> 1.00 yuan before it.
    assert late_fee("residential", 1000, date(2024, 6, 1), date(2024, 6, 2), halved) == (
        LateFee(1, 1))
    assert late_fee("residential", 1000, date(2024, 5, 1), date(2024, 5, 2), halved) == (
        LateFee(100, 1))


@pytest.mark.parametrize(("args", "error"), [
    (("industrial", 100, date(2026, 1, 1), date(2026, 2, 1)), ValueError),
    (("residential", -1, date(2026, 1, 1), date(2026, 2, 1)), ValueError),
    (("residential", 100.0, date(2026, 1, 1), date(2026, 2, 1)), TypeError),
    (("residential", Decimal(100), date(2026, 1, 1), date(2026, 2, 1)), TypeError),
    (("residential", True, date(2026, 1, 1), date(2026, 2, 1)), TypeError),
    (("residential", 100, "2026-01-01", date(2026, 2, 1)), TypeError),
])
def test_bad_arguments_raise(args: tuple[object, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        late_fee(*args)  # type: ignore[arg-type]


def test_rules_must_be_in_date_order() -> None:
    with pytest.raises(ValueError, match="effective-date order"):
        LateFeeRules((DEFAULT_RULES.rules[1], DEFAULT_RULES.rules[0]))
    with pytest.raises(ValueError, match="non-empty"):
        LateFeeRules(())


@given(cls=st.sampled_from(["residential", "business"]),
       amount=st.integers(0, 10**10), due=st.dates(date(2020, 1, 1), date(2030, 12, 31)),
       a=st.integers(-30, 800), b=st.integers(-30, 800))
def test_fee_is_an_int_and_monotone_in_days(cls: str, amount: int, due: date, a: int,
                                            b: int) -> None:
    early, late = sorted((a, b))
    first = late_fee(cls, amount, due, due + timedelta(days=early))
    second = late_fee(cls, amount, due, due + timedelta(days=late))
    assert type(first.fee_fen) is int and type(second.fee_fen) is int
    assert first.fee_fen <= second.fee_fen
    assert first.days == max(early, 0) and second.days == max(late, 0)
    if second.days and amount:
        assert second.fee_fen >= 100

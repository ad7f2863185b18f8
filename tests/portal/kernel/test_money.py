from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.kernel.money import (
    MoneyFormatError,
    fen_to_yuan_str,
    format_yuan,
    parse_yuan,
    round_late_fee,
    round_to_fen,
)


@pytest.mark.parametrize(("yuan", "fen"), [
    ("55.80", 5580),
    ("0.005", 1),        # half a fen rounds up (四舍五入), not to even
    ("0.015", 2),
    ("0.025", 3),        # banker's rounding would give 2
    ("0.0049", 0),
    ("117.192", 11719),
    ("32.28", 3228),
])
def test_round_to_fen_is_half_up(yuan: str, fen: int) -> None:
    assert round_to_fen(Decimal(yuan)) == fen


def test_round_to_fen_refuses_floats_and_nan() -> None:
    with pytest.raises(TypeError):
        round_to_fen(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        round_to_fen(Decimal("NaN"))


def test_worked_example_from_zhejiang_tier_crossing() -> None:
    # year-to-date 2700 kWh, 100 kWh this month: 60 x 0.538 + 40 x 0.588 = 55.80 yuan
    lines = [round_to_fen(Decimal(60) * Decimal("0.538")),
             round_to_fen(Decimal(40) * Decimal("0.588"))]
    assert lines == [3228, 2352]
    assert sum(lines) == 5580


@pytest.mark.parametrize(("text", "fen"), [
    ("0", 0), ("0.01", 1), ("12", 1200), ("12.3", 1230), ("12.30", 1230), ("1234.56", 123456),
    ("100000000.00", 10_000_000_000),
])
def test_parse_yuan_accepts_plain_amounts(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize("text", [
    "", " 1", "1 ", "-1", "+1", "1.234", "1e3", "01", ".5", "1.", "1,000", "１２", "NaN",
    "0x10", "1_000", "99999999999999.00",
])
def test_parse_yuan_rejects_anything_else(text: str) -> None:
    with pytest.raises(MoneyFormatError):
        parse_yuan(text)


def test_parse_yuan_rejects_non_text() -> None:
    with pytest.raises(MoneyFormatError):
        parse_yuan(12.5)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**13))
def test_yuan_string_round_trips(fen: int) -> None:
    assert parse_yuan(fen_to_yuan_str(fen)) == fen


@pytest.mark.parametrize(("fen", "shown"), [
    (0, "0.00"), (5, "0.05"), (123456, "1,234.56"), (-250, "-2.50"), (100000000, "1,000,000.00"),
])
def test_format_yuan(fen: int, shown: str) -> None:
    assert format_yuan(fen) == shown


def test_fen_must_be_int() -> None:
    with pytest.raises(TypeError):
        fen_to_yuan_str(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fen_to_yuan_str(True)


@pytest.mark.parametrize(("fen", "rounded"), [
    (Decimal("150.5"), 151), (Decimal("150.4999"), 150), (Decimal("3703.701"), 3704),
    (Decimal("0.5"), 1), (Decimal(0), 0),
])
def test_round_late_fee_rounds_the_total_half_up(fen: Decimal, rounded: int) -> None:
    assert round_late_fee(fen) == rounded


def test_round_late_fee_takes_a_finite_decimal() -> None:
    with pytest.raises(TypeError):
        round_late_fee(150.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        round_late_fee(Decimal("Infinity"))

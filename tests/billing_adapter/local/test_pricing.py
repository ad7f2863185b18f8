"""Hand-worked bills for the shipped tariffs (each figure computed on paper, in the comments) and
properties of the pricing rules."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_adapter.local.pricing import Quote, Usage, UsageError, apportion, quote, split_tiers
from billing_adapter.local.tariffs import TariffBook, TariffError, parse_tariff

D = Decimal
BOOK = TariffBook.shipped()
NOV = (date(2026, 11, 1), date(2026, 11, 30))


def summary(q: Quote) -> list[tuple[str, int | None, str | None, Decimal | None, Decimal | None,
                                    int]]:
    return [(line.kind, line.tier, line.register, line.kwh, line.unit_price, line.amount_fen)
            for line in q.lines]


def test_domain_example_zhejiang_2700_so_far_plus_100() -> None:
    # 100 x 0.538 = 53.80; 40 kWh above 2760 x 0.05 = 2.00; = 60 x 0.538 + 40 x 0.588 = 55.80
    q = quote(BOOK, "zhejiang-residential", *NOV, Usage(D(100)), prior_kwh=D(2700))
    assert q.total_fen == 5580
    assert summary(q) == [("energy", None, None, D(100), D("0.538"), 5380),
                          ("tier_increment", 2, None, D(40), D("0.05"), 200)]
    assert q.lines[0].description == "电度电费：100 kWh × 0.538 元/kWh = 53.80 元"
    assert q.lines[1].description == ("第2档加价：本阶梯年度累计2760至4800 kWh之间的40 kWh × "
                                      "0.05 元/kWh = 2.00 元")


def test_zhejiang_crossing_into_the_third_tier() -> None:
    # 200 x 0.538 = 107.60; 100 (4700-4800) x 0.05 = 5.00; 100 above 4800 x 0.30 = 30.00
    # = 100 x 0.588 + 100 x 0.838 = 142.60
    q = quote(BOOK, "zhejiang-residential", *NOV, Usage(D(200)), prior_kwh=D(4700))
    assert q.total_fen == 14260
    assert [(t, k, a) for _kind, t, _r, k, _p, a in summary(q)] == [
        (None, D(200), 10760), (2, D(100), 500), (3, D(100), 3000)]
    assert "超过4800 kWh的100 kWh × 0.3 元/kWh = 30.00 元" in q.lines[2].description


def test_zhejiang_peak_valley_with_the_increment_on_both() -> None:
    # peak 58 x 0.568 = 32.944 -> 32.94; valley 42 x 0.288 = 12.096 -> 12.10;
    # 40 kWh above 2760 x 0.05 = 2.00 (the increment adds to each TOU price); total 47.04
    q = quote(BOOK, "zhejiang-residential", *NOV,
              Usage(D(100), peak_kwh=D(58), valley_kwh=D(42)), prior_kwh=D(2700))
    assert summary(q) == [("energy", None, "peak", D(58), D("0.568"), 3294),
                          ("energy", None, "valley", D(42), D("0.288"), 1210),
                          ("tier_increment", 2, None, D(40), D("0.05"), 200)]
    assert q.total_fen == 4704
    assert q.lines[0].description == "峰段电费：58 kWh × 0.568 元/kWh = 32.94 元"


def test_zhejiang_tier_year_boundary_restarts_the_count() -> None:
    # December: 2750 so far + 100 -> 90 above 2760: 53.80 + 4.50 = 58.30
    december = quote(BOOK, "zhejiang-residential", date(2026, 12, 1), date(2026, 12, 31),
                     Usage(D(100)), prior_kwh=D(2750))
    assert december.total_fen == 5830
    # January starts a new tier year, so nothing is billed before it: all 100 kWh are tier 1
    start, end = BOOK.tier_year("zhejiang-residential", date(2027, 1, 1)) or (None, None)
    assert (start, end) == (date(2027, 1, 1), date(2027, 12, 31))
    january = quote(BOOK, "zhejiang-residential", date(2027, 1, 1), date(2027, 1, 31),
                    Usage(D(100)), prior_kwh=D(0))
    assert summary(january) == [("energy", None, None, D(100), D("0.538"), 5380)]


MID_YEAR = """
code = "mid-year"
customer_class = "residential"
[[versions]]
effective_from = 2020-01-01
thresholds = "annual"
tier_year_start = "11-16"
tier_kwh = [2760, 4800]
tier_increments = [0.05, 0.30]
prices = {base = 0.538}
"""


def test_a_tier_year_starting_inside_the_period_splits_it_and_restarts_the_count() -> None:
    # Nov 1-15 and Nov 16-30 are 15 days each: 300 kWh -> 150 + 150.
    # Before the 16th: 2750 + 150 -> 140 above 2760 x 0.05 = 7.00; 150 x 0.538 = 80.70.
    # From the 16th the count restarts at 0: 150 x 0.538 = 80.70. Total 168.40.
    book = TariffBook.of(parse_tariff(MID_YEAR))
    q = quote(book, "mid-year", *NOV, Usage(D(300)), prior_kwh=D(2750))
    assert summary(q) == [("energy", None, None, D(150), D("0.538"), 8070),
                          ("tier_increment", 2, None, D(140), D("0.05"), 700),
                          ("energy", None, None, D(150), D("0.538"), 8070)]
    assert q.total_fen == 16840
    assert "（2026-11-16至2026-11-30，15天）" in q.lines[2].description


@pytest.mark.parametrize(("kwh", "total_fen", "increments"), [
    (D(240), 11719, []),                        # 240 x 0.4883 = 117.192 -> 117.19
    (D(241), 11768 + 5, [(2, D(1))]),           # 241 x 0.4883 = 117.6803 -> 117.68; + 0.05
    (D(400), 19532 + 800, [(2, D(160))]),       # 195.32 + 160 x 0.05
    # 450 x 0.4883 = 219.735 -> 219.74 (half up); 160 x 0.05 = 8.00; 50 x 0.30 = 15.00
    # (= 240 x 0.4883 + 160 x 0.5383 + 50 x 0.7883 = 117.19 + 86.13 + 39.42 = 242.74)
    (D(450), 24274, [(2, D(160)), (3, D(50))]),
    (D(0), 0, []),
])
def test_beijing_monthly_tiers(kwh: Decimal, total_fen: int,
                               increments: list[tuple[int, Decimal]]) -> None:
    q = quote(BOOK, "beijing-residential", *NOV, Usage(kwh), prior_kwh=D(99999))
    assert q.total_fen == total_fen  # prior_kwh does not matter for monthly thresholds
    assert [(line.tier, line.kwh) for line in q.lines[1:]] == increments
    assert q.lines[0].kwh == kwh


PRICE_CHANGE = """
code = "bj-change"
customer_class = "residential"
[[versions]]
effective_from = 2012-07-01
thresholds = "monthly"
tier_kwh = [240, 400]
tier_increments = [0.05, 0.30]
prices = {base = 0.4883}
[[versions]]
effective_from = 2026-10-16
thresholds = "monthly"
tier_kwh = [240, 400]
tier_increments = [0.05, 0.30]
prices = {base = 0.5}
seasons = []
"""


def test_price_change_mid_period_splits_by_days_and_keeps_counting() -> None:
    # October has 31 days: 1-15 (15 days) and 16-31 (16 days).
    # 300 kWh: 300 x 15/31 = 145.161... -> 145.16 kWh, the rest 154.84 kWh.
    # 145.16 x 0.4883 = 70.881628 -> 70.88; running 145.16, below 240.
    # 154.84 x 0.5 = 77.42; running 145.16 -> 300: 60 kWh above 240 x 0.05 = 3.00
    book = TariffBook.of(parse_tariff(PRICE_CHANGE))
    q = quote(book, "bj-change", date(2026, 10, 1), date(2026, 10, 31), Usage(D(300)))
    assert summary(q) == [("energy", None, None, D("145.16"), D("0.4883"), 7088),
                          ("energy", None, None, D("154.84"), D("0.5"), 7742),
                          ("tier_increment", 2, None, D(60), D("0.05"), 300)]
    assert q.total_fen == 15130
    assert q.lines[0].description == ("电度电费（2026-10-01至2026-10-15，15天）：按天数分摊"
                                      "145.16 kWh × 0.4883 元/kWh = 70.88 元")


def test_business_tariffs_have_no_tiers() -> None:
    # 400 x 1.0125 = 405.00; 350 x 0.6508 = 227.78; 250 x 0.3192 = 79.80
    tou = quote(BOOK, "zhejiang-business-tou", *NOV,
                Usage(D(1000), peak_kwh=D(400), flat_kwh=D(350), valley_kwh=D(250)))
    assert [line.amount_fen for line in tou.lines] == [40500, 22778, 7980]
    assert tou.total_fen == 71258
    flat = quote(BOOK, "zhejiang-business-flat", *NOV, Usage(D(100000)))
    assert summary(flat) == [("energy", None, None, D(100000), D("0.6508"), 6508000)]


SEASONAL = """
code = "seasonal"
customer_class = "residential"
[[versions]]
effective_from = 2020-01-01
thresholds = "monthly"
tier_kwh = [200, 400]
tier_increments = [0.05, 0.30]
seasons = [{months = [7, 8], tier_kwh = [260, 600]}]
prices = {base = 0.5}
"""


def test_seasonal_thresholds_apply_in_their_months() -> None:
    book = TariffBook.of(parse_tariff(SEASONAL))
    july = quote(book, "seasonal", date(2026, 7, 1), date(2026, 7, 31), Usage(D(300)))
    june = quote(book, "seasonal", date(2026, 6, 1), date(2026, 6, 30), Usage(D(300)))
    assert [(line.tier, line.kwh) for line in july.lines[1:]] == [(2, D(40))]
    assert [(line.tier, line.kwh) for line in june.lines[1:]] == [(2, D(100))]


@pytest.mark.parametrize(("code", "usage", "error"), [
    ("zhejiang-business-tou", Usage(D(10)), "time-of-use: give the peak/flat/valley kWh"),
    ("zhejiang-residential", Usage(D(10), D(5), D(3), D(2)), "has no flat price"),
])
def test_usage_the_tariff_cannot_price(code: str, usage: Usage, error: str) -> None:
    with pytest.raises(UsageError, match=error):
        quote(BOOK, code, *NOV, usage)


def test_bad_usage_and_periods_are_refused() -> None:
    with pytest.raises(UsageError, match="add up"):
        Usage(D(100), peak_kwh=D(50), valley_kwh=D(40))
    with pytest.raises(UsageError, match=">= 0"):
        Usage(D(-1))
    with pytest.raises(UsageError, match=">= 0"):
        Usage(D("NaN"))
    with pytest.raises(UsageError, match="ends before it starts"):
        quote(BOOK, "beijing-residential", NOV[1], NOV[0], Usage(D(1)))
    with pytest.raises(TariffError, match="unknown tariff"):
        quote(BOOK, "nowhere", *NOV, Usage(D(1)))
    with pytest.raises(TariffError, match="not in force"):
        quote(BOOK, "zhejiang-business-tou", date(2010, 1, 1), date(2010, 1, 31), Usage(D(1)))
    with pytest.raises(TypeError, match="Usage"):
        quote(BOOK, "beijing-residential", *NOV, D(1))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [100.0, 100, "100"])
def test_a_float_or_any_non_decimal_never_reaches_a_money_path(bad: object) -> None:
    with pytest.raises(TypeError, match="Decimal"):
        Usage(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Decimal"):
        Usage(D(100), peak_kwh=bad, valley_kwh=D(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Decimal"):
        quote(BOOK, "zhejiang-residential", *NOV, Usage(D(1)), prior_kwh=bad)  # type: ignore[arg-type]


# --- properties -------------------------------------------------------------------------------

kwh = st.decimals(min_value=0, max_value=20000, places=2, allow_nan=False, allow_infinity=False)
bounds = st.lists(st.integers(1, 10000), min_size=0, max_size=4, unique=True).map(
    lambda xs: tuple(D(x) for x in sorted(xs)))


@given(already=kwh, amount=kwh, tiers=bounds)
def test_tier_split_conserves_kwh_and_respects_the_bounds(already: Decimal, amount: Decimal,
                                                          tiers: tuple[Decimal, ...]) -> None:
    parts = split_tiers(already, amount, tiers)
    assert sum((k for _t, k in parts), D(0)) == amount
    assert all(k > 0 for _t, k in parts)
    assert [t for t, _k in parts] == sorted({t for t, _k in parts})
    edges = (D(0), *tiers, None)
    for tier, part in parts:  # each part fits in its band
        lower, upper = edges[tier - 1], edges[tier]
        assert lower is not None
        assert part <= (upper - lower if upper is not None else part)


@given(amount=kwh, days=st.lists(st.integers(1, 31), min_size=1, max_size=4))
def test_apportioning_by_days_conserves_kwh(amount: Decimal, days: list[int]) -> None:
    shares = apportion(amount, days)
    assert sum(shares, D(0)) == amount
    assert all(share >= 0 for share in shares)


CHANGING = TariffBook.of(parse_tariff(PRICE_CHANGE) + parse_tariff(MID_YEAR)) .versions
PROPERTY_BOOK = TariffBook({**BOOK.versions, **CHANGING})


@st.composite
def usages(draw: st.DrawFn) -> tuple[str, Usage]:
    code = draw(st.sampled_from(sorted(PROPERTY_BOOK.versions)))
    total = draw(kwh)
    registers = {"zhejiang-business-tou": ("peak", "flat", "valley"),
                 "zhejiang-residential": ("peak", "valley")}.get(code, ())
    if registers and (code == "zhejiang-business-tou" or draw(st.booleans())):
        first = draw(st.decimals(min_value=0, max_value=total, places=2))
        second = draw(st.decimals(min_value=0, max_value=total - first, places=2))
        parts = [first, second, total - first - second] if len(registers) == 3 else [
            first, total - first]
        return code, Usage(total, **{f"{r}_kwh": p for r, p in zip(registers, parts,
                                                                      strict=True)})
    return code, Usage(total)


@given(case=usages(), start=st.dates(date(2025, 1, 1), date(2027, 12, 1)),
       length=st.integers(0, 40), prior=kwh)
def test_total_is_the_sum_of_integer_lines_and_every_kwh_is_billed(
        case: tuple[str, Usage], start: date, length: int, prior: Decimal) -> None:
    code, usage = case
    q = quote(PROPERTY_BOOK, code, start, start + timedelta(days=length), usage, prior)
    assert all(type(line.amount_fen) is int for line in q.lines)
    assert all(isinstance(line.kwh, Decimal) and isinstance(line.unit_price, Decimal)
               for line in q.lines)
    assert type(q.total_fen) is int
    assert q.total_fen == sum(line.amount_fen for line in q.lines)
    energy = [line for line in q.lines if line.kind == "energy"]
    assert sum((line.kwh or D(0) for line in energy), D(0)) == usage.kwh
    increments = [line for line in q.lines if line.kind == "tier_increment"]
    assert sum((line.kwh or D(0) for line in increments), D(0)) <= usage.kwh


@given(code=st.sampled_from(["beijing-residential", "zhejiang-residential",
                             "zhejiang-business-flat"]), a=kwh, b=kwh, prior=kwh)
def test_more_kwh_never_costs_less(code: str, a: Decimal, b: Decimal, prior: Decimal) -> None:
    low, high = sorted((a, b))
    assert (quote(BOOK, code, *NOV, Usage(low), prior).total_fen
            <= quote(BOOK, code, *NOV, Usage(high), prior).total_fen)

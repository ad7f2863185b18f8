from datetime import date
from decimal import Decimal

import pytest

from billing_adapter.local.tariffs import TariffBook, TariffError, load_tariffs, parse_tariff

SEASONAL = """
code = "seasonal-test"
customer_class = "residential"
[[versions]]
effective_from = 2020-01-01
thresholds = "monthly"
tier_kwh = [200, 400]
tier_increments = [0.05, 0.30]
seasons = [{months = [7, 8], tier_kwh = [260, 600]}]
[versions.prices]
base = 0.5
"""


def test_shipped_tariffs_carry_the_published_figures() -> None:
    book = TariffBook.shipped()
    assert book.codes() == ["beijing-residential", "zhejiang-business-flat",
                            "zhejiang-business-tou", "zhejiang-residential"]
    beijing = book.version_on("beijing-residential", date(2026, 11, 1))
    assert (beijing.thresholds, beijing.tier_kwh) == ("monthly", (Decimal(240), Decimal(400)))
    assert beijing.prices == {"base": Decimal("0.4883")}
    assert beijing.tier_increments == (Decimal("0.05"), Decimal("0.30"))
    zhejiang = book.version_on("zhejiang-residential", date(2026, 11, 1))
    assert zhejiang.tier_kwh == (Decimal(2760), Decimal(4800))
    assert zhejiang.prices == {"base": Decimal("0.538"), "peak": Decimal("0.568"),
                               "valley": Decimal("0.288")}
    assert book.version_on("zhejiang-business-tou", date(2026, 11, 1)).thresholds == "none"
    for versions in book.versions.values():
        for version in versions:
            assert version.source, f"{version.code} documents its source"
            assert all(isinstance(p, Decimal) for p in version.prices.values())


def test_tier_year_is_annual_only_and_follows_the_configured_start() -> None:
    book = TariffBook.shipped()
    assert book.tier_year("zhejiang-residential", date(2026, 11, 15)) == (
        date(2026, 1, 1), date(2026, 12, 31))
    assert book.tier_year("beijing-residential", date(2026, 11, 15)) is None
    assert book.tier_year("zhejiang-business-tou", date(2026, 11, 15)) is None
    july = TariffBook.of(parse_tariff(SEASONAL.replace('"monthly"', '"annual"')
                                      .replace("seasons = [{months = [7, 8], "
                                               "tier_kwh = [260, 600]}]",
                                               'tier_year_start = "07-15"')))
    assert july.tier_year("seasonal-test", date(2026, 7, 14)) == (
        date(2025, 7, 15), date(2026, 7, 14))
    assert july.tier_year("seasonal-test", date(2026, 7, 15)) == (
        date(2026, 7, 15), date(2027, 7, 14))


def test_seasonal_bounds_replace_the_default_in_their_months() -> None:
    version = TariffBook.of(parse_tariff(SEASONAL)).version_on("seasonal-test", date(2026, 1, 1))
    assert version.bounds_for_month(7) == (Decimal(260), Decimal(600))
    assert version.bounds_for_month(9) == (Decimal(200), Decimal(400))


def test_version_in_force_and_unknown_codes() -> None:
    book = TariffBook.shipped()
    assert not book.has("shanghai-residential")
    with pytest.raises(TariffError, match="unknown tariff"):
        book.version_on("shanghai-residential", date(2026, 1, 1))
    with pytest.raises(TariffError, match="not in force on 2010-01-01"):
        book.tier_year("zhejiang-residential", date(2010, 1, 1))


@pytest.mark.parametrize(("text", "error"), [
    ("code = 'x'\n[[versions]]\neffective_from = 2020-01-01\nthresholds = 'weekly'",
     "thresholds must be"),
    ("code = 'x'\n[[versions]]\nthresholds = 'none'\nprices = {base = 1}", "effective_from"),
    ("code = 'x'\n[[versions]]\neffective_from = 2020-01-01\nthresholds = 'monthly'\n"
     "tier_kwh = [400, 240]\ntier_increments = [0.05, 0.3]\nprices = {base = 1}", "increasing"),
    ("code = 'x'\n[[versions]]\neffective_from = 2020-01-01\nthresholds = 'monthly'\n"
     "tier_kwh = [240]\ntier_increments = []\nprices = {base = 1}", "same length"),
    ("code = 'x'\n[[versions]]\neffective_from = 2020-01-01\nthresholds = 'none'\n"
     "tier_kwh = [240]\ntier_increments = [0.05]\nprices = {base = 1}", "tiers need"),
    ("code = 'x'\n[[versions]]\neffective_from = 2020-01-01\nthresholds = 'annual'\n"
     "tier_year_start = '02-29'\ntier_kwh = [240]\ntier_increments = [0.05]\n"
     "prices = {base = 1}", "MM-DD"),
    ("code = 'x'\n[[versions]]\neffective_from = 2020-01-01\nthresholds = 'none'\n"
     "prices = {evening = 1}", "prices must name"),
    ("code = 'x'\n[[versions]]\neffective_from = 2020-01-01\nthresholds = 'none'\n"
     "prices = {base = -1}", ">= 0"),
    ("code = 'x'\n[[versions]]\neffective_from = 2020-01-01\nthresholds = 'none'\n"
     "prices = {base = 'cheap'}", "not a number"),
    ("code = 'x'\n[[versions]]\neffective_from = 2020-01-01\nthresholds = 'none'\n"
     "prices = {base = true}", "decimal number"),
    ("code = 'x'\n[[versions]]\neffective_from = 2020-01-01\nthresholds = 'annual'\n"
     "tier_kwh = [240]\ntier_increments = [0.05]\nprices = {base = 1}\n"
     "seasons = [{months = [7], tier_kwh = [300]}]", "seasons need"),
    ("name = 'no code'", "needs a code"),
    ("code = = 'x'", "not a tariff file"),
])
def test_malformed_tariff_files_are_refused_with_a_reason(text: str, error: str) -> None:
    with pytest.raises(TariffError, match=error):
        parse_tariff(text)


def test_two_versions_on_one_day_are_refused() -> None:
    versions = parse_tariff(SEASONAL)
    with pytest.raises(TariffError, match="same day"):
        TariffBook.of(versions + versions)


def test_loading_into_the_database_is_idempotent_and_round_trips(session) -> None:
    assert TariffBook.from_db(session) == TariffBook({})
    assert load_tariffs(session) == 4
    assert load_tariffs(session) == 0
    session.commit()
    assert TariffBook.from_db(session) == TariffBook.shipped()
    seasonal = TariffBook.of(parse_tariff(SEASONAL))
    assert load_tariffs(session, seasonal) == 1
    assert TariffBook.from_db(session).version_on("seasonal-test", date(2026, 7, 1)) == (
        seasonal.version_on("seasonal-test", date(2026, 7, 1)))
    changed = TariffBook.of(parse_tariff(SEASONAL.replace("base = 0.5", "base = 0.6")))
    assert load_tariffs(session, changed) == 1
    session.commit()
    price = TariffBook.from_db(session).version_on("seasonal-test", date(2026, 7, 1)).prices
    assert price == {"base": Decimal("0.6")}

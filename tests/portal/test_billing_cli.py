"""``flask billing quote`` and ``flask billing late-fee`` as staff run them."""

import json

import pytest
from flask import Flask


@pytest.fixture
def run(app: Flask):  # type: ignore[no-untyped-def]
    runner = app.test_cli_runner()
    loaded = runner.invoke(args=["billing", "load-tariffs"])
    assert loaded.exit_code == 0, loaded.output
    assert "4 tariff versions written; 4 tariffs in the database." in loaded.output
    return lambda *args: runner.invoke(args=["billing", *args])


def test_load_tariffs_twice_writes_nothing_the_second_time(run) -> None:  # type: ignore[no-untyped-def]
    again = run("load-tariffs")
    assert "0 tariff versions written; 4 tariffs in the database." in again.output


def test_quote_prints_the_domain_example(run) -> None:  # type: ignore[no-untyped-def]
    result = run("quote", "--tariff", "zhejiang-residential", "--period", "2026-11",
                 "--kwh", "100", "--ytd-kwh", "2700")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["total_fen"] == 5580
    assert [(line["kind"], line["tier"], line["kwh"], line["unit_price"], line["amount_fen"])
            for line in body["lines"]] == [("energy", None, "100", "0.538", 5380),
                                           ("tier_increment", 2, "40", "0.05", 200)]
    assert body["lines"][0]["description"] == "电度电费：100 kWh × 0.538 元/kWh = 53.80 元"


def test_quote_with_tou_registers(run) -> None:  # type: ignore[no-untyped-def]
    result = run("quote", "--tariff", "zhejiang-business-tou", "--period", "2026-11",
                 "--kwh", "1000", "--peak-kwh", "400", "--flat-kwh", "350",
                 "--valley-kwh", "250")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["total_fen"] == 71258
    assert [line["register"] for line in body["lines"]] == ["peak", "flat", "valley"]


def test_quote_beijing_three_tiers(run) -> None:  # type: ignore[no-untyped-def]
    result = run("quote", "--tariff", "beijing-residential", "--period", "2026-02",
                 "--kwh", "450")
    assert json.loads(result.output)["total_fen"] == 24274


def test_late_fee_across_a_year_end(run) -> None:  # type: ignore[no-untyped-def]
    result = run("late-fee", "--class", "business", "--amount-fen", "100000",
                 "--due", "2025-12-25", "--paid", "2026-01-05")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"late_fee_fen": 2700, "days": 11}
    on_time = run("late-fee", "--class", "residential", "--amount-fen", "100000",
                  "--due", "2025-12-25", "--paid", "2025-12-25")
    assert json.loads(on_time.output) == {"late_fee_fen": 0, "days": 0}


@pytest.mark.parametrize(("args", "message"), [
    (["quote", "--tariff", "shanghai", "--period", "2026-11", "--kwh", "1"],
     "unknown tariff 'shanghai' (known: beijing-residential, zhejiang-business-flat, "
     "zhejiang-business-tou, zhejiang-residential)"),
    (["quote", "--tariff", "beijing-residential", "--period", "2026-11", "--kwh", "-5"],
     "'-5' must be a number of kWh >= 0"),
    (["quote", "--tariff", "beijing-residential", "--period", "2026-11", "--kwh", "lots"],
     "'lots' is not a number of kWh"),
    (["quote", "--tariff", "beijing-residential", "--period", "2026-13", "--kwh", "1"],
     "'2026-13' is not a period like 2026-11"),
    (["quote", "--tariff", "zhejiang-residential", "--period", "2026-11", "--kwh", "100",
      "--peak-kwh", "60", "--valley-kwh", "30"],
     "peak, flat and valley kWh must add up to the total kWh"),
    (["quote", "--tariff", "zhejiang-business-tou", "--period", "2026-11", "--kwh", "100"],
     "tariff 'zhejiang-business-tou' is time-of-use: give the peak/flat/valley kWh"),
    (["quote", "--tariff", "beijing-residential", "--period", "2026-11", "--kwh", "100",
      "--ytd-kwh", "50"],
     "--ytd-kwh applies only to tariffs with annual thresholds, not 'beijing-residential'"),
    (["quote", "--tariff", "beijing-residential", "--period", "2026-11"],
     "Missing option '--kwh'"),
    (["late-fee", "--class", "industrial", "--amount-fen", "1", "--due", "2026-01-01",
      "--paid", "2026-02-01"], "'industrial' is not one of 'residential', 'business'"),
    (["late-fee", "--class", "business", "--amount-fen", "-1", "--due", "2026-01-01",
      "--paid", "2026-02-01"], "-1 is not in the range x>=0"),
    (["late-fee", "--class", "business", "--amount-fen", "12.5", "--due", "2026-01-01",
      "--paid", "2026-02-01"], "'12.5' is not a valid integer"),
    (["late-fee", "--class", "business", "--amount-fen", "1", "--due", "2026-02-30",
      "--paid", "2026-03-01"], "'2026-02-30' is not a date like 2026-12-25"),
])
def test_bad_arguments_get_one_clear_line(run, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = run(*args)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and message in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_quote_works_on_a_database_nobody_loaded_tariffs_into(app) -> None:
    result = app.test_cli_runner().invoke(args=[
        "billing", "quote", "--tariff", "zhejiang-business-flat", "--period", "2026-11",
        "--kwh", "1000"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total_fen"] == 65080  # 1000 x 0.6508

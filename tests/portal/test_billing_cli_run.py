"""``flask --app wsgi billing run --period YYYY-MM`` (portal/billing_cli.py): the bill run."""

from datetime import date
from decimal import Decimal

from portal.extensions import db
from portal.readings.models import Reading, ReadingSource, ReadingStatus
from tests import factories


def _accounts_with_readings(app, clock, usages: list[int]) -> None:
    with app.app_context():
        for n, kwh in enumerate(usages, start=1):
            acct = factories.account(db.session, clock, account_no=f"99000000{n:02d}",
                                     meter_no=f"9900000{n:05d}")
            for period, value in (("2026-10", 1000), ("2026-11", 1000 + kwh)):
                db.session.add(Reading(
                    meter_id=acct.meters[0].id, period=period, read_on=date(2026, 11, 28),
                    value_kwh=Decimal(value), source=ReadingSource.UTILITY,
                    status=ReadingStatus.ACCEPTED, created_at=clock.now()))
        db.session.commit()


def test_run_bills_the_month_then_says_there_is_nothing_to_do(app, clock) -> None:
    _accounts_with_readings(app, clock, [300, 100, 0])
    runner = app.test_cli_runner()
    first = runner.invoke(args=["billing", "run", "--period", "2026-11", "--chunk-size", "2"])
    assert first.exit_code == 0, first.output
    assert "Billing 2026-11" in first.output  # the progress bar's label
    # 300 kWh: 149.49 yuan; 100 kWh: 48.83 yuan; 0 kWh is held
    assert first.output.strip().endswith(
        "2026-11: 2 bills issued (198.32 yuan), 1 held for review, 0 billed before this run.")
    second = runner.invoke(args=["billing", "run", "--period", "2026-11"])
    assert second.exit_code == 0
    assert second.output.strip().endswith(
        "Nothing to do for 2026-11: 3 accounts were billed already; the others have no "
        "accepted reading for the month.")


def test_run_refuses_a_malformed_period_in_one_line(app) -> None:
    result = app.test_cli_runner().invoke(args=["billing", "run", "--period", "2026-13"])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        "Error: Invalid value for '--period': '2026-13' is not a period like 2026-11"]

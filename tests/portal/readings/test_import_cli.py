"""``flask readings import FILE.csv``: all rows or none, with a report per bad row."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from portal.extensions import db
from portal.readings.models import Reading, ReadingSource, ReadingStatus

from .conftest import IN_WINDOW, make_world

HEADER = "account_no,meter_no,period,read_on,value_kwh,peak_kwh,flat_kwh,valley_kwh\n"


def _setup(app, clock) -> None:
    clock.set(IN_WINDOW)
    with app.app_context():
        make_world(db.session, clock)
        make_world(db.session, clock, "9900000002", "13900000002", "990000005678", tou=True,
                   tariff="zhejiang-residential")
        db.session.commit()


def _run(app, tmp_path: Path, text: str):
    path = tmp_path / "readings.csv"
    path.write_text(text, encoding="utf-8")
    return app.test_cli_runner().invoke(args=["readings", "import", str(path)])


def _imported(app) -> list[tuple[str, str, Decimal, ReadingStatus]]:
    with app.app_context():
        return [(r.period, r.flag_reason or "", r.value_kwh, r.status) for r in db.session.scalars(
            sa.select(Reading).where(Reading.source == ReadingSource.IMPORT)
            .order_by(Reading.id))]


def test_a_good_file_is_imported_with_the_same_rules(app, clock, tmp_path) -> None:
    _setup(app, clock)
    result = _run(app, tmp_path, "\ufeff" + HEADER
                  + "9900000001,990000001234,2026-12,2026-12-28,1100,,,\n"
                  + "9900000001,990000001234,2027-01,2027-01-28,1990.5,,,\n"  # 890 kWh: high
                  + "9900000002,990000005678,2026-12,2026-12-28,1100,660,,440\n")
    assert result.exit_code == 0, result.output
    assert "3 readings imported: 2 accepted, 1 flagged for review." in result.output
    assert "Importing readings" in result.output  # the progress bar
    rows = _imported(app)
    assert [(p, s) for p, _f, _v, s in rows] == [
        ("2026-12", ReadingStatus.ACCEPTED), ("2027-01", ReadingStatus.FLAGGED),
        ("2026-12", ReadingStatus.ACCEPTED)]
    assert rows[1][1].startswith("usage_high")


def test_bad_rows_are_reported_and_nothing_is_imported(app, clock, tmp_path) -> None:
    _setup(app, clock)
    result = _run(app, tmp_path, HEADER
                  + "9900000001,990000001234,2026-12,2026-12-28,1100,,,\n"     # good
                  + "9900000001,990000009999,2026-12,2026-12-28,1100,,,\n"     # unknown meter
                  + "9900000001,990000001234,2026-13,2026-12-28,1100,,,\n"     # bad period
                  + "9900000001,990000001234,2027-01,28/01/2027,1200,,,\n"     # bad date
                  + "9900000001,990000001234,2027-02,2027-02-28,12o0,,,\n"     # not a number
                  + "9900000001,990000001234,2026-12,2026-12-29,1101,,,\n"     # already read
                  + "9900000002,990000005678,2026-12,2026-12-28,1100,,,\n")    # TOU: registers
    assert result.exit_code == 1
    out = result.output
    assert "row 3 (meter_no): There is no such meter on this account." in out
    assert "row 4 (period): The period must be a month written YYYY-MM" in out
    assert "row 5 (read_on): The date must be written YYYY-MM-DD" in out
    assert "row 6 (value_kwh): Enter a number such as 1234.5" in out
    assert "row 7: This meter already has a reading for this month." in out
    assert "row 8 (peak_kwh): Enter the number shown on the meter" in out
    assert "6 bad rows of 7; nothing was imported" in out
    assert _imported(app) == []


def test_a_file_without_the_columns_is_refused(app, clock, tmp_path) -> None:
    _setup(app, clock)
    result = _run(app, tmp_path, "account,meter,value\n1,2,3\n")
    assert result.exit_code == 1
    assert "the header lacks account_no, meter_no, period, read_on, value_kwh" in result.output
    assert _imported(app) == []

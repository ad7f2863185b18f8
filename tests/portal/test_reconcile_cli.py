"""``flask reconcile`` by hand, and the daily beat task, on a statement file."""

from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from payments.channels.base import StatementFile
from payments.reconcile.models import Difference, Statement
from portal.celery_app import BEAT_SCHEDULE
from portal.extensions import db
from portal.payment_channels import CHANNELS_KEY
from portal.tasks import reconcile_statement
from tests.payments.fakes import FakeChannel
from tests.payments.reconcile.bills import BEIJING, wechat_bill, wechat_row

AT = datetime(2026, 12, 2, 9, tzinfo=BEIJING)


@pytest.fixture
def settings_overrides(tmp_path) -> dict[str, object]:
    return {"reconcile_dir": tmp_path / "statements"}


def test_reconcile_a_file_twice_then_a_new_version(app, tmp_path) -> None:
    bill = tmp_path / "bill.csv.gz"
    bill.write_bytes(wechat_bill([wechat_row("DF-UNKNOWN", 1234, AT)]))
    runner = app.test_cli_runner()
    args = ["reconcile", "--channel", "wechat", "--date", "2026-12-02", "--file", str(bill)]
    first = runner.invoke(args=args)
    assert first.exit_code == 0, first.output
    assert ("wechat 2026-12-02 version 1: 1 lines, payments 12.34 yuan, refunds 0.00 yuan; "
            "differences: channel_only 1; 补单 0.") in first.output
    again = runner.invoke(args=args)
    assert "was reconciled before; nothing changed." in again.output
    bill.write_bytes(wechat_bill([]))
    newer = runner.invoke(args=args)
    assert "version 2: 0 lines" in newer.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Statement)) == 2
        assert db.session.scalar(sa.select(Difference.status)).value == "superseded"
        assert len(list((tmp_path / "statements" / "wechat" / "2026-12-02").iterdir())) == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--channel", "wechat", "--date", "2026-13-01"], "is not a date like"),
    (["--channel", "paypal", "--date", "2026-12-01"], "'paypal' is not one of"),
    (["--channel", "wechat", "--date", "2026-12-01"], "channel wechat is not enabled"),
    (["--channel", "wechat", "--date", "2026-12-01", "--file", "BROKEN"], "bad_statement"),
])
def test_bad_input_is_one_line(app, tmp_path, args, message) -> None:
    broken = tmp_path / "broken.gz"
    broken.write_bytes(b"not a bill")
    args = [str(broken) if a == "BROKEN" else a for a in args]
    result = app.test_cli_runner().invoke(args=["reconcile", *args])
    assert result.exit_code != 0
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and message in error[0], result.output
    assert "Traceback" not in result.output


def test_the_daily_task_fetches_yesterday_from_the_channel(app, clock) -> None:
    fake = FakeChannel()
    yesterday = (clock.now().astimezone(BEIJING) - timedelta(days=1)).date()
    fake.statements[yesterday] = StatementFile(wechat_bill([wechat_row("DF-X", 5, AT)]),
                                               ".csv.gz")
    app.extensions[CHANNELS_KEY] = {"wechat": fake}
    with app.app_context():
        assert reconcile_statement("wechat") == 1
        assert reconcile_statement("wechat") == 0  # the same file again: nothing new
        assert reconcile_statement("alipay") == 0  # not enabled here
        assert db.session.scalar(sa.select(Statement.bill_date)) == date(2026, 12, 2)
    assert {e["args"] for k, e in BEAT_SCHEDULE.items() if k.startswith("reconcile-")} == {
        ("wechat",), ("alipay",), ("stripe",)}

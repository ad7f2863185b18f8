import sqlalchemy as sa

from portal.bills.models import Bill
from portal.extensions import db


def test_demo_seed_runs_once_and_prints_the_sign_ins(app) -> None:
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo", "seed"])
    assert first.exit_code == 0, first.output
    assert "Demo data created." in first.output
    assert "13800000001" in first.output and "dianfei-demo" in first.output
    assert "户号 1100000005, holder 张伟, meter last 4 digits 5678" in first.output
    with app.app_context():
        bills = db.session.scalar(sa.select(sa.func.count()).select_from(Bill))
    second = runner.invoke(args=["demo", "seed"])
    assert second.exit_code == 0
    assert "already there; nothing changed" in second.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Bill)) == bills == 120


def test_demo_seed_loads_the_shipped_tariffs_every_time(app) -> None:
    from billing_adapter.local.tariffs import TariffBook

    runner = app.test_cli_runner()
    assert runner.invoke(args=["demo", "seed"]).exit_code == 0
    with app.app_context():
        assert TariffBook.from_db(db.session) == TariffBook.shipped()

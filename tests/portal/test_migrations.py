"""One Alembic head, no drift between models and migrations, and the ledger's append-only rule."""

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from portal.extensions import db
from portal.ledger.models import EntryKind, LedgerEntry
from tests import factories

MIGRATIONS = Path(__file__).resolve().parents[2] / "portal" / "migrations"


def test_one_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1


def test_models_match_migrations(app) -> None:
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []


def test_ledger_refuses_update_and_delete(session, clock) -> None:
    account = factories.account(session, clock)
    from portal.ledger import service as ledger

    ledger.post(session, clock, account_id=account.id, kind=EntryKind.CHARGE, amount_fen=100,
                ref="r1", effective_on=clock.now().date())
    session.commit()
    for statement in (sa.update(LedgerEntry).values(amount_fen=1), sa.delete(LedgerEntry)):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            session.execute(statement)
        session.rollback()
    assert session.scalar(sa.select(LedgerEntry.amount_fen)) == 100


@pytest.mark.parametrize(("kind", "amount"), [
    (EntryKind.CHARGE, -5), (EntryKind.PAYMENT, 5), (EntryKind.ADJUSTMENT, 0),
])
def test_ledger_sign_must_match_kind(session, clock, kind, amount) -> None:
    from portal.ledger import service as ledger

    account = factories.account(session, clock)
    with pytest.raises(sa.exc.IntegrityError):
        ledger.post(session, clock, account_id=account.id, kind=kind, amount_fen=amount,
                    ref="bad", effective_on=clock.now().date())


def test_0005_carries_whole_reversals_over_and_back(tmp_path) -> None:
    """A posting reversed before 0005 (reversed_at) becomes one reversal of its whole amount."""
    from flask_migrate import downgrade, upgrade

    from portal.app import create_app
    from portal.settings import Settings

    app = create_app(Settings(env="test", database_url=f"sqlite:///{tmp_path / 'm.sqlite'}",
                              secret_key="x" * 40, broker_url="memory://"))
    with app.app_context():
        upgrade(revision="0004")
        with db.engine.begin() as conn:
            for sql in (
                "INSERT INTO districts (id, code, name, timezone) VALUES (1, 'd', 'd', 'UTC')",
                "INSERT INTO electricity_accounts (id, account_no, holder_name, address, "
                "district_id, customer_class, tariff_code, late_fee_waived, created_at) VALUES "
                "(1, '9900000001', 'h', 'a', 1, 'residential', 'beijing-residential', 0, "
                "'2026-12-01 00:00:00')",
                "INSERT INTO billing_postings (id, order_no, account_id, amount_fen, paid_at, "
                "channel, bill_periods, created_at, reversed_at, reversal_reason) VALUES "
                "(1, 'DF1', 1, 500, '2026-12-01 00:00:00', 'wechat', '', '2026-12-01 00:00:00', "
                "'2026-12-02 00:00:00', 'refund RF1'), (2, 'DF2', 1, 700, '2026-12-01 00:00:00', "
                "'wechat', '', '2026-12-01 00:00:00', NULL, NULL)",
            ):
                conn.exec_driver_sql(sql)
        upgrade(revision="0005")
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql(
                "SELECT reversal_no, posting_id, amount_fen, reason FROM billing_reversals"
            ).all() == [("DF1", 1, 500, "refund RF1")]
        downgrade(revision="0004")
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql(
                "SELECT id, reversed_at IS NOT NULL, reversal_reason FROM billing_postings "
                "ORDER BY id").all() == [(1, 1, "refund RF1"), (2, 0, None)]
        db.engine.dispose()

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

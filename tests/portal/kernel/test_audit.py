"""The audit log records who did what, and the database refuses to rewrite it."""

import pytest
import sqlalchemy as sa

from portal.kernel import audit
from portal.kernel.audit import Actor, AuditEntry
from tests import factories


def test_record_names_the_actor_and_keeps_the_details(session, clock) -> None:
    account = factories.account(session, clock)
    audit.record(session, clock, "bill.approve", "bill", 7, account_id=account.id,
                 details={"reason": "checked the meter photo"})
    audit.record(session, clock, "reconcile.run", "statement", "wechat:2026-12-02")
    session.commit()
    rows = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(r.actor, r.action, r.object_id, r.account_id) for r in rows] == [
        (Actor.SYSTEM, "bill.approve", "7", account.id),
        (Actor.SYSTEM, "reconcile.run", "wechat:2026-12-02", None),
    ]
    assert rows[0].details == {"reason": "checked the meter photo"}
    assert rows[0].at == clock.now()


def test_audit_log_refuses_update_and_delete(session, clock) -> None:
    audit.record(session, clock, "staff.create", "staff", 1)
    session.commit()
    for statement in (sa.update(AuditEntry).values(action="x"), sa.delete(AuditEntry)):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            session.execute(statement)
        session.rollback()
    assert session.scalar(sa.select(AuditEntry.action)) == "staff.create"

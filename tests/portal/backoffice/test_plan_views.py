"""Back-office plan pages over HTTP: terms above the approval threshold wait for a supervisor;
a collector can neither approve nor decline them; who decided is on the page and in the audit
log; bad terms are a 400 with words."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.kernel.audit import AuditEntry
from portal.plans.models import PaymentPlan, PlanStatus
from portal.plans.policy import PlanPolicy
from tests.helpers import FormClient, text_of

from .staffing import requested_plan, staff_login

ATTACHMENTS = Path(tempfile.gettempdir()) / "dianfei-test-plans"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"plans": PlanPolicy(approval_threshold_fen=5000, attachment_dir=ATTACHMENTS)}


def _plan(app, clock) -> int:
    with app.app_context():
        return requested_plan(db.session, clock, "1100000001", ATTACHMENTS).id  # bj-dongcheng


def _terms(web: FormClient, plan_id: int, **fields: str):
    data = {"installments": "3", "first_due_on": "2027-01-10", "note": ""} | fields
    return web.submit(f"/staff/plans/{plan_id}/propose", data, page=f"/staff/plans/{plan_id}")


def test_terms_above_the_threshold_wait_for_a_supervisor(app, web, clock, demo) -> None:
    plan_id = _plan(app, clock)
    staff_login(web, clock, "bj-collector")
    assert _terms(web, plan_id).status_code == 302
    page = text_of(web.get(f"/staff/plans/{plan_id}?lang=en"))
    assert "Waiting for a supervisor's approval" in page and "Approve the terms" not in page
    declined = web.submit(f"/staff/plans/{plan_id}/decline", {"reason": "no"},
                          page=f"/staff/plans/{plan_id}")
    assert declined.status_code == 403 and "only a supervisor" in text_of(declined)

    boss = FormClient(app.test_client())
    staff_login(boss, clock, "bj-supervisor")
    response = boss.submit(f"/staff/plans/{plan_id}/approve", {"note": "账目已核"},
                           page=f"/staff/plans/{plan_id}")
    assert response.status_code == 302
    page = text_of(boss.get(f"/staff/plans/{plan_id}?lang=en"))
    assert "Terms proposed" in page and "东城收费员" in page and "东城主管" in page
    again = boss.submit(f"/staff/plans/{plan_id}/approve", {}, page=f"/staff/plans/{plan_id}")
    assert again.status_code == 409
    with app.app_context():
        assert db.session.get(PaymentPlan, plan_id).status == PlanStatus.PROPOSED
        rows = db.session.execute(sa.select(AuditEntry.action, AuditEntry.staff_id)
                                  .order_by(AuditEntry.id)).all()
        assert [action for action, _s in rows] == ["plan.propose", "plan.approve"]
        assert rows[0][1] != rows[1][1]


def test_bad_terms_are_refused_with_words(app, web, clock, demo) -> None:
    plan_id = _plan(app, clock)
    staff_login(web, clock, "bj-collector")
    response = _terms(web, plan_id, first_due_on="2030-01-01")
    assert response.status_code == 400 and "首期还款日" in text_of(response)
    response = web.submit(f"/staff/plans/{plan_id}/decline", {"reason": ""},
                          page=f"/staff/plans/{plan_id}")
    assert response.status_code == 400 and "请说明拒绝该分期的原因" in text_of(response)
    with app.app_context():
        assert db.session.get(PaymentPlan, plan_id).status == PlanStatus.REQUESTED

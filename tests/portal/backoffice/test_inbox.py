"""The staff inbox over HTTP: a payment plan that defaults tells its collector in the back
office (in their language, newest first), nobody else sees it, and it is marked read."""

from __future__ import annotations

import tempfile
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from notifications.models import StaffMessage
from portal.backoffice.models import StaffMember
from portal.extensions import db
from portal.plans import service as plans
from portal.plans.models import PaymentPlan, PlanStatus
from portal.plans.policy import PlanPolicy
from tests.helpers import FormClient, csrf_token, text_of

from .staffing import requested_plan, staff_login, staff_message

ATTACHMENTS = Path(tempfile.gettempdir()) / "dianfei-test-inbox"
ZONE = ZoneInfo("Asia/Shanghai")
POLICY = PlanPolicy(min_total_fen=1, approval_threshold_fen=10**9, grace_days=10)


def _defaulted(app, clock, collector: str) -> PaymentPlan:
    """A plan of 1100000002 (bj-dongcheng) proposed by ``collector``, accepted, then left
    unpaid past the grace period: the daily sweep defaults it."""
    with app.app_context():
        plan = requested_plan(db.session, clock, "1100000002", ATTACHMENTS)
        staff = db.session.scalar(sa.select(StaffMember).where(StaffMember.username == collector))
        plans.propose(db.session, clock, POLICY, ZONE, staff, plan, installments=3,
                      first_due_on=date(2027, 1, 10), note="")
        plans.accept(db.session, clock, ZONE, plan.customer_id, plan)
        db.session.commit()
        clock.set(clock.now().replace(year=2027, month=1, day=21))
        assert plans.sweep(db.session, clock, POLICY, ZONE).defaulted == 1
        db.session.commit()
        db.session.refresh(plan)
        assert plan.status == PlanStatus.DEFAULTED
        db.session.expunge(plan)
        return plan


def _read(web: FormClient, message_id: int):
    token = csrf_token(web.get("/staff/inbox").get_data(as_text=True))
    return web.client.post(f"/staff/inbox/{message_id}/read", data={"csrf_token": token})


def test_a_defaulted_plan_is_in_its_collectors_inbox_and_marked_read(app, web, clock,
                                                                    demo) -> None:
    plan = _defaulted(app, clock, "bj-collector")
    staff_login(web, clock, "bj-collector")
    zh = text_of(web.get("/staff/inbox"))  # zh_CN by default
    assert "分期缴费方案已违约" in zh and "标为已读" in zh and "1100000002" in zh
    en = text_of(web.get("/staff/inbox?lang=en"))
    assert "A payment plan has defaulted" in en
    assert f"Account 1100000002: payment plan {plan.id} (" in en and "has defaulted" in en
    assert "Pay or check your bills" not in en  # the customers' line is not for staff
    assert "Inbox 1" in en  # the unread count in the nav
    with app.app_context():
        message = db.session.scalar(sa.select(StaffMessage))
        assert message is not None and message.read_at is None
    response = _read(web, message.id)
    assert response.status_code == 302 and response.location.endswith("/staff/inbox")
    en = text_of(web.get("/staff/inbox?lang=en"))
    assert "Mark as read" not in en and "Read" in en and "Inbox 1" not in en
    with app.app_context():
        assert db.session.get(StaffMessage, message.id).read_at == clock.now()


def test_other_staff_do_not_see_the_message_and_cannot_mark_it(app, web, clock, demo) -> None:
    _defaulted(app, clock, "bj-collector")
    staff_login(web, clock, "bj-supervisor")  # same district, not the plan's collector
    en = text_of(web.get("/staff/inbox?lang=en"))
    assert "No messages for you." in en and "has defaulted" not in en
    with app.app_context():
        theirs = db.session.scalar(sa.select(StaffMessage.id))
    assert _read(web, theirs).status_code == 404
    with app.app_context():
        assert db.session.get(StaffMessage, theirs).read_at is None


def test_the_inbox_is_newest_first(app, web, clock, demo) -> None:
    with app.app_context():
        older = staff_message(db.session, clock, "bj-reader", plan_id=101)
        clock.advance(timedelta(minutes=5))
        newer = staff_message(db.session, clock, "bj-reader", plan_id=102)
    staff_login(web, clock, "bj-reader")
    page = web.get("/staff/inbox").get_data(as_text=True)
    assert page.index(f'data-message="{newer}"') < page.index(f'data-message="{older}"')
    assert "payment plan 102" in text_of(web.get("/staff/inbox?lang=en"))

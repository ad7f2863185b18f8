"""Paying a plan's installment on the web: the next installment opens an order at the WeChat Pay
sandbox for its amount against the plan's bills; once the order succeeds the plan page shows the
installment paid; installments are paid in order."""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa

from payments import service as payments
from payments.channels.base import Trade, TradeState
from payments.models import PaymentOrder
from portal import context
from portal.accounts.models import AccountLink, ElectricityAccount
from portal.backoffice.models import StaffMember
from portal.extensions import db
from portal.ledger import service as ledger
from portal.plans import service as plans
from tests.helpers import text_of
from tests.payments.conftest import wsgi_server  # noqa: F401  (a fixture)
from tests.portal.web.test_payments import gateways, keys, settings_overrides  # noqa: F401

BUSINESS = ("13800000004", "3300000009")


def _active_plan(app, clock) -> tuple[int, int]:
    """The demo business's owed bill in an accepted 3-installment plan: (plan id, bill id)."""
    with app.app_context():
        settings = context.settings()
        account = db.session.scalar(sa.select(ElectricityAccount).where(
            ElectricityAccount.account_no == BUSINESS[1]))
        customer_id = db.session.scalar(sa.select(AccountLink.customer_id).where(
            AccountLink.account_id == account.id))
        bill_ids = [b for b, _p, _a in plans.eligible_bills(db.session, account.id)]
        plan = plans.request_plan(db.session, clock, settings.plans, settings.zone,
                                  customer_id=customer_id, account=account, bill_ids=bill_ids,
                                  installments=3, first_due_on=date(2027, 1, 10),
                                  reason="cash flow", hardship=False)
        collector = db.session.scalar(sa.select(StaffMember).where(
            StaffMember.username == "hz-collector"))
        plans.propose(db.session, clock, settings.plans, settings.zone, collector, plan,
                      installments=3, first_due_on=date(2027, 1, 10), note="")
        plans.accept(db.session, clock, settings.zone, customer_id, plan)
        db.session.commit()
        return plan.id, bill_ids[0]


def test_the_next_installment_is_paid_through_the_normal_checkout(app, web, clock, demo):
    plan_id, bill_id = _active_plan(app, clock)
    assert web.login(BUSINESS[0], "dianfei-demo").status_code == 302
    page = f"/plans/{plan_id}"
    early = web.submit(f"{page}/installments/2/pay", {"channel": "wechat"}, page=page)
    assert early.status_code == 409 and "请按顺序还款" in text_of(early)
    response = web.submit(f"{page}/installments/1/pay", {"channel": "wechat"}, page=page)
    assert response.status_code == 302 and response.location.startswith("/pay/DF")
    order_no = response.location.removeprefix("/pay/")
    with app.app_context():
        order = payments.order_by_no(db.session, order_no)
        assert order.amount_fen == 86282 and order.status.value == "pending"  # 258848 / 3
        payments.apply_trade(db.session, clock, "wechat",
                             Trade(order_no, TradeState.SUCCEEDED, 86282, channel_trade_no="W1"),
                             "notify")
        db.session.commit()
        assert ledger.owed_by_bill(db.session, [bill_id]) == {bill_id: 258848 - 86282}
    clock.advance(timedelta(minutes=5))
    text = text_of(web.get(page))
    assert "已缴清" in text and "缴纳第 2 期：¥862.82" in text
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PaymentOrder)) == 1


def test_a_plan_not_running_has_nothing_to_pay(app, web, clock, demo):
    plan_id, _bill = _active_plan(app, clock)
    with app.app_context():
        plan = db.session.get(plans.PaymentPlan, plan_id)
        for bill in plan.bills:  # the bill paid another way: the plan completes on the next look
            ledger.post(db.session, clock, account_id=plan.account_id, bill_id=bill.bill_id,
                        kind=ledger.EntryKind.PAYMENT, amount_fen=-bill.amount_fen,
                        ref=f"cash:{bill.bill_id}", effective_on=date(2026, 12, 3))
        db.session.commit()
    assert web.login(BUSINESS[0], "dianfei-demo").status_code == 302
    response = web.submit(f"/plans/{plan_id}/installments/1/pay", {"channel": "wechat"},
                          page=f"/plans/{plan_id}")
    assert response.status_code == 409 and "未在执行中" in text_of(response)
    assert "已完成" in text_of(web.get(f"/plans/{plan_id}"))

"""Payment plans on the customer site and in the back office, over HTTP: a business asks for a
plan with an attachment, staff of its district propose terms, the customer accepts and sees the
schedule; bad input is a 4xx with words; others' plans are 404 to customers."""

from __future__ import annotations

import io

import sqlalchemy as sa

from portal.extensions import db
from portal.kernel.audit import AuditEntry
from portal.plans.models import PaymentPlan, PlanStatus
from tests.helpers import FormClient, csrf_token, text_of
from tests.portal.backoffice.staffing import staff_login

BUSINESS = ("13800000004", "3300000009")  # hz-xihu, its newest bill unpaid in the demo
PDF = b"%PDF-1.4\n% proof of hardship\n"


def _login(web: FormClient, phone: str) -> None:
    assert web.login(phone, "dianfei-demo").status_code == 302


def _account_id(app, account_no: str) -> int:
    from portal.accounts.models import ElectricityAccount

    with app.app_context():
        return db.session.scalar(sa.select(ElectricityAccount.id)
                                 .where(ElectricityAccount.account_no == account_no))


def _request(web: FormClient, account_id: int, **fields) -> object:
    url = f"/accounts/{account_id}/plans/new"
    page = web.get(url).get_data(as_text=True)
    bills = [int(b) for b in __import__("re").findall(r'name="bills" value="(\d+)"', page)]
    data = {"csrf_token": csrf_token(page), "bills": bills, "installments": "3",
            "first_due_on": "2027-01-10", "reason": "订单回款慢"} | fields
    return web.client.post(url, data=data, content_type="multipart/form-data")


def test_a_business_asks_staff_propose_and_the_customer_accepts(app, web, clock, demo):
    account_id = _account_id(app, BUSINESS[1])
    _login(web, BUSINESS[0])
    response = _request(web, account_id, attachment=(io.BytesIO(PDF), "证明.pdf"))
    assert response.status_code == 302, text_of(response)
    plan_url = response.location
    page = text_of(web.get(plan_url + "?lang=en"))
    assert "Requested, waiting for staff" in page and "Proposed schedule" in page
    assert web.get(plan_url + "/attachment").get_data() == PDF
    with app.app_context():
        plan = db.session.scalar(sa.select(PaymentPlan))
        plan_id, total = plan.id, plan.total_fen

    staff = FormClient(app.test_client())
    staff_login(staff, clock, "hz-collector")
    assert "订单回款慢" in text_of(staff.get(f"/staff/plans/{plan_id}"))
    assert staff.get(f"/staff/plans/{plan_id}/attachment").get_data() == PDF
    assert f"#{plan_id}" in text_of(staff.get("/staff/plans?status=requested"))
    response = staff.submit(f"/staff/plans/{plan_id}/propose",
                            {"installments": "4", "first_due_on": "2027-01-15",
                             "note": "四期更合适"}, page=f"/staff/plans/{plan_id}")
    assert response.status_code == 302

    page = text_of(web.get(plan_url + "?lang=en"))
    assert "Terms proposed" in page and "四期更合适" in page and "2027-04-15" in page
    response = web.submit(f"/plans/{plan_id}/accept", {}, page=plan_url)
    assert response.status_code == 302
    page = text_of(web.get(plan_url + "?lang=en"))
    assert "Running" in page and "To pay" in page
    with app.app_context():
        plan = db.session.get(PaymentPlan, plan_id)
        assert plan.status == PlanStatus.ACTIVE
        assert sum(i.amount_fen for i in plan.installments) == total
        actions = db.session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.id)).all()
        assert actions == ["plan.request", "plan.propose", "plan.accept"]


def test_bad_requests_say_what_to_fix_and_write_nothing(app, web, clock, demo):
    account_id = _account_id(app, BUSINESS[1])
    _login(web, BUSINESS[0])
    response = _request(web, account_id, installments="13")
    assert response.status_code == 400
    response = _request(web, account_id, first_due_on="2026-12-01")
    assert response.status_code == 400 and "首期还款日" in text_of(response)
    response = _request(web, account_id, bills=[])
    assert response.status_code == 400 and "至少选择一张" in text_of(response)
    response = _request(web, account_id, attachment=(io.BytesIO(b"MZ\x90\x00"), "x.pdf"))
    assert response.status_code == 400 and "PDF" in text_of(response)
    response = _request(web, account_id, reason="")
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PaymentPlan)) == 0


def test_a_resident_must_declare_hardship(app, web, clock, demo):
    _login(web, "13800000002")
    account_id = _account_id(app, "1100000002")
    response = _request(web, account_id)
    assert response.status_code == 400 and "困难" in text_of(response)
    assert _request(web, account_id, hardship="y").status_code == 302


def test_customers_cannot_see_others_plans(app, web, clock, demo):
    account_id = _account_id(app, BUSINESS[1])
    _login(web, BUSINESS[0])
    plan_url = _request(web, account_id, attachment=(io.BytesIO(PDF), "p.pdf")).location
    other = FormClient(app.test_client())
    _login(other, "13800000002")
    for url in (plan_url, plan_url + "/attachment", f"/accounts/{account_id}/plans/new"):
        assert other.get(url).status_code == 404, url
    token = csrf_token(other.get("/plans").get_data(as_text=True))
    for step in ("accept", "cancel", "installments/1/pay"):
        assert other.client.post(f"{plan_url}/{step}", data={"csrf_token": token}
                                 ).status_code == 404
    assert "3300000009" not in text_of(other.get("/plans"))

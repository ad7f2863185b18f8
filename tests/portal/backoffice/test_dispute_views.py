"""Staff handle disputes over HTTP: the queue stays in the district, each step is recorded and
told to the customer, resolving needs its own permission, an adjustment reaches billing once."""

import pytest
import sqlalchemy as sa

from billing_adapter.local.system import LocalBillingSystem
from portal import billing
from portal.bills.models import Bill
from portal.disputes.models import Dispute, DisputeStatus
from portal.extensions import db
from portal.kernel.audit import AuditEntry
from portal.kernel.outbox import OutboxMessage
from portal.ledger.models import LedgerEntry
from tests.helpers import csrf_token, text_of

from .staffing import dispute_with_file, staff_login


@pytest.fixture
def settings_overrides(tmp_path):
    return {"dispute_attachments_dir": tmp_path / "files"}


@pytest.fixture
def dispute_id(app, clock, demo, tmp_path) -> int:
    with app.app_context():
        return dispute_with_file(db.session, clock, "1100000002", tmp_path / "files")[0]


def _step(web, dispute_id: int, step: str, data: dict[str, str]):
    return web.submit(f"/staff/disputes/{dispute_id}/{step}", data,
                      page=f"/staff/disputes/{dispute_id}")


def _staff_id(app, username: str) -> int:
    from portal.backoffice.models import StaffMember

    with app.app_context():
        return db.session.scalar(sa.select(StaffMember.id)
                                 .where(StaffMember.username == username))


def test_queue_shows_only_the_districts_disputes(app, web, clock, dispute_id, tmp_path) -> None:
    with app.app_context():
        other, _ = dispute_with_file(db.session, clock, "3300000001", tmp_path / "files")
    staff_login(web, clock, "bj-auditor")
    page = web.get("/staff/disputes").get_data(as_text=True)
    assert f'data-dispute="{dispute_id}"' in page and f'data-dispute="{other}"' not in page
    assert web.get(f"/staff/disputes/{other}").status_code == 404
    page = text_of(web.get(f"/staff/disputes/{dispute_id}"))
    assert "1100000002" in page and "m.png" in page and "读数不对" in page


def test_auditor_asks_then_adjusts_and_a_double_submit_reaches_billing_once(
        app, web, clock, dispute_id, monkeypatch) -> None:
    calls: list[str] = []

    class Counting(LocalBillingSystem):
        def apply_adjustment(self, adjustment):  # type: ignore[no-untyped-def]
            calls.append(adjustment.adjustment_no)
            return super().apply_adjustment(adjustment)

    monkeypatch.setattr(billing, "LocalBillingSystem", Counting)
    staff_login(web, clock, "bj-auditor")
    auditor = _staff_id(app, "bj-auditor")
    assert _step(web, dispute_id, "assign", {"assignee": str(auditor)}).status_code == 302
    assert _step(web, dispute_id, "ask", {"question": "请提供电表照片"}).status_code == 302
    with app.app_context():
        told = db.session.scalars(sa.select(OutboxMessage.payload)).all()
        assert [m["event"] for m in told] == ["dispute_info_requested"]
        assert told[0]["params"]["question"] == "请提供电表照片"
        old = db.session.get(Dispute, dispute_id).bill
        old_total, old_id = old.total_fen, old.id
    # bad input: a 400 with a message, nothing moves
    bad = _step(web, dispute_id, "adjust", {"direction": "credit", "amount": "-3",
                                            "reason": "x"})
    assert bad.status_code == 400 and "请输入大于 0 的金额" in text_of(bad)
    page = f"/staff/disputes/{dispute_id}"
    token = csrf_token(web.get(page).get_data(as_text=True))
    form = {"csrf_token": token, "direction": "credit", "amount": "20.00",
            "reason": "抄表录入错误，减免 20 元"}
    first = web.client.post(f"{page}/adjust", data=form)
    second = web.client.post(f"{page}/adjust", data=form)  # the same form sent twice
    assert first.status_code == 302 and second.status_code == 409
    assert calls == [f"dispute-{dispute_id}"]
    with app.app_context():
        dispute = db.session.get(Dispute, dispute_id)
        assert dispute.status is DisputeStatus.ADJUSTED and dispute.adjustment_fen == -2000
        corrected = db.session.get(Bill, dispute.corrected_bill_id)
        assert corrected.total_fen == old_total - 2000 and corrected.id != old_id
        assert db.session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry).where(
            LedgerEntry.ref == f"adjustment:dispute-{dispute_id}")) == 1
        actions = db.session.scalars(sa.select(AuditEntry.action).where(
            AuditEntry.staff_id == auditor).order_by(AuditEntry.id)).all()
        assert actions == ["dispute.assign", "dispute.request_info", "dispute.adjust"]
        told = db.session.scalars(sa.select(OutboxMessage.payload)
                                  .order_by(OutboxMessage.id)).all()
        assert told[-1]["event"] == "dispute_resolved"
        assert told[-1]["params"]["outcome"] == "adjusted"
    page_text = text_of(web.get(page))
    assert "更正前后的账单对比" in page_text and "¥-20.00" in page_text


def test_collector_handles_but_cannot_resolve(app, web, clock, dispute_id) -> None:
    staff_login(web, clock, "bj-collector")
    collector = _staff_id(app, "bj-collector")
    assert _step(web, dispute_id, "assign", {"assignee": str(collector)}).status_code == 302
    assert _step(web, dispute_id, "message", {"body": "已收到，正在核查"}).status_code == 302
    assert _step(web, dispute_id, "investigate", {"note": "核对抄表记录"}).status_code == 302
    assert "维持原账单" not in text_of(web.get(f"/staff/disputes/{dispute_id}"))
    refused = _step(web, dispute_id, "uphold", {"reason": "no"})
    assert refused.status_code == 403
    with app.app_context():
        assert db.session.get(Dispute, dispute_id).status is DisputeStatus.INVESTIGATING


def test_supervisor_upholds_with_a_reason_the_customer_reads(app, web, clock,
                                                              dispute_id) -> None:
    staff_login(web, clock, "bj-supervisor")
    empty = _step(web, dispute_id, "uphold", {"reason": ""})
    assert empty.status_code == 400 and "请填写原因" in text_of(empty)
    supervisor = _staff_id(app, "bj-supervisor")
    _step(web, dispute_id, "assign", {"assignee": str(supervisor)})
    assert _step(web, dispute_id, "uphold", {"reason": "现场核对读数无误"}).status_code == 302
    # another district's member cannot be assigned
    hz = _step(web, dispute_id, "assign", {"assignee": str(_staff_id(app, "hz-auditor"))})
    assert hz.status_code == 400
    web.submit("/staff/logout", {}, page="/staff")
    web.login("13800000002", "dianfei-demo")
    page = text_of(web.get(f"/disputes/{dispute_id}"))
    assert "已处理：维持原账单" in page and "现场核对读数无误" in page



def test_resolved_disputes_leave_the_queue_but_stay_under_all(app, web, clock,
                                                              dispute_id) -> None:
    staff_login(web, clock, "bj-auditor")
    _step(web, dispute_id, "assign", {"assignee": str(_staff_id(app, "bj-auditor"))})
    _step(web, dispute_id, "uphold", {"reason": "读数无误"})
    assert f'data-dispute="{dispute_id}"' not in web.get("/staff/disputes").get_data(
        as_text=True)
    assert f'data-dispute="{dispute_id}"' in web.get("/staff/disputes?all=1").get_data(
        as_text=True)


def test_a_credit_larger_than_the_bill_is_refused_and_nothing_moves(app, web, clock,
                                                                   dispute_id) -> None:
    staff_login(web, clock, "bj-auditor")
    _step(web, dispute_id, "assign", {"assignee": str(_staff_id(app, "bj-auditor"))})
    refused = _step(web, dispute_id, "adjust", {"direction": "credit", "amount": "99999",
                                                "reason": "全部减免"})
    assert refused.status_code == 400 and "营销系统拒绝了这笔调整" in text_of(refused)
    with app.app_context():
        dispute = db.session.get(Dispute, dispute_id)
        assert dispute.status is DisputeStatus.ASSIGNED and dispute.adjustment_no is None
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "dispute.adjust")) == 0

"""The audit log: staff actions write their row in the action's transaction; the pages search by
staff, account, action and dates, page by keyset, export CSV, show an account's ledger, and keep
to the member's districts."""

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from portal.accounts.models import ElectricityAccount
from portal.backoffice import audit_log, refunds
from portal.backoffice.models import StaffMember
from portal.extensions import db
from portal.kernel import audit
from portal.kernel.audit import AuditEntry
from tests.helpers import text_of

from .staffing import paid_order, staff_login

ZONE = ZoneInfo("Asia/Shanghai")


def _member(session, username: str) -> StaffMember:
    return session.scalar(sa.select(StaffMember).filter_by(username=username))


def _account_id(session, no: str) -> int:
    return session.scalar(sa.select(ElectricityAccount.id).filter_by(account_no=no))


def _actions(session) -> list[str]:
    return list(session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.id)))


def test_refund_steps_are_audited_with_their_action(session, clock, demo) -> None:
    order = paid_order(session, clock, "1100000001")
    collector, supervisor = _member(session, "bj-collector"), _member(session, "bj-supervisor")
    first = refunds.request(session, clock, collector, order, amount_fen=1000, reason="twice")
    refunds.approve(session, clock, supervisor, first, ["wechat"])
    second = refunds.request(session, clock, collector, order, amount_fen=500, reason="again")
    refunds.decline(session, clock, supervisor, second, "not paid twice")
    session.commit()
    rows = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(r.action, r.staff_id, r.amount_fen) for r in rows] == [
        ("refund.request", collector.id, 1000), ("refund.approve", supervisor.id, 1000),
        ("refund.request", collector.id, 500), ("refund.decline", supervisor.id, 500)]
    assert rows[0].object_id == first.refund_no and rows[0].details["reason"] == "twice"
    assert rows[3].details["reason"] == "not paid twice"
    assert {r.account_id for r in rows} == {_account_id(session, "1100000001")}


def test_a_refused_step_leaves_no_audit_row(session, clock, demo) -> None:
    order = paid_order(session, clock, "1100000001")
    collector = _member(session, "bj-collector")
    refund = refunds.request(session, clock, collector, order, amount_fen=1000, reason="x")
    session.commit()
    try:
        refunds.approve(session, clock, collector, refund, ["wechat"])  # the requester: refused
    except Exception:
        session.rollback()
    assert _actions(session) == ["refund.request"]


def test_staff_administration_is_audited(web, clock, demo, app) -> None:
    staff_login(web, clock, "admin")
    created = web.submit("/staff/admin/staff/new", {
        "username": "bj-new", "display_name": "新人", "password": "long enough pw",
        "role": "reader", "districts": "1"})
    assert created.status_code == 302
    with app.app_context():
        member = _member(db.session, "bj-new")
        member_id = member.id
    edited = web.submit(f"/staff/admin/staff/{member_id}", {
        "display_name": "新人", "role": "auditor", "districts": "1"})
    assert edited.status_code == 302
    with app.app_context():
        rows = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
        admin_id = _member(db.session, "admin").id
        assert [(r.action, r.object_id, r.staff_id) for r in rows] == [
            ("staff.create", str(member_id), admin_id),
            ("staff.role_change", str(member_id), admin_id)]
        assert rows[1].details["old_role"] == "reader" and rows[1].details["new_role"] == "auditor"


def _entries(session, clock) -> dict[str, int]:
    """Five entries a day apart: three about Beijing accounts, one about Hangzhou, one without
    an account (staff administration)."""
    bj1, bj2 = _account_id(session, "1100000001"), _account_id(session, "1100000002")
    hz = _account_id(session, "3300000001")
    auditor, hz_collector = _member(session, "bj-auditor"), _member(session, "hz-collector")
    admin = _member(session, "admin")
    for action, staff, account in (("bill.approve", auditor, bj1),
                                   ("refund.request", hz_collector, hz),
                                   ("bill.correct", auditor, bj2),
                                   ("staff.create", admin, None),
                                   ("refund.decline", auditor, bj1)):
        audit.record(session, clock, action, "x", 1, staff_id=staff.id, account_id=account)
        clock.advance(timedelta(days=1))
    session.commit()
    return {"bj1": bj1, "hz": hz}


def test_search_filters_and_district_scoping(session, clock, demo) -> None:
    _entries(session, clock)
    supervisor, admin = _member(session, "bj-supervisor"), _member(session, "admin")

    def actions(member, **filters) -> list[str]:
        page = audit_log.search(session, member, audit_log.Filters(**filters), ZONE)
        return [row.entry.action for row in page.rows]

    assert actions(admin) == ["refund.decline", "staff.create", "bill.correct",
                              "refund.request", "bill.approve"]
    # a district's supervisor: neither Hangzhou's entries nor those without an account
    assert actions(supervisor) == ["refund.decline", "bill.correct", "bill.approve"]
    assert actions(supervisor, account="3300000001") == []
    assert actions(admin, account="3300000001") == ["refund.request"]
    assert actions(supervisor, staff="BJ-Auditor") == ["refund.decline", "bill.correct",
                                                       "bill.approve"]
    assert actions(admin, action="bill.") == ["bill.correct", "bill.approve"]
    assert actions(admin, action="bill") == []  # exact unless it ends with a dot
    # NOW is 2026-12-03 10:00 in Shanghai; entries on the 3rd .. 7th
    assert actions(admin, since=date(2026, 12, 4), until=date(2026, 12, 5)) == [
        "bill.correct", "refund.request"]
    assert actions(admin, until=date(2026, 12, 3)) == ["bill.approve"]


def test_keyset_pages_cover_every_entry_once(session, clock, demo) -> None:
    _entries(session, clock)
    admin = _member(session, "admin")
    seen, cursor = [], None
    while True:
        page = audit_log.search(session, admin, audit_log.Filters(), ZONE, cursor, per_page=2)
        seen += [row.entry.id for row in page.rows]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == 5 and seen == sorted(seen, reverse=True)


def test_pages_csv_and_ledger_tab_over_http(app, web, clock, demo) -> None:
    with app.app_context():
        ids = _entries(db.session, clock)
    staff_login(web, clock, "bj-supervisor")
    page = text_of(web.get("/staff/audit?lang=en"))
    assert "bill.approve" in page and "refund.request" not in page
    assert "Older entries" not in page
    assert web.get("/staff/audit?since=2026-13-01&lang=en").status_code == 400
    assert web.get("/staff/audit?after=garbage").status_code == 400
    # dates at the calendar's ends and odd cursors: an answer, never a crash
    assert web.get("/staff/audit?until=9999-12-31").status_code == 200
    assert web.get("/staff/audit?since=0001-01-01").status_code == 200
    assert web.get("/staff/audit.csv?until=9999-12-31").status_code == 200
    assert web.get("/staff/audit?after=2026-12-01T00:00:00%2B00:00~"
                   + "9" * 30).status_code in (200, 400)
    assert web.get("/staff/audit?tab=ledger&account=1100000002&after=%C2%B2"
                   ).status_code == 400  # "²" passes str.isdigit() but is not a number
    response = web.get("/staff/audit.csv?action=bill.")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0].startswith("at,actor,staff,action") and len(lines) == 3
    assert all(",bj-auditor,bill." in line for line in lines[1:])
    assert "refund.request" not in web.get("/staff/audit.csv").get_data(as_text=True)
    ledger = text_of(web.get("/staff/audit?tab=ledger&account=1100000002&lang=en"))
    assert "bill:" in ledger and "Money movements" in ledger
    assert web.get("/staff/audit?tab=ledger&account=3300000001").status_code == 404
    assert web.get("/staff/audit?tab=ledger&account=0000000000").status_code == 404
    assert ids["hz"]

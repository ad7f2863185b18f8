"""The reconciliation worklist over HTTP: district scoping, differences without an account for
supervisors and admins only, notes, resolving (who, when, why, audited), and 补单 by hand."""

from datetime import timedelta

import sqlalchemy as sa

from payments.channels.base import Scene
from payments.reconcile.models import Difference, DifferenceKind, DifferenceStatus
from payments.service import create_order
from portal.accounts.models import ElectricityAccount
from portal.extensions import db
from portal.kernel.audit import AuditEntry
from portal.payment_channels import CHANNELS_KEY
from tests.helpers import text_of
from tests.payments.fakes import FakeChannel

from .staffing import difference, staff_login


def _seed(app, clock) -> dict[str, int]:
    with app.app_context():
        return {"own": difference(db.session, clock, "1100000001", "DF-OWN").id,
                "other": difference(db.session, clock, "3300000001", "DF-OTHER").id,
                "none": difference(db.session, clock, None, "DF-NOBODY",
                                   kind=DifferenceKind.CHANNEL_ONLY).id}


def test_collector_sees_own_district_only_supervisor_also_unowned(app, web, clock,
                                                                  demo) -> None:
    ids = _seed(app, clock)
    staff_login(web, clock, "bj-collector")
    page = text_of(web.get("/staff/reconcile?lang=en"))
    assert "DF-OWN" in page and "DF-OTHER" not in page and "DF-NOBODY" not in page
    assert "SHA-256" not in page  # statements' totals span districts: supervisors and admins
    assert web.get(f"/staff/reconcile/differences/{ids['none']}").status_code == 404
    web2 = type(web)(app.test_client())
    staff_login(web2, clock, "bj-supervisor")
    page = text_of(web2.get("/staff/reconcile?lang=en"))
    assert "DF-OWN" in page and "DF-NOBODY" in page and "DF-OTHER" not in page
    assert "SHA-256" in page
    assert web2.get(f"/staff/reconcile/differences/{ids['none']}").status_code == 200


def test_resolve_needs_a_note_and_records_who_when_why(app, web, clock, demo) -> None:
    ids = _seed(app, clock)
    staff_login(web, clock, "bj-collector")
    url = f"/staff/reconcile/differences/{ids['own']}"
    empty = web.submit(f"{url}/resolve", {"note": " "}, page=url)
    assert empty.status_code == 400
    noted = web.submit(f"{url}/note", {"note": "asked the bank"}, page=url)
    assert noted.status_code == 302
    done = web.submit(f"{url}/resolve", {"note": "customer paid 1 yuan extra; refunded"},
                      page=url)
    assert done.status_code == 302
    again = web.submit(f"{url}/resolve", {"note": "twice"}, page=url)
    assert again.status_code == 409
    with app.app_context():
        diff = db.session.get(Difference, ids["own"])
        assert diff.status == DifferenceStatus.RESOLVED and diff.resolved_at == clock.now()
        assert diff.resolution == "customer paid 1 yuan extra; refunded"
        actions = db.session.scalars(sa.select(AuditEntry.action).where(
            AuditEntry.object_id == str(diff.id)).order_by(AuditEntry.id)).all()
        assert actions == ["reconcile.note", "reconcile.resolve"]
    page = text_of(web.get(url + "?lang=en"))
    assert "asked the bank" in page and "Resolved by staff" in page


def test_empty_note_is_a_400_with_a_message(app, web, clock, demo) -> None:
    ids = _seed(app, clock)
    staff_login(web, clock, "bj-collector")
    url = f"/staff/reconcile/differences/{ids['own']}"
    response = web.submit(f"{url}/note?lang=en", {"note": ""}, page=url)
    assert response.status_code == 400
    assert "Write what was found or done" in text_of(response)


def test_ask_the_channel_again_applies_a_paid_open_order(app, web, clock, demo) -> None:
    fake = FakeChannel()
    app.extensions[CHANNELS_KEY] = {"wechat": fake}
    with app.app_context():
        account_id = db.session.scalar(sa.select(ElectricityAccount.id).filter_by(
            account_no="1100000001"))
        order = create_order(db.session, clock, account_id=account_id, customer_id=None,
                             channel="wechat", scene=Scene.DESKTOP, bill_ids=[],
                             topup_fen=500, lifetime=timedelta(minutes=30),
                             first_query_after=timedelta(minutes=1))
        db.session.commit()
        order_no = order.order_no
        diff_id = difference(db.session, clock, "1100000001", order_no,
                             kind=DifferenceKind.CHANNEL_ONLY).id
    staff_login(web, clock, "bj-collector")
    url = f"/staff/reconcile/differences/{diff_id}"
    assert "补单" in text_of(web.get(url))
    unpaid = web.submit(f"{url}/requery", {}, page=url)
    assert unpaid.status_code == 302
    fake.pay(order_no, 500)
    assert web.submit(f"{url}/requery", {}, page=url).status_code == 302
    with app.app_context():
        diff = db.session.get(Difference, diff_id)
        assert diff.status == DifferenceStatus.AUTO_RESOLVED and diff.resolved_by_id is not None
        assert db.session.scalar(sa.select(AuditEntry.action).where(
            AuditEntry.object_id == str(diff_id))) == "reconcile.backfill"
    assert web.submit(f"{url}/requery", {}, page=url).status_code == 409

"""The staff review queue over HTTP: an auditor of the district decides, the customer sees it.
(Every role on every route, and other districts' 404s: tests/portal/backoffice/test_views.py.)"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

from portal.demo import DEMO_PASSWORD
from portal.extensions import db
from portal.kernel.audit import AuditEntry
from portal.kernel.outbox import OutboxMessage
from portal.readings.models import Reading, ReadingStatus
from tests.helpers import FormClient, text_of
from tests.portal.backoffice.staffing import flagged_reading, staff_login


def _flagged(app, clock, account_no="1100000001", phone="13800000001", value="99999") -> int:
    with app.app_context():
        return flagged_reading(db.session, clock, account_no, phone, value)


def _reading(app, reading_id: int) -> Reading:
    with app.app_context():
        row = db.session.get(Reading, reading_id)
        db.session.expunge(row)
        return row


def test_queue_shows_only_the_districts_flagged_readings(app, web, clock, demo) -> None:
    mine, theirs = _flagged(app, clock), _flagged(app, clock, "3300000001", "13800000003")
    staff_login(web, clock, "bj-auditor")
    page = web.get("/staff/readings?lang=en").get_data(as_text=True)
    assert f'data-reading-id="{mine}"' in page and f'data-reading-id="{theirs}"' not in page
    assert "far more than your average of 300 kWh" in page
    detail = web.get(f"/staff/readings/{mine}?lang=en").get_data(as_text=True)
    assert f'src="/staff/readings/{mine}/photo"' in detail
    photo = web.get(f"/staff/readings/{mine}/photo")
    assert photo.status_code == 200 and photo.mimetype == "image/jpeg"
    assert web.get(f"/staff/readings/{theirs}/photo").status_code == 404


def test_reject_needs_a_reason_then_the_customer_sees_it(app, web, clock, demo) -> None:
    reading_id = _flagged(app, clock)
    staff_login(web, clock, "bj-auditor")
    url = f"/staff/readings/{reading_id}"
    response = web.submit(f"{url}/reject?lang=en", {"reject-note": ""}, page=url)
    assert response.status_code == 400 and "Write the reason" in text_of(response)
    assert _reading(app, reading_id).status is ReadingStatus.FLAGGED
    response = web.submit(f"{url}/reject", {"reject-note": "照片里是别家的电表。"}, page=url)
    assert response.status_code == 302
    row = _reading(app, reading_id)
    assert (row.status, row.decision_note) == (ReadingStatus.REJECTED, "照片里是别家的电表。")
    with app.app_context():
        entry = db.session.scalars(sa.select(AuditEntry)
                                   .where(AuditEntry.action == "reading.reject")).one()
        assert entry.details["note"] == "照片里是别家的电表。"
        message = db.session.scalars(sa.select(OutboxMessage)
                                     .where(OutboxMessage.topic == "notify")).one()
        assert message.payload["event"] == "reading_rejected"
    customer = FormClient(app.test_client())
    customer.login("13800000001", DEMO_PASSWORD)
    page = text_of(customer.get("/readings?lang=en"))
    assert "Rejected" in page and "照片里是别家的电表。" in page
    # decided: a second decision is refused, nothing changes
    response = web.submit(f"{url}/accept?lang=en", {"accept-note": ""}, page=url)
    assert response.status_code == 409 and "already decided" in text_of(response)


def test_correct_and_accept(app, web, clock, demo) -> None:
    corrected, accepted = _flagged(app, clock), _flagged(app, clock, value="99998")
    staff_login(web, clock, "bj-auditor")
    url = f"/staff/readings/{corrected}"
    response = web.submit(f"{url}/correct?lang=en", {"correct-value_kwh": "12x",
                                                     "correct-note": "from the photo"}, page=url)
    assert response.status_code == 400 and "Enter a number" in text_of(response)
    current = _reading(app, corrected).value_kwh
    response = web.submit(f"{url}/correct", {"correct-value_kwh": "9999",
                                             "correct-note": "照片读数为 9999"}, page=url)
    assert response.status_code == 302
    row = _reading(app, corrected)
    assert (row.status, row.value_kwh, row.corrected_from_kwh) == (
        ReadingStatus.ACCEPTED, Decimal("9999.00"), current)
    assert row.billing_ref == f"R{corrected}"
    url = f"/staff/readings/{accepted}"
    assert web.submit(f"{url}/accept", {"accept-note": ""}, page=url).status_code == 302
    assert _reading(app, accepted).status is ReadingStatus.ACCEPTED
    customer = FormClient(app.test_client())
    customer.login("13800000001", DEMO_PASSWORD)
    assert "Corrected by staff from 99,999" in text_of(customer.get("/readings?lang=en"))


def test_a_reader_records_a_reading_with_the_same_rules(app, web, clock, demo) -> None:
    staff_login(web, clock, "bj-reader")
    with app.app_context():
        from portal.accounts.models import ElectricityAccount

        account_id = db.session.scalar(sa.select(ElectricityAccount.id).where(
            ElectricityAccount.account_no == "1100000002"))
        last = db.session.scalar(sa.select(Reading.value_kwh).join(Reading.meter).where(
            Reading.meter.has(account_id=account_id)).order_by(Reading.period.desc()).limit(1))
    url = f"/staff/accounts/{account_id}/readings/new"
    assert "记录读数" in text_of(web.get(f"/staff/accounts/{account_id}"))
    response = web.submit(f"{url}?lang=en", {"meter_no": "110101000002", "period": "2026-12",
                                             "read_on": "2026-12-31",
                                             "value_kwh": str(last - 5)})
    assert response.status_code == 302
    response = web.submit(f"{url}?lang=en", {"meter_no": "110101000002", "period": "2026-12",
                                             "read_on": "2026-12-31", "value_kwh": "1"})
    assert response.status_code == 409 and "already has a reading" in text_of(response)
    with app.app_context():
        row = db.session.scalars(sa.select(Reading).where(Reading.period == "2026-12")).one()
        assert (row.status, row.flag_reason.split()[0]) == (ReadingStatus.FLAGGED,
                                                            "reading_went_down")
        entry = db.session.scalars(sa.select(AuditEntry)
                                   .where(AuditEntry.action == "reading.record")).one()
        assert entry.object_id == str(row.id)

"""The bill review queue over HTTP: an auditor approves a held bill (charged once, however many
times the form is sent) or corrects the reading and recomputes; each decision is audited and the
customer sees the bill issued."""

from decimal import Decimal

import pytest
import sqlalchemy as sa
from flask import g
from flask_babel import refresh

from portal.accounts.models import ElectricityAccount, Meter
from portal.backoffice import bill_review
from portal.backoffice.models import StaffMember
from portal.bills import service as bills
from portal.bills.models import Bill, BillStatus, charge_ref
from portal.extensions import db
from portal.kernel.audit import AuditEntry
from portal.kernel.outbox import OutboxMessage
from portal.ledger.models import EntryKind, LedgerEntry
from portal.readings.models import Reading, ReadingSource
from tests.helpers import csrf_token, run_concurrently, text_of

from .staffing import held_bill, staff_login

SPIKED = "1100000001"  # the demo holds 王芳's newest bill (6x her usual use)


def _held(session, clock) -> Bill:
    return held_bill(session, clock, SPIKED)


def _fresh() -> None:
    """The test holds an app context (the ``session`` fixture), which the client's requests
    share: forget the language and CSRF token the previous request cached in it."""
    refresh()
    g.pop("csrf_token", None)


def _get(web, url: str):
    _fresh()
    return web.get(url)


def _post(web, url: str, data: dict[str, str]):
    _fresh()
    token = csrf_token(web.get("/staff/password").get_data(as_text=True))
    _fresh()
    return web.client.post(url, data={"csrf_token": token, **data})


def _charges(session, bill_id: int) -> list[LedgerEntry]:
    return list(session.scalars(sa.select(LedgerEntry).where(
        LedgerEntry.bill_id == bill_id, LedgerEntry.kind == EntryKind.CHARGE)))


def test_queue_lists_the_held_bill_with_its_reason(session, web, clock, demo) -> None:
    bill = _held(session, clock)
    staff_login(web, clock, "bj-auditor")
    page = text_of(_get(web, "/staff/bills/review?lang=en"))
    assert SPIKED in page and bill.period in page and "far above the average" in page
    assert "Bills held for review" in text_of(_get(web, "/staff/review?lang=en"))


def test_approve_issues_and_charges_once_on_a_double_submit(session, web, clock, demo) -> None:
    bill = _held(session, clock)
    staff_login(web, clock, "bj-auditor")
    url = f"/staff/bills/review/{bill.id}/approve"
    first = _post(web, url, {"note": "customer confirmed a new heater"})
    second = _post(web, url + "?lang=en", {"note": "customer confirmed a new heater"})
    assert first.status_code == 302, text_of(first)
    assert second.status_code == 409 and "no longer held for review" in text_of(second)
    db.session.expire_all()
    issued = session.get(Bill, bill.id)
    assert issued.status is BillStatus.ISSUED and issued.issued_at is not None
    charges = _charges(session, bill.id)
    assert [(c.ref, c.amount_fen) for c in charges] == [(charge_ref(bill.id), bill.total_fen)]
    audit = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "bill.approve")).all()
    assert len(audit) == 1 and audit[0].details["note"] == "customer confirmed a new heater"
    assert audit[0].account_id == bill.account_id and audit[0].staff_id is not None
    messages = session.scalars(sa.select(OutboxMessage).where(
        OutboxMessage.dedup_key == f"notify:bill_issued:bill:{bill.id}")).all()
    assert len(messages) == 1 and messages[0].payload["params"]["period"] == bill.period
    # the customer sees it issued (owed, not "being checked")
    newest = bills.account_bills(session, bill.account_id)[0]
    assert newest.id == bill.id and newest.status is BillStatus.ISSUED


def test_approve_needs_a_reason(session, web, clock, demo) -> None:
    bill = _held(session, clock)
    staff_login(web, clock, "bj-auditor")
    response = _post(web, f"/staff/bills/review/{bill.id}/approve?lang=en", {"note": " "})
    assert response.status_code == 400 and "Say why the bill can be issued" in text_of(response)
    db.session.expire_all()
    assert session.get(Bill, bill.id).status is BillStatus.PENDING_REVIEW
    assert _charges(session, bill.id) == []


def _meter_and_previous(session, bill: Bill) -> tuple[Meter, Decimal]:
    meter = session.scalar(sa.select(Meter).where(Meter.account_id == bill.account_id))
    previous = session.scalar(sa.select(Reading.value_kwh).where(
        Reading.meter_id == meter.id, Reading.period < bill.period)
        .order_by(Reading.period.desc()).limit(1))
    return meter, previous


def test_correct_the_reading_recomputes_a_new_issued_version(session, web, clock, demo) -> None:
    bill = _held(session, clock)
    meter, previous = _meter_and_previous(session, bill)
    staff_login(web, clock, "bj-auditor")
    response = _post(web, f"/staff/bills/review/{bill.id}/correct", {
        "meter_id": str(meter.id), "value_kwh": str(previous + 200),
        "reason": "reader typed an extra digit"})
    assert response.status_code == 302
    db.session.expire_all()
    newest = bills.account_bills(session, bill.account_id)[0]
    assert newest.period == bill.period and newest.version == bill.version + 1
    assert newest.status is BillStatus.ISSUED and newest.kwh == Decimal(200)
    assert 0 < newest.total_fen < bill.total_fen
    assert [c.amount_fen for c in _charges(session, newest.id)] == [newest.total_fen]
    assert _charges(session, bill.id) == []  # the held version was never charged
    staff_reading = session.scalar(sa.select(Reading).where(
        Reading.meter_id == meter.id, Reading.source == ReadingSource.STAFF))
    assert staff_reading.value_kwh == previous + 200 and staff_reading.period == bill.period
    entry = session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "bill.correct"))
    assert entry.details["reason"] == "reader typed an extra digit"
    assert entry.details["new_bill_id"] == newest.id and entry.amount_fen == newest.total_fen
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
        OutboxMessage.dedup_key == f"notify:bill_issued:bill:{newest.id}")) == 1
    assert "No bill is held for review" in text_of(_get(web, "/staff/bills/review?lang=en"))
    # the superseded version takes no decision any more
    again = _post(web, f"/staff/bills/review/{bill.id}/approve", {"note": "x"})
    assert again.status_code == 409


def test_a_correction_below_the_earlier_reading_is_refused(session, web, clock, demo) -> None:
    bill = _held(session, clock)
    meter, previous = _meter_and_previous(session, bill)
    staff_login(web, clock, "bj-auditor")
    response = _post(web, f"/staff/bills/review/{bill.id}/correct?lang=en", {
        "meter_id": str(meter.id), "value_kwh": str(previous - 1), "reason": "typo"})
    assert response.status_code == 400
    assert "below the meter's reading of an earlier period" in text_of(response)
    bad = _post(web, f"/staff/bills/review/{bill.id}/correct?lang=en", {
        "meter_id": str(meter.id), "value_kwh": "12,5", "reason": "typo"})
    assert bad.status_code == 400 and "Enter a meter reading in kWh" in text_of(bad)
    db.session.expire_all()
    assert session.scalar(sa.select(sa.func.count()).select_from(Reading).where(
        Reading.source == ReadingSource.STAFF)) == 0
    assert bills.account_bills(session, bill.account_id)[0].id == bill.id


def test_a_correction_through_a_rollover_is_billed_through_the_wrap(session, web, clock,
                                                                   demo) -> None:
    """The meter passed 999999 during the month: the reviewer enters what it shows (a small
    number, below the previous reading), and the bill counts through the wrap."""
    bill = _held(session, clock)
    meter, _previous = _meter_and_previous(session, bill)
    session.execute(sa.update(Reading).where(
        Reading.meter_id == meter.id, Reading.period < bill.period).values(
        value_kwh=Decimal(999900)))
    session.commit()
    staff_login(web, clock, "bj-auditor")
    response = _post(web, f"/staff/bills/review/{bill.id}/correct", {
        "meter_id": str(meter.id), "value_kwh": "100", "reason": "the meter rolled over"})
    assert response.status_code == 302
    db.session.expire_all()
    newest = bills.account_bills(session, bill.account_id)[0]
    assert newest.version == bill.version + 1 and newest.kwh == Decimal(200)
    assert newest.status is BillStatus.ISSUED


def test_a_correction_with_registers_the_meter_does_not_have_is_refused(session, web, clock,
                                                                         demo) -> None:
    """A plain meter's reading with peak/valley registers (or a TOU meter's registers that do
    not add up to its total) is refused as the self-reading review refuses it: no reading is
    stored as accepted, no new version is made."""
    bill = _held(session, clock)
    meter, previous = _meter_and_previous(session, bill)
    assert not meter.is_tou
    staff_login(web, clock, "bj-auditor")
    response = _post(web, f"/staff/bills/review/{bill.id}/correct?lang=en", {
        "meter_id": str(meter.id), "value_kwh": str(previous + 200), "peak_kwh": "150",
        "valley_kwh": "50", "reason": "read off the photo"})
    assert response.status_code == 400
    assert "This meter has no peak/flat/valley registers" in text_of(response)
    meter.is_tou = True
    session.commit()
    response = _post(web, f"/staff/bills/review/{bill.id}/correct?lang=en", {
        "meter_id": str(meter.id), "value_kwh": str(previous + 200), "peak_kwh": "150",
        "flat_kwh": "10", "valley_kwh": "50", "reason": "read off the photo"})
    assert response.status_code == 400
    assert "Peak, flat and valley must add up to the total" in text_of(response)
    db.session.expire_all()
    assert session.scalar(sa.select(sa.func.count()).select_from(Reading).where(
        Reading.source == ReadingSource.STAFF)) == 0
    assert bills.account_bills(session, bill.account_id)[0].id == bill.id


def test_another_districts_held_bill_is_not_in_the_queue(session, web, clock, demo) -> None:
    other = held_bill(session, clock, "3300000001")
    staff_login(web, clock, "bj-auditor")
    page = text_of(_get(web, "/staff/bills/review"))
    assert "3300000001" not in page
    assert _get(web, f"/staff/bills/review/{other.id}").status_code == 404
    account = session.get(ElectricityAccount, other.account_id)
    assert account.account_no == "3300000001"


def test_review_menu_shows_the_queues_of_the_role(session, web, clock, demo) -> None:
    staff_login(web, clock, "bj-auditor")
    menu = _get(web, "/staff/review")
    html = menu.get_data(as_text=True)
    assert 'data-queue="bills"' in html and 'href="/staff/readings"' in html
    assert 'data-queue="refunds"' not in html
    bill = _held(session, clock)
    account = text_of(_get(web, f"/staff/accounts/{bill.account_id}?lang=en"))
    assert "Review this bill" in account


def test_a_collectors_review_menu_has_refunds_only(web, clock, demo) -> None:
    staff_login(web, clock, "bj-collector")
    html = web.get("/staff/review").get_data(as_text=True)
    assert 'data-queue="refunds"' in html and 'data-queue="bills"' not in html
    assert 'href="/staff/readings"' not in html


@pytest.mark.parametrize("database_url", [pytest.param("pg", marks=pytest.mark.pg)],
                         indirect=True)
def test_concurrent_approvals_charge_once(app, clock, demo) -> None:
    with app.app_context():
        bill_id = held_bill(db.session, clock, SPIKED).id
    outcomes: list[str] = []

    def approve() -> None:
        with app.app_context():
            try:
                staff = db.session.scalar(sa.select(StaffMember).filter_by(username="bj-auditor"))
                bill = bill_review.get_scoped_bill(db.session, staff, bill_id)
                bill_review.approve(db.session, clock, staff, bill, "checked")
                db.session.commit()
                outcomes.append("issued")
            except bill_review.NotInReview:
                db.session.rollback()
                outcomes.append("conflict")
            finally:
                db.session.remove()

    run_concurrently(approve, 4)
    assert sorted(outcomes) == ["conflict"] * 3 + ["issued"]
    with app.app_context():
        assert len(_charges(db.session, bill_id)) == 1
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == 1


@pytest.mark.parametrize("settings_overrides", [
    {"billing_url": "http://127.0.0.1:9/billing", "billing_token": "t" * 32}])
def test_with_an_external_billing_system_corrections_are_made_there(session, web, clock,
                                                                     demo) -> None:
    bill = _held(session, clock)
    meter, previous = _meter_and_previous(session, bill)
    staff_login(web, clock, "bj-auditor")
    response = _post(web, f"/staff/bills/review/{bill.id}/correct?lang=en", {
        "meter_id": str(meter.id), "value_kwh": str(previous + 200), "reason": "typo"})
    assert response.status_code == 409 and "external billing system" in text_of(response)
    db.session.expire_all()
    assert bills.account_bills(session, bill.account_id)[0].id == bill.id

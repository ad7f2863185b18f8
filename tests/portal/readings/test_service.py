"""Self-readings through the service: preview, submit, windows, staff decisions, import."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from billing_adapter.base import BillingRejected, BillingUnavailable
from portal import context
from portal.backoffice import service as staff_service
from portal.backoffice.models import StaffRole
from portal.kernel.audit import AuditEntry
from portal.kernel.errors import NotFound
from portal.kernel.outbox import OutboxMessage
from portal.kernel.uploads import Upload
from portal.readings import service
from portal.readings.models import Reading, ReadingStatus
from portal.readings.service import Entry
from portal.settings import Settings

from .conftest import jpeg, make_world


def _entry(world, value: str, **registers: str) -> Entry:
    return Entry(world.meter.id, Decimal(value),
                 **{f"{k}_kwh": Decimal(v) for k, v in registers.items()})


def _submit(session, clock, world, value: str, **registers: str) -> Reading:
    row = service.submit(session, clock, context.settings(), world.customer.id,
                         _entry(world, value, **registers), [Upload("meter.jpg", jpeg())],
                         system=world.system)
    session.commit()
    return row


def test_preview_shows_usage_estimate_and_no_warning(session, clock, world) -> None:
    shown = service.preview(session, clock, context.settings(), world.customer.id,
                            _entry(world, "1120.5"))
    assert (shown.period, shown.read_on) == ("2026-12", date(2026, 12, 22))
    assert shown.previous_kwh == Decimal("1000.00")
    assert shown.usage_kwh == Decimal("120.50")
    assert shown.plausible and not shown.rollover
    # Beijing residential, December, 120.5 kWh in tier 1 at 0.4883: 58.84 yuan
    assert shown.estimate_fen == 5884
    assert session.scalar(sa.select(sa.func.count()).select_from(Reading)) == 1  # nothing new


@pytest.mark.parametrize(("value", "code"), [
    ("990", "reading_went_down"),      # lower, no meter change, not near the wrap
    ("1500", "usage_high"),            # 500 kWh against an average of 100
    ("1010", "usage_low"),             # 10 kWh
])
def test_implausible_readings_warn_and_are_flagged(session, clock, world, value, code) -> None:
    shown = service.preview(session, clock, context.settings(), world.customer.id,
                            _entry(world, value))
    assert [f.code for f in shown.flags] == [code]
    row = _submit(session, clock, world, value)
    assert row.status is ReadingStatus.FLAGGED
    assert row.flag_reason.startswith(code)
    assert row.billing_ref is None


def test_plausible_reading_is_accepted_and_is_the_billing_systems_reading(
        session, clock, world) -> None:
    row = _submit(session, clock, world, "1100")
    assert row.status is ReadingStatus.ACCEPTED
    assert row.billing_ref == f"R{row.id}"  # the embedded engine took this very row
    assert row.photo_key and row.submitted_by_customer_id == world.customer.id
    assert session.scalar(sa.select(sa.func.count()).select_from(Reading)) == 2


def test_rollover_counts_through_the_wrap(session, clock, world) -> None:
    session.execute(sa.update(Reading).values(value_kwh=Decimal("999950")))
    session.commit()
    shown = service.preview(session, clock, context.settings(), world.customer.id,
                            _entry(world, "40"))
    assert shown.rollover and shown.usage_kwh == Decimal("90.00") and shown.plausible


def test_tou_registers_must_add_up(session, clock) -> None:
    clock.set(datetime(2026, 12, 22, 2, 0, tzinfo=UTC))
    world = make_world(session, clock, tou=True, tariff="zhejiang-residential")
    session.commit()
    with pytest.raises(service.InvalidReading) as missing:
        service.preview(session, clock, context.settings(), world.customer.id,
                        _entry(world, "1100"))
    assert missing.value.field == "peak_kwh"
    good = service.preview(session, clock, context.settings(), world.customer.id,
                           _entry(world, "1100", peak="660", valley="440"))
    assert good.registers == ("peak", "valley")
    assert good.register_usage == {"peak": Decimal("60.00"), "valley": Decimal("40.00")}
    assert good.plausible and good.estimate_fen is not None
    bad = service.preview(session, clock, context.settings(), world.customer.id,
                          _entry(world, "1100", peak="660", valley="450"))
    assert [f.code for f in bad.flags] == ["tou_sum_mismatch"]
    assert bad.estimate_fen is None


def test_bad_values_are_refused(session, clock, world) -> None:
    for value, code in (("-1", "reading_value_negative"), ("10.123", "reading_value_decimals"),
                        ("1000000", "reading_value_too_many_digits")):
        with pytest.raises(service.InvalidReading) as refused:
            service.preview(session, clock, context.settings(), world.customer.id,
                            _entry(world, value))
        assert refused.value.code == code


def test_another_customers_meter_is_not_found(session, clock, world) -> None:
    other = make_world(session, clock, "9900000002", "13900000002", "990000005678")
    session.commit()
    with pytest.raises(NotFound):
        service.preview(session, clock, context.settings(), other.customer.id,
                        _entry(world, "1100"))


def test_one_reading_per_meter_and_period_unless_rejected(session, clock, world) -> None:
    first = _submit(session, clock, world, "1500")
    with pytest.raises(service.ReadingExists):
        _submit(session, clock, world, "1100")
    session.rollback()
    staff = staff_service.create_staff(session, clock, username="auditor", display_name="A",
                                       password="a long password", role=StaffRole.ADMIN)
    service.reject(session, clock, staff, first.id, "The photo shows 1150.")
    session.commit()
    assert _submit(session, clock, world, "1150").status is ReadingStatus.ACCEPTED


@pytest.mark.parametrize(("day", "is_open", "opens"), [
    (datetime(2026, 12, 19, 15, 59, tzinfo=UTC), False, date(2026, 12, 20)),  # 23:59 local
    (datetime(2026, 12, 19, 16, 0, tzinfo=UTC), True, date(2026, 12, 20)),    # 00:00 on 20th
    (datetime(2026, 12, 31, 15, 59, tzinfo=UTC), True, date(2026, 12, 20)),
    (datetime(2026, 12, 31, 16, 0, tzinfo=UTC), False, date(2027, 1, 20)),    # 1 Jan local
])
def test_window_follows_the_districts_local_date(session, clock, world, day, is_open,
                                                 opens) -> None:
    clock.set(day)
    (choice,) = service.meters_for_customer(session, clock, context.settings(),
                                            world.customer.id)
    assert (choice.window.is_open, choice.window.opens_on) == (is_open, opens)
    if not is_open:
        with pytest.raises(service.WindowClosed) as closed:
            service.preview(session, clock, context.settings(), world.customer.id,
                            _entry(world, "1100"))
        assert closed.value.params == {"date": opens}


def test_window_override_per_district_and_month_end() -> None:
    s = Settings(reading_window_first_day=25, reading_window_last_day=31,
                 reading_windows={"d-x": (5, 9)})
    feb = service.window(s, "other", date(2027, 2, 27))
    assert (feb.is_open, feb.opens_on, feb.closes_on) == (True, date(2027, 2, 25),
                                                         date(2027, 2, 28))
    x = service.window(s, "d-x", date(2027, 2, 10))
    assert (x.is_open, x.opens_on) == (False, date(2027, 3, 5))


class _Refusing:
    def submit_reading(self, submission):
        raise BillingRejected("reading_below_previous", "no")


class _Down:
    def submit_reading(self, submission):
        raise BillingUnavailable("down")


def test_billing_outage_keeps_nothing_and_a_refusal_flags(session, clock, world,
                                                           photo_dir) -> None:
    with pytest.raises(service.BillingDown):
        service.submit(session, clock, context.settings(), world.customer.id,
                       _entry(world, "1100"), [Upload("a.jpg", jpeg())], system=_Down())
    session.rollback()
    assert list(photo_dir.glob("*")) == []
    assert session.scalar(sa.select(sa.func.count()).select_from(Reading)) == 1
    row = service.submit(session, clock, context.settings(), world.customer.id,
                         _entry(world, "1100"), [Upload("a.jpg", jpeg())], system=_Refusing())
    session.commit()
    assert row.status is ReadingStatus.FLAGGED
    assert row.flag_reason == "billing_rejected code=reading_below_previous"
    assert [p.name for p in photo_dir.glob("*")] == [row.photo_key]


def _staff(session, clock, role=StaffRole.AUDITOR, district_id=None, name="aud"):
    return staff_service.create_staff(session, clock, username=name, display_name=name,
                                      password="a long password", role=role,
                                      district_ids=[district_id] if district_id else [])


def test_staff_decisions_record_who_when_why_and_tell_the_customer(session, clock,
                                                                   world) -> None:
    staff = _staff(session, clock, district_id=world.account.district_id)
    a = _submit(session, clock, world, "1500")
    service.accept(session, clock, staff, a.id, "Checked the photo: a cold week.",
                   system=world.system)
    session.commit()
    assert (a.status, a.decided_by_staff_id, a.decided_at, a.decision_note) == (
        ReadingStatus.ACCEPTED, staff.id, clock.now(), "Checked the photo: a cold week.")
    assert a.billing_ref == f"R{a.id}"
    entry = session.scalars(sa.select(AuditEntry)).one()
    assert (entry.action, entry.staff_id, entry.object_id) == ("reading.accept", staff.id,
                                                               str(a.id))
    message = session.scalars(sa.select(OutboxMessage)).one()
    assert message.payload["event"] == "reading_accepted"
    assert message.payload["customer_id"] == world.customer.id
    assert message.payload["params"] == {"account_no": "9900000001", "period": "2026-12",
                                         "value_kwh": "1500.00"}
    with pytest.raises(service.AlreadyDecided):
        service.reject(session, clock, staff, a.id, "too late")


def test_correct_replaces_the_value_and_keeps_the_old_one(session, clock, world) -> None:
    staff = _staff(session, clock, district_id=world.account.district_id)
    row = _submit(session, clock, world, "990")
    with pytest.raises(service.ReasonRequired):
        service.correct(session, clock, context.settings(), staff, row.id,
                        _entry(world, "1099"), "  ", system=world.system)
    service.correct(session, clock, context.settings(), staff, row.id, _entry(world, "1099"),
                    "Photo reads 1099; a digit was missed.", system=world.system)
    session.commit()
    assert (row.status, row.value_kwh, row.corrected_from_kwh) == (
        ReadingStatus.ACCEPTED, Decimal("1099.00"), Decimal("990.00"))
    details = session.scalars(sa.select(AuditEntry)).one().details
    assert details["before"] == {"value_kwh": "990.00"}
    assert details["after"] == {"value_kwh": "1099.00"}


def test_reject_needs_a_reason_and_tells_it(session, clock, world) -> None:
    staff = _staff(session, clock, district_id=world.account.district_id)
    row = _submit(session, clock, world, "990")
    with pytest.raises(service.ReasonRequired):
        service.reject(session, clock, staff, row.id, "")
    service.reject(session, clock, staff, row.id, "The photo is of another meter.")
    session.commit()
    assert row.status is ReadingStatus.REJECTED
    message = session.scalars(sa.select(OutboxMessage)).one()
    assert message.payload["params"]["reason"] == "The photo is of another meter."
    assert message.dedup_key == f"notify:reading_rejected:reading:{row.id}"


def test_other_districts_staff_do_not_see_the_reading(session, clock, world) -> None:
    other = make_world(session, clock, "9900000002", "13900000002", "990000005678")
    staff = _staff(session, clock, district_id=other.account.district_id)
    row = _submit(session, clock, world, "990")
    assert service.flagged_for_staff(session, staff) == []
    for call in (lambda: service.accept(session, clock, staff, row.id, system=world.system),
                 lambda: service.reject(session, clock, staff, row.id, "no"),
                 lambda: service.photo_for_staff(session, staff, row.id)):
        with pytest.raises(NotFound):
            call()
    assert row.status is ReadingStatus.FLAGGED


# SQLite serialises writers before they read: the race needs PostgreSQL.
@pytest.mark.parametrize("database_url", [pytest.param("pg", marks=pytest.mark.pg)],
                         indirect=True)
def test_two_submissions_racing_for_one_meter_make_one_reading(database_url, app, session,
                                                               clock, world) -> None:
    from billing_adapter.local.system import LocalBillingSystem
    from portal.extensions import db
    from tests.helpers import run_concurrently

    outcomes: list[str] = []
    meter_id, customer_id = world.meter.id, world.customer.id

    def submit_once() -> None:
        with app.app_context():
            try:
                service.submit(db.session, clock, context.settings(), customer_id,
                               Entry(meter_id, Decimal("1100")), [Upload("a.jpg", jpeg())],
                               system=LocalBillingSystem(db.session, clock))
                db.session.commit()
                outcomes.append("saved")
            except service.ReadingExists:
                db.session.rollback()
                outcomes.append("exists")

    run_concurrently(submit_once, 4)
    assert sorted(outcomes) == ["exists"] * 3 + ["saved"]
    assert session.scalar(sa.select(sa.func.count()).select_from(Reading)
                          .where(Reading.period == "2026-12")) == 1


def test_a_billing_refusal_on_accept_changes_nothing(session, clock, world) -> None:
    staff = _staff(session, clock, district_id=world.account.district_id)
    row = _submit(session, clock, world, "1500")
    with pytest.raises(service.BillingRefused) as refused:
        service.accept(session, clock, staff, row.id, system=_Refusing())
    assert refused.value.params == {"code": "reading_below_previous"}
    session.rollback()
    assert session.get(Reading, row.id).status is ReadingStatus.FLAGGED
    assert session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == 0

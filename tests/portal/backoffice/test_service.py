"""Staff administration, sign-in checks and district scoping at the query layer."""

from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa

from portal.accounts.models import District, ElectricityAccount
from portal.backoffice import service
from portal.backoffice.models import ROLE_PERMISSIONS, Permission, StaffMember, StaffRole
from portal.bills.models import Bill
from portal.kernel.errors import NotFound
from portal.readings.models import Reading
from tests import factories
from tests.helpers import run_concurrently

PASSWORD = "a long enough password"


@pytest.fixture
def two_districts(session, clock):
    a = factories.account(session, clock, "9900000001", meter_no="990000000001")
    b = factories.account(session, clock, "9900000002", meter_no="990000000002")
    factories.bill(session, clock, a)
    factories.bill(session, clock, b)
    return a, b


def _staff(session, clock, username, role, districts=(), **kw) -> StaffMember:
    return service.create_staff(session, clock, username=username, display_name=username,
                                password=PASSWORD, role=role,
                                district_ids=[d.id for d in districts], **kw)


def test_permission_table_gives_admins_everything_and_readers_little() -> None:
    assert ROLE_PERMISSIONS[StaffRole.ADMIN] == set(Permission)
    assert Permission.APPROVE_REFUND in ROLE_PERMISSIONS[StaffRole.SUPERVISOR]
    assert Permission.APPROVE_REFUND not in ROLE_PERMISSIONS[StaffRole.COLLECTOR]
    assert Permission.REQUEST_REFUND in ROLE_PERMISSIONS[StaffRole.COLLECTOR]
    assert ROLE_PERMISSIONS[StaffRole.READER] == {Permission.VIEW_ACCOUNTS,
                                                  Permission.RECORD_READINGS}


def test_create_staff_normalises_and_must_change_password(session, clock, two_districts) -> None:
    staff = _staff(session, clock, "  Li.Na ", StaffRole.AUDITOR, [two_districts[0].district])
    assert staff.username == "li.na" and staff.must_change_password
    assert staff.get_id() == f"s:{staff.id}"
    assert staff.password_hash != PASSWORD and staff.password_hash.startswith("$argon2id$")
    assert [d.code for d in staff.districts] == ["d-9900000001"]
    assert staff.can(Permission.REVIEW_BILLS) and not staff.can(Permission.APPROVE_REFUND)
    staff.is_active = False
    assert not staff.can(Permission.REVIEW_BILLS)


@pytest.mark.parametrize(("username", "password", "role", "error"), [
    ("x", PASSWORD, StaffRole.ADMIN, service.BadUsername),
    ("has space", PASSWORD, StaffRole.ADMIN, service.BadUsername),
    ("short", "too short", StaffRole.ADMIN, service.WeakPassword),
    ("samename01", "SameName01", StaffRole.ADMIN, service.WeakPassword),
    ("nodistrict", PASSWORD, StaffRole.READER, service.DistrictsRequired),
])
def test_create_staff_refuses(session, clock, username, password, role, error) -> None:
    with pytest.raises(error):
        service.create_staff(session, clock, username=username, display_name="", password=password,
                             role=role)
    assert session.scalar(sa.select(sa.func.count()).select_from(StaffMember)) == 0


def test_duplicate_username_and_unknown_district(session, clock, two_districts) -> None:
    _staff(session, clock, "wang", StaffRole.ADMIN)
    with pytest.raises(service.UsernameTaken):
        _staff(session, clock, "WANG", StaffRole.ADMIN)
    with pytest.raises(service.UnknownDistrict) as exc:
        service.district_ids_for_codes(session, ["d-9900000001", "nowhere"])
    assert exc.value.detail == "nowhere"
    assert service.district_ids_for_codes(session, ["d-9900000002"]) == [
        two_districts[1].district_id]
    with pytest.raises(service.UnknownDistrict):
        service.create_staff(session, clock, username="zhao", display_name="", password=PASSWORD,
                             role=StaffRole.READER, district_ids=[987654])


def test_authenticate_counts_failures_and_refuses_inactive(session, clock) -> None:
    staff = _staff(session, clock, "chen", StaffRole.ADMIN)
    assert service.authenticate(session, clock, "chen", "wrong password") is None
    assert service.authenticate(session, clock, "nobody", PASSWORD) is None
    assert staff.failed_logins == 1 and staff.last_failed_login_at == clock.now()
    assert service.authenticate(session, clock, " CHEN ", PASSWORD) is staff
    service.record_sign_in(staff, clock.now())
    assert staff.failed_logins == 0 and staff.last_login_at == clock.now()
    staff.is_active = False
    assert service.authenticate(session, clock, "chen", PASSWORD) is None


def test_change_password(session, clock) -> None:
    staff = _staff(session, clock, "liu", StaffRole.ADMIN)
    with pytest.raises(service.WrongPassword):
        service.change_password(session, clock, staff, "not it", "another good password")
    with pytest.raises(service.SamePassword):
        service.change_password(session, clock, staff, PASSWORD, PASSWORD)
    with pytest.raises(service.WeakPassword):
        service.change_password(session, clock, staff, PASSWORD, "short")
    assert staff.must_change_password
    service.change_password(session, clock, staff, PASSWORD, "another good password")
    assert not staff.must_change_password and staff.password_changed_at == clock.now()
    assert service.authenticate(session, clock, "liu", "another good password") is staff
    service.reset_password(session, clock, staff, "temporary password")
    assert staff.must_change_password
    assert service.authenticate(session, clock, "liu", "temporary password") is staff


def test_totp_accepts_a_code_once_and_tolerates_one_step_of_drift(session, clock,
                                                                 two_districts) -> None:
    staff = _staff(session, clock, "sun", StaffRole.SUPERVISOR, [two_districts[0].district])
    assert staff.needs_totp
    assert not service.verify_totp(session, clock, staff, "123456")  # not enrolled yet
    secret = service.new_totp_secret()
    totp = pyotp.TOTP(secret)
    assert "issuer=Dianfei" in service.totp_uri(staff, secret)
    later = totp.at(clock.now() + timedelta(minutes=10))  # a real code, but not for now
    assert not service.enrol_totp(session, clock, staff, secret, later)
    assert staff.totp_secret is None
    assert service.enrol_totp(session, clock, staff, secret, totp.at(clock.now()))
    session.refresh(staff)
    assert staff.totp_secret == secret

    clock.advance(timedelta(seconds=30))
    code = totp.at(clock.now())
    assert service.verify_totp(session, clock, staff, code[:3] + " " + code[3:])
    assert not service.verify_totp(session, clock, staff, code), "a code is used once"
    clock.advance(timedelta(seconds=30))
    late = totp.at(clock.now() - timedelta(seconds=30))
    assert not service.verify_totp(session, clock, staff, late), "older than the last used"
    clock.advance(timedelta(seconds=30))
    assert service.verify_totp(session, clock, staff, totp.at(clock.now() - timedelta(seconds=30)))
    clock.advance(timedelta(seconds=90))
    assert not service.verify_totp(session, clock, staff, totp.at(clock.now() -
                                                                 timedelta(seconds=60)))
    assert not service.verify_totp(session, clock, staff, "12345x")
    service.reset_totp(session, staff)
    assert staff.totp_secret is None and staff.totp_last_step is None


def test_the_last_active_admin_stays(session, clock, two_districts) -> None:
    first = _staff(session, clock, "admin1", StaffRole.ADMIN)
    with pytest.raises(service.LastAdmin):
        service.deactivate(session, first)
    with pytest.raises(service.LastAdmin):
        service.update_staff(session, first, display_name="x", role=StaffRole.READER,
                             district_ids=[two_districts[0].district_id])
    second = _staff(session, clock, "admin2", StaffRole.ADMIN)
    service.update_staff(session, first, display_name=" 周 ", role=StaffRole.READER,
                         district_ids=[two_districts[0].district_id])
    assert first.role is StaffRole.READER and first.display_name == "周"
    with pytest.raises(service.LastAdmin):
        service.deactivate(session, second)
    service.deactivate(session, first)
    assert not first.is_active
    assert [s.username for s in service.list_staff(session)] == ["admin2", "admin1"]
    with pytest.raises(NotFound):
        service.get_staff(session, 987654)


def test_scoping_keeps_staff_to_their_districts(session, clock, two_districts) -> None:
    a, b = two_districts
    reader = _staff(session, clock, "reader-a", StaffRole.READER, [a.district])
    both = _staff(session, clock, "super-ab", StaffRole.SUPERVISOR, [a.district, b.district])
    admin = _staff(session, clock, "root", StaffRole.ADMIN)
    session.add(Reading(meter_id=a.meters[0].id, period="2026-11", read_on=clock.now().date(),
                        value_kwh=100, source="utility", created_at=clock.now()))
    session.add(Reading(meter_id=b.meters[0].id, period="2026-11", read_on=clock.now().date(),
                        value_kwh=200, source="utility", created_at=clock.now()))
    session.flush()

    assert service.visible_district_ids(session, reader) == {a.district_id}
    assert service.visible_district_ids(session, both) == {a.district_id, b.district_id}
    assert service.visible_district_ids(session, admin) is None

    def accounts(staff):
        return {x.account_no for x in session.scalars(service.scoped_accounts(session, staff))}

    def bills(staff):
        return {x.account_id for x in session.scalars(service.scoped_bills(session, staff))}

    def readings(staff):
        return {int(x.value_kwh) for x in session.scalars(service.scoped_readings(session, staff))}

    assert accounts(reader) == {"9900000001"}
    assert accounts(both) == accounts(admin) == {"9900000001", "9900000002"}
    assert bills(reader) == {a.id} and bills(admin) == {a.id, b.id}
    assert readings(reader) == {100} and readings(both) == {100, 200}

    assert service.get_scoped_account(session, reader, a.id) is a
    with pytest.raises(NotFound):
        service.get_scoped_account(session, reader, b.id)
    b_bill = session.scalar(sa.select(Bill).where(Bill.account_id == b.id))
    assert service.get_scoped_bill(session, admin, b_bill.id) is b_bill
    with pytest.raises(NotFound):
        service.get_scoped_bill(session, reader, b_bill.id)

    # membership is read from the database each time: removing a district takes effect at once
    service.update_staff(session, both, display_name="", role=StaffRole.SUPERVISOR,
                         district_ids=[b.district_id])
    session.flush()
    assert accounts(both) == {"9900000002"}


def test_a_member_without_districts_sees_nothing(session, clock, two_districts) -> None:
    reader = _staff(session, clock, "reader-a", StaffRole.READER, [two_districts[0].district])
    session.execute(sa.text("DELETE FROM staff_districts"))
    assert service.visible_district_ids(session, reader) == set()
    assert service.search_accounts(session, reader).total == 0


def test_search_accounts_by_number_or_holder_and_pages(session, clock) -> None:
    district = District(code="d-big", name="大区")
    session.add(district)
    for n in range(25):
        session.add(ElectricityAccount(
            account_no=f"55{n:08d}", holder_name="张三" if n % 2 else "李四_%", address="路",
            district=district, customer_class="residential", tariff_code="t",
            created_at=clock.now()))
    session.flush()
    admin = _staff(session, clock, "root", StaffRole.ADMIN)
    page = service.search_accounts(session, admin, "", page=2, per_page=10)
    assert page.total == 25 and page.pages == 3 and len(page.items) == 10
    assert page.items[0].account_no == "5500000010"
    assert service.search_accounts(session, admin, "张三").total == 12
    assert service.search_accounts(session, admin, "_%").total == 13   # LIKE wildcards escaped
    assert service.search_accounts(session, admin, " 550000002").total == 5
    assert service.search_accounts(session, admin, "0000002").total == 0  # prefix, not infix


def test_promoting_to_admin_needs_no_district(session, clock, two_districts) -> None:
    reader = _staff(session, clock, "promoted", StaffRole.READER, [two_districts[0].district])
    service.update_staff(session, reader, display_name="", role=StaffRole.ADMIN, district_ids=[])
    assert reader.role is StaffRole.ADMIN and reader.display_name == "promoted"
    assert reader.needs_totp and service.visible_district_ids(session, reader) is None


def test_concurrent_creates_with_one_username_make_one_member(app, clock) -> None:
    from portal.extensions import db

    outcomes: list[str] = []

    def create() -> None:
        with app.app_context():
            try:
                service.create_staff(db.session, clock, username="same", display_name="",
                                     password=PASSWORD, role=StaffRole.ADMIN)
                db.session.commit()
                outcomes.append("created")
            except service.UsernameTaken:
                db.session.rollback()
                outcomes.append("taken")
            finally:
                db.session.remove()

    run_concurrently(create, 6)
    assert sorted(outcomes) == ["created"] + ["taken"] * 5


def test_one_code_sent_ten_times_at_once_signs_in_once(app, clock) -> None:
    from portal.extensions import db

    secret = service.new_totp_secret()
    with app.app_context():
        staff = service.create_staff(db.session, clock, username="boss", display_name="",
                                     password=PASSWORD, role=StaffRole.ADMIN)
        staff.totp_secret = secret
        db.session.commit()
        staff_id = staff.id
    code = pyotp.TOTP(secret).at(clock.now())
    accepted: list[bool] = []

    def verify() -> None:
        with app.app_context():
            try:
                member = db.session.get(StaffMember, staff_id)
                accepted.append(service.verify_totp(db.session, clock, member, code))
                db.session.commit()
            finally:
                db.session.remove()

    run_concurrently(verify, 10)
    assert sorted(accepted) == [False] * 9 + [True]

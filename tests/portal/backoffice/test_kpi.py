"""KPI figures on a small hand-built data set with known answers (two districts, period 2026-10,
today 2026-12-03 in Shanghai), their scoping to a member's districts, and their CSV files."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from payments.channels.base import Scene
from payments.models import PaymentOrder
from payments.states import OrderStatus
from portal.accounts.models import (
    Customer,
    CustomerClass,
    District,
    ElectricityAccount,
    Meter,
)
from portal.backoffice import kpi, service
from portal.backoffice.models import StaffMember, StaffRole
from portal.bills.models import Bill, BillStatus
from portal.demo import DEMO_PASSWORD, DEMO_TOTP_SECRET
from portal.disputes.models import Dispute, DisputeCategory, DisputeStatus
from portal.extensions import db
from portal.kernel.errors import NotFound
from portal.ledger.models import EntryKind, LedgerEntry
from portal.plans.models import PaymentPlan, PlanStatus
from portal.readings.models import Reading, ReadingSource, ReadingStatus
from tests.helpers import text_of

from .staffing import staff_login

TODAY = date(2026, 12, 3)
PERIOD = "2026-10"


def _month(period: str) -> tuple[date, date]:
    year, month = map(int, period.split("-"))
    return date(year, month, 1), date(year, month, 28)


class Builder:
    def __init__(self, session, clock) -> None:
        self.session, self.clock, self.n = session, clock, 0

    def account(self, district: District, no: str) -> tuple[ElectricityAccount, Meter]:
        acct = ElectricityAccount(account_no=no, holder_name=f"户{no}", address="路1号",
                                  district=district, customer_class=CustomerClass.RESIDENTIAL,
                                  tariff_code="beijing-residential", created_at=self.clock.now())
        meter = Meter(account=acct, meter_no=f"m{no}", installed_on=date(2020, 1, 1))
        self.session.add_all([acct, meter])
        self.session.flush()
        return acct, meter

    def bill(self, acct, period: str, total: int, due: date, *, version: int = 1,
             status: BillStatus = BillStatus.ISSUED, charge: bool = True) -> Bill:
        start, end = _month(period)
        b = Bill(account_id=acct.id, period=period, version=version, period_start=start,
                 period_end=end, kwh=Decimal(100), tariff_code=acct.tariff_code,
                 total_fen=total, status=status, due_date=due, created_at=self.clock.now())
        self.session.add(b)
        self.session.flush()
        if charge:
            self.entry(acct, b, EntryKind.CHARGE, total, due)
        return b

    def entry(self, acct, bill, kind: EntryKind, amount: int, on: date,
              ref: str | None = None) -> None:
        self.n += 1
        self.session.add(LedgerEntry(account_id=acct.id, bill_id=bill.id if bill else None,
                                     kind=kind, amount_fen=amount, ref=ref or f"t:{self.n}",
                                     effective_on=on, created_at=self.clock.now()))

    def reading(self, meter, source: ReadingSource, status: ReadingStatus) -> None:
        self.session.add(Reading(meter_id=meter.id, period=PERIOD, read_on=date(2026, 10, 31),
                                 value_kwh=Decimal(100), source=source, status=status,
                                 created_at=self.clock.now()))

    def order(self, acct, channel: str, amount: int, paid_at: datetime,
              status: OrderStatus = OrderStatus.SUCCEEDED) -> None:
        self.n += 1
        self.session.add(PaymentOrder(
            order_no=f"KPI{self.n:06d}", account_id=acct.id, customer_id=None, channel=channel,
            scene=Scene.DESKTOP, amount_fen=amount, status=status, expires_at=paid_at,
            paid_at=paid_at, created_at=paid_at, updated_at=paid_at))


def build(session, clock) -> tuple[District, District]:
    """District A (da): a1, a2; district B (db): b1. The answers are in the tests below."""
    da, dbb = District(code="da", name="A区"), District(code="db", name="B区")
    session.add_all([da, dbb])
    b = Builder(session, clock)
    a1, m1 = b.account(da, "7000000001")
    a2, m2 = b.account(da, "7000000002")
    b1, m3 = b.account(dbb, "7000000003")
    due = date(2026, 11, 25)
    # collection of 2026-10 -------------------------------------------------------------
    bill = b.bill(a1, PERIOD, 10000, due)
    b.entry(a1, bill, EntryKind.PAYMENT, -10000, date(2026, 11, 20))
    v1 = b.bill(a2, PERIOD, 5000, due)                   # adjusted to v2 (6000)
    v2 = b.bill(a2, PERIOD, 6000, due, version=2, charge=False)
    b.entry(a2, v2, EntryKind.ADJUSTMENT, 1000, due, "adjustment:K1")
    b.entry(a2, v1, EntryKind.ADJUSTMENT, -5000, due, "adjustment:K1:carry-out")
    b.entry(a2, v2, EntryKind.ADJUSTMENT, 5000, due, "adjustment:K1:carry-in")
    b.entry(a2, v2, EntryKind.PAYMENT, -2000, date(2026, 11, 30))
    b.entry(a2, None, EntryKind.ADJUSTMENT, 500, date(2026, 12, 1), "prepaid:2:9:x:from")
    b.entry(a2, v2, EntryKind.ADJUSTMENT, -500, date(2026, 12, 1), "prepaid:2:9:x:to")
    b.entry(a2, v2, EntryKind.REFUND, 300, date(2026, 12, 2))
    b.entry(a2, v2, EntryKind.PAYMENT, -100, date(2026, 12, 10))  # after today: not yet
    b.bill(b1, PERIOD, 8000, due)                          # nothing paid
    # arrears on 2026-12-03 -------------------------------------------------------------
    b.bill(a1, "2026-09", 100, date(2026, 11, 3))           # 30 days past due: 0-30
    b.bill(a1, "2026-08", 200, date(2026, 11, 2))           # 31 days: 31-90
    b.bill(a1, "2026-01", 2000, date(2026, 2, 25))          # >180
    b.bill(b1, "2026-08", 4000, date(2026, 9, 25))          # 69 days: 31-90
    b.bill(b1, "2026-05", 3000, date(2026, 6, 25))          # 161 days: 91-180
    b.bill(b1, "2026-11", 9000, date(2026, 12, 25))         # not due yet
    # held for review ------------------------------------------------------------------------
    b.bill(a1, "2026-11", 7000, date(2026, 12, 25), status=BillStatus.PENDING_REVIEW,
           charge=False)
    b.bill(a2, "2026-11", 500, date(2026, 12, 25), status=BillStatus.PENDING_REVIEW,
           charge=False)                                   # superseded by v2 below
    b.bill(a2, "2026-11", 600, date(2026, 12, 25), version=2, charge=False)
    # readings of 2026-10 -----------------------------------------------------------------------
    b.reading(m1, ReadingSource.UTILITY, ReadingStatus.ACCEPTED)
    b.reading(m2, ReadingSource.CUSTOMER, ReadingStatus.ACCEPTED)
    b.reading(m2, ReadingSource.CUSTOMER, ReadingStatus.FLAGGED)
    b.reading(m1, ReadingSource.CUSTOMER, ReadingStatus.REJECTED)
    b.reading(m3, ReadingSource.UTILITY, ReadingStatus.ACCEPTED)
    # payments in October (Shanghai time) -------------------------------------------------
    b.order(a1, "wechat", 10000, datetime(2026, 10, 15, 4, tzinfo=UTC))
    b.order(a2, "alipay", 2000, datetime(2026, 10, 31, 15, 30, tzinfo=UTC))  # 23:30 local
    b.order(a2, "alipay", 999, datetime(2026, 10, 31, 16, 10, tzinfo=UTC))   # Nov 1 local
    b.order(b1, "wechat", 500, datetime(2026, 10, 5, tzinfo=UTC), OrderStatus.FAILED)
    b.order(b1, "stripe", 700, datetime(2026, 10, 2, tzinfo=UTC))
    disputes_and_plans(session, clock, a1, a2, b1)
    session.flush()
    return da, dbb


def disputes_and_plans(session, clock, a1, a2, b1) -> None:
    """A: two disputes resolved in October (one on time, one a day late in Shanghai though on
    time in UTC), one withdrawn, one open past its due date, one open before it; two active plans
    (5000 + 3500), one defaulted in October, one in September, one completed. B: one dispute
    resolved on 1 October local time (30 September UTC), on time; one plan defaulted on
    1 November local time (31 October UTC)."""
    now = clock.now()
    customer = Customer(phone="13900000099", password_hash="x", created_at=now)
    session.add(customer)
    session.flush()
    bills = {(b.account_id, b.period): b for b in session.scalars(sa.select(Bill))}

    def dispute(acct, period, status, due, resolved_at=None) -> None:
        bill = bills[(acct.id, period)]
        session.add(Dispute(bill_id=bill.id, account_id=acct.id, customer_id=customer.id,
                            category=DisputeCategory.READING, description="?",
                            disputed_fen=100, status=status, opened_at=now, sla_due_on=due,
                            updated_at=now, resolved_at=resolved_at))
        session.flush()

    utc = UTC
    dispute(a1, PERIOD, DisputeStatus.UPHELD, date(2026, 10, 20),
            datetime(2026, 10, 20, 2, tzinfo=utc))
    dispute(a2, PERIOD, DisputeStatus.ADJUSTED, date(2026, 10, 20),
            datetime(2026, 10, 20, 16, 30, tzinfo=utc))            # 21 October in Shanghai
    dispute(a1, "2026-01", DisputeStatus.WITHDRAWN, date(2026, 10, 1),
            datetime(2026, 10, 25, tzinfo=utc))
    dispute(a1, "2026-09", DisputeStatus.INVESTIGATING, date(2026, 12, 1))
    dispute(a1, "2026-08", DisputeStatus.OPEN, date(2026, 12, 5))
    dispute(b1, PERIOD, DisputeStatus.UPHELD, date(2026, 10, 8),
            datetime(2026, 9, 30, 20, tzinfo=utc))

    def plan(acct, status, total, defaulted_at=None) -> None:
        session.add(PaymentPlan(account_id=acct.id, customer_id=customer.id, status=status,
                                total_fen=total, reason="?", requested_installments=3,
                                requested_first_due_on=date(2026, 10, 1), installment_count=3,
                                first_due_on=date(2026, 10, 1), requested_at=now,
                                updated_at=now, defaulted_at=defaulted_at))

    plan(a1, PlanStatus.ACTIVE, 5000)
    plan(a2, PlanStatus.ACTIVE, 3500)
    plan(a2, PlanStatus.DEFAULTED, 900, datetime(2026, 10, 15, tzinfo=utc))
    plan(a1, PlanStatus.DEFAULTED, 800, datetime(2026, 9, 10, tzinfo=utc))
    plan(a1, PlanStatus.COMPLETED, 700)
    plan(b1, PlanStatus.DEFAULTED, 600, datetime(2026, 10, 31, 17, tzinfo=utc))


@pytest.fixture
def data(app, clock):
    with app.app_context():
        da, dbb = build(db.session, clock)
        for code, district in (("a", da), ("b", dbb)):
            member = service.create_staff(db.session, clock, username=f"{code}-super",
                                          display_name=f"{code} 主管", password=DEMO_PASSWORD,
                                          role=StaffRole.SUPERVISOR, district_ids=[district.id],
                                          must_change_password=False)
            member.totp_secret = DEMO_TOTP_SECRET
        service.create_staff(db.session, clock, username="root", display_name="root",
                             password=DEMO_PASSWORD, role=StaffRole.ADMIN,
                             must_change_password=False).totp_secret = DEMO_TOTP_SECRET
        db.session.commit()
        return {"da": da.id, "db": dbb.id}


@pytest.fixture(params=["live", "snapshot"])
def source(request) -> str:
    """The known answers hold computed live and read from the refresh task's snapshot."""
    return request.param


def _board(app, ids, source: str = "live"):
    from portal import context
    with app.app_context():
        districts = list(db.session.scalars(sa.select(District).order_by(District.code)))
        scope = kpi.Scope(districts)
        zone = context.settings().zone
        if source == "live":
            return kpi.dashboard(db.session, scope, PERIOD, TODAY, zone)
        kpi.refresh(db.session, context.clock(), zone, PERIOD)
        db.session.commit()
        board = kpi.snapshot(db.session, scope, PERIOD, TODAY)
        assert board is not None and board.computed_at is not None
        return board


def test_collection_rate(app, data, source) -> None:
    board = _board(app, data, source)
    a, b = board.collection[data["da"]], board.collection[data["db"]]
    # A: 10000 + 6000 (the newest version) billed; 10000 + (2000 + 500 - 300) collected, the
    # payment dated after today not yet
    assert (a.bills, a.billed_fen, a.collected_fen) == (2, 16000, 12200)
    assert a.rate == Decimal("76.3")
    assert (b.bills, b.billed_fen, b.collected_fen, b.rate) == (1, 8000, 0, Decimal("0.0"))
    total = board.total_collection()
    assert (total.billed_fen, total.collected_fen, total.rate) == (24000, 12200,
                                                                   Decimal("50.8"))


def test_arrears_by_age(app, data, source) -> None:
    board = _board(app, data, source)
    a, b = board.arrears[data["da"]], board.arrears[data["db"]]
    # a2's v2 owes 1000 + 5000 - 2000 - 500 + 300 - 100 = 3700 (a later-dated payment is paid)
    assert a.owed_fen == {"0-30": 3700 + 100, "31-90": 200, "91-180": 0, ">180": 2000}
    assert a.bills == {"0-30": 2, "31-90": 1, "91-180": 0, ">180": 1}
    assert b.owed_fen == {"0-30": 8000, "31-90": 4000, "91-180": 3000, ">180": 0}
    assert board.total_arrears().owed_fen["0-30"] == 11800


def test_reading_rates_held_bills_and_payments_by_channel(app, data, source) -> None:
    board = _board(app, data, source)
    a, b = board.readings[data["da"]], board.readings[data["db"]]
    assert (a.total, a.self_read, a.flagged) == (4, 3, 2)
    assert (a.self_rate, a.flagged_rate) == (Decimal("75.0"), Decimal("50.0"))
    assert (b.self_rate, b.flagged_rate) == (Decimal("0.0"), Decimal("0.0"))
    assert (board.held[data["da"]].bills, board.held[data["da"]].total_fen) == (1, 7000)
    assert data["db"] not in board.held
    assert board.payments[data["da"]].count == {"wechat": 1, "alipay": 1}
    assert board.payments[data["da"]].amount_fen == {"wechat": 10000, "alipay": 2000}
    assert board.payments[data["db"]].amount_fen == {"stripe": 700}
    assert board.channels == ["alipay", "stripe", "wechat"]


def test_a_member_sees_only_their_districts_figures(app, web, clock, data) -> None:
    staff_login(web, clock, "a-super")
    page = text_of(web.get(f"/staff/kpis?period={PERIOD}&lang=en"))
    assert "A区" in page and "B区" not in page
    assert "76.3%" in page and "¥160.00" in page and "¥80.00" not in page
    assert web.get(f"/staff/kpis?period={PERIOD}&district=db").status_code == 404
    assert web.get(f"/staff/kpis/collection.csv?period={PERIOD}&district=db").status_code == 404
    csv_text = web.get(f"/staff/kpis/collection.csv?period={PERIOD}").get_data(as_text=True)
    assert csv_text.splitlines() == [
        "district,period,bills,billed_yuan,collected_yuan,collection_rate_pct",
        "da,2026-10,2,160.00,122.00,76.3",
        "all,2026-10,2,160.00,122.00,76.3",
    ]
    with app.app_context():
        member = db.session.scalar(sa.select(StaffMember).filter_by(username="a-super"))
        with pytest.raises(NotFound):
            kpi.scope(db.session, member, "db")


def test_csv_files_of_every_figure(app, web, clock, data) -> None:
    staff_login(web, clock, "root")
    files = {f: web.get(f"/staff/kpis/{f}.csv?period={PERIOD}") for f in kpi.FIGURES}
    assert all(r.status_code == 200 and r.mimetype == "text/csv" for r in files.values())
    lines = {f: r.get_data(as_text=True).splitlines() for f, r in files.items()}
    assert "all,2026-12-03,>180,1,20.00" in lines["arrears"]
    assert "db,2026-12-03,91-180,1,30.00" in lines["arrears"]
    assert "da,2026-10,4,3,75.0,2,50.0" in lines["readings"]
    assert lines["held"][1:] == ["da,1,70.00", "db,0,0.00", "all,1,70.00"]
    assert "all,2026-10,alipay,1,20.00" in lines["payments"]
    assert "db,2026-10,wechat,0,0.00" in lines["payments"]
    assert web.get("/staff/kpis/nothing.csv").status_code == 404
    page = text_of(web.get(f"/staff/kpis?period={PERIOD}&lang=en"))
    assert "A区" in page and "B区" in page
    # a bad period falls back to last month, never an error
    assert web.get("/staff/kpis?period=2026-13").status_code == 200


def test_dates_are_in_the_utilitys_zone(app, data) -> None:
    start, end = kpi.month_bounds(PERIOD, ZoneInfo("Asia/Shanghai"))
    assert start.astimezone(UTC) == datetime(2026, 9, 30, 16, tzinfo=UTC)
    assert end - start == timedelta(days=31)


def test_dispute_sla_compliance_and_plans(app, data, source) -> None:
    board = _board(app, data, source)
    a, b = board.disputes[data["da"]], board.disputes[data["db"]]
    assert (a.resolved, a.on_time, a.rate, a.open_overdue) == (2, 1, Decimal("50.0"), 1)
    assert (b.resolved, b.on_time, b.rate, b.open_overdue) == (1, 1, Decimal("100.0"), 0)
    assert board.total_disputes().rate == Decimal("66.7")
    pa = board.plans[data["da"]]
    assert (pa.active, pa.active_fen, pa.defaulted) == (2, 8500, 1)
    assert data["db"] not in board.plans
    assert board.total_plans().defaulted == 1


def test_dispute_and_plan_csv_files(app, web, clock, data) -> None:
    staff_login(web, clock, "b-super")
    disputes = web.get(f"/staff/kpis/disputes.csv?period={PERIOD}").get_data(as_text=True)
    assert disputes.splitlines()[1:] == ["db,2026-10,1,1,100.0,0", "all,2026-10,1,1,100.0,0"]
    plans = web.get(f"/staff/kpis/plans.csv?period={PERIOD}").get_data(as_text=True)
    assert plans.splitlines()[1:] == ["db,2026-10,0,0.00,0", "all,2026-10,0,0.00,0"]
    page = text_of(web.get(f"/staff/kpis?period={PERIOD}&lang=en"))
    assert "Dispute SLA compliance" in page and "Payment plans" in page


def test_the_dashboard_reads_the_snapshot_and_says_as_of_when(app, web, clock, data) -> None:
    from portal import context, tasks
    with app.app_context():
        assert tasks.refresh_kpis() == 2 * len(kpi.FIGURES)  # last month (2026-11) of today
        kpi.refresh(db.session, context.clock(), context.settings().zone, PERIOD)
        # a payment after the snapshot: shown at the next refresh
        bill = db.session.scalar(sa.select(Bill).where(Bill.period == PERIOD,
                                                       Bill.total_fen == 8000))
        db.session.add(LedgerEntry(account_id=bill.account_id, bill_id=bill.id,
                                   kind=EntryKind.PAYMENT, amount_fen=-8000, ref="t:late",
                                   effective_on=TODAY, created_at=clock.now()))
        db.session.commit()
        periods = set(db.session.scalars(sa.select(kpi.KpiSnapshot.period)))
        assert periods == {"2026-11", PERIOD}
    staff_login(web, clock, "a-super")
    page = text_of(web.get(f"/staff/kpis?period={PERIOD}&lang=en"))
    assert "As of 10:00" in page  # 02:00 UTC in Shanghai
    assert "A区" in page and "B区" not in page and "76.3%" in page
    csv_text = web.get(f"/staff/kpis/collection.csv?period={PERIOD}").get_data(as_text=True)
    assert csv_text.splitlines()[1:] == ["da,2026-10,2,160.00,122.00,76.3",
                                         "all,2026-10,2,160.00,122.00,76.3"]
    web.submit("/staff/logout", {}, page="/staff")
    staff_login(web, clock, "b-super")
    csv_text = web.get(f"/staff/kpis/collection.csv?period={PERIOD}").get_data(as_text=True)
    assert csv_text.splitlines()[1] == "db,2026-10,1,80.00,0.00,0.0"  # the snapshot's 0
    # another period, or tomorrow before the first refresh: computed live
    assert "Computed just now" in text_of(web.get("/staff/kpis?period=2026-09&lang=en"))
    web.submit("/staff/logout", {}, page="/staff")
    clock.advance(timedelta(days=1))
    staff_login(web, clock, "b-super")
    csv_text = web.get(f"/staff/kpis/collection.csv?period={PERIOD}").get_data(as_text=True)
    assert csv_text.splitlines()[1] == "db,2026-10,1,80.00,80.00,100.0"


def test_a_district_the_snapshot_lacks_is_computed_live(app, clock, data) -> None:
    from portal import context
    with app.app_context():
        kpi.refresh(db.session, clock, context.settings().zone, PERIOD)
        dc = District(code="dc", name="C区")
        db.session.add(dc)
        db.session.commit()
        everything = kpi.Scope(list(db.session.scalars(sa.select(District))))
        assert kpi.snapshot(db.session, everything, PERIOD, TODAY) is None
        only_a = kpi.Scope([db.session.get(District, data["da"])])
        assert kpi.snapshot(db.session, only_a, PERIOD, TODAY) is not None
        board = kpi.board(db.session, everything, PERIOD, TODAY, context.settings().zone)
        assert board.computed_at is None and board.total_collection().billed_fen == 24000

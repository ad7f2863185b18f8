"""Demo data: two districts, residents and a business with 24 months of readings and bills.

The readings are demo data; the bills are computed from them by the real bill run
(``billing_adapter.local.bill_run``) with the shipped tariffs, one period after another, so
every line, tier increment and ledger charge is the engine's. Payments are demo data again: every
issued bill is paid on the 18th of the month after its period, except each account's newest
``unpaid_months`` bills (李明's 2026-10 bill is therefore overdue). 王芳's newest month is a
spike (6x her usual use), which verification holds for review: staff have a bill to check, and
she sees it as "being checked" with nothing charged.

``seed_cases`` then puts work in progress in 杭州西湖 through the services, as people would: the
tea company asks for a payment plan for its unpaid bill and the district's collector proposes
terms (waiting for the customer's answer), and 陈静 disputes her newest bill, which the collector
acknowledges on its timeline (still open, nobody assigned yet).
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing_adapter.local import bill_run
from portal.accounts import service as accounts
from portal.accounts.models import (
    AccountLink,
    Customer,
    CustomerClass,
    District,
    ElectricityAccount,
    Meter,
)
from portal.backoffice import service as staff_service
from portal.backoffice.models import StaffMember, StaffRole
from portal.bills.models import Bill, BillStatus
from portal.disputes import service as disputes
from portal.disputes.models import DisputeCategory
from portal.kernel.clock import Clock, local_today
from portal.kernel.uploads import FileStore
from portal.ledger import service as ledger
from portal.ledger.models import EntryKind
from portal.plans import service as plans
from portal.readings.models import Reading, ReadingSource, ReadingStatus
from portal.settings import Settings

DEMO_PASSWORD = "dianfei-demo"  # noqa: S105 - printed for the demo on purpose
# The authenticator key of the demo supervisors and admin: add it to an authenticator app by hand.
DEMO_TOTP_SECRET = "DIANFEIDEMOSTAFFTOTPSECRET234567"  # noqa: S105 - printed for the demo
MONTHS = 24


@dataclass(frozen=True)
class DemoAccount:
    account_no: str
    holder: str
    address: str
    district: str
    customer_class: CustomerClass
    tariff: str
    meter_no: str
    tou: bool
    phone: str | None        # the demo customer who has linked it; None = left for linking
    base_kwh: int
    unpaid_months: int = 1   # the newest N bills are left unpaid
    spike_last_month: bool = False  # the newest month uses 6x: held for review (核)


DISTRICTS = [("bj-dongcheng", "北京市东城区供电中心"), ("hz-xihu", "杭州市西湖区供电所")]

ACCOUNTS = [
    DemoAccount("1100000001", "王芳", "北京市东城区和平里北街8号院3-502", "bj-dongcheng",
                CustomerClass.RESIDENTIAL, "beijing-residential", "110101000001", False,
                "13800000001", 210, spike_last_month=True),
    DemoAccount("1100000002", "李明", "北京市东城区安定门内大街27号2-301", "bj-dongcheng",
                CustomerClass.RESIDENTIAL, "beijing-residential", "110101000002", False,
                "13800000002", 330, unpaid_months=2),
    DemoAccount("3300000001", "陈静", "杭州市西湖区文三路199号6-1202", "hz-xihu",
                CustomerClass.RESIDENTIAL, "zhejiang-residential", "330106000001", True,
                "13800000003", 260),
    DemoAccount("3300000009", "杭州西湖龙井茶业有限公司", "杭州市西湖区龙井路88号", "hz-xihu",
                CustomerClass.BUSINESS, "zhejiang-business-tou", "330106000009", True,
                "13800000004", 4200),
    DemoAccount("1100000005", "张伟", "北京市东城区东四十条22号1-101", "bj-dongcheng",
                CustomerClass.RESIDENTIAL, "beijing-residential", "110101005678", False,
                None, 180),
]

# (username, name, role, district code or None for the admin over all districts)
STAFF = [
    *((f"{prefix}-{role.value}", f"{city}{label}", role, code)
      for code, prefix, city in (("bj-dongcheng", "bj", "东城"), ("hz-xihu", "hz", "西湖"))
      for role, label in ((StaffRole.READER, "抄表员"), (StaffRole.AUDITOR, "核算员"),
                          (StaffRole.COLLECTOR, "收费员"), (StaffRole.SUPERVISOR, "主管"))),
    ("admin", "系统管理员", StaffRole.ADMIN, None),
]


def _month_add(first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _registers(spec: DemoAccount, rng: random.Random, month: int) -> dict[str, Decimal]:
    season = 1.45 if month in (7, 8) else 1.25 if month in (1, 12, 6, 9) else 1.0
    total = int(spec.base_kwh * season * rng.uniform(0.85, 1.15))
    if not spec.tou:
        return {"total": Decimal(total)}
    if spec.customer_class is CustomerClass.RESIDENTIAL:
        peak = total * 58 // 100
        return {"peak": Decimal(peak), "valley": Decimal(total - peak)}
    peak, flat = total * 40 // 100, total * 35 // 100
    return {"peak": Decimal(peak), "flat": Decimal(flat), "valley": Decimal(total - peak - flat)}


def is_seeded(session: Session) -> bool:
    first = sa.select(District.id).where(District.code == DISTRICTS[0][0])
    return session.scalar(first) is not None


def seed(session: Session, clock: Clock, today: date) -> None:
    """Create the demo as of ``today`` (the utility's local date); the caller commits the
    payments (the bill run commits each month it bills).

    Run it on an empty database (check ``is_seeded`` first).
    """
    now = clock.now()
    districts = {code: District(code=code, name=name) for code, name in DISTRICTS}
    session.add_all(districts.values())
    customers: dict[str, Customer] = {}
    for spec in ACCOUNTS:
        if spec.phone and spec.phone not in customers:
            customers[spec.phone] = accounts.register(session, clock, spec.phone, DEMO_PASSWORD)
            customers[spec.phone].display_name = spec.holder
    session.flush()
    for username, name, role, code in STAFF:
        member = staff_service.create_staff(
            session, clock, username=username, display_name=name, password=DEMO_PASSWORD,
            role=role, district_ids=[districts[code].id] if code else [],
            must_change_password=False)
        if member.needs_totp:
            member.totp_secret = DEMO_TOTP_SECRET

    first_period = _month_add(today.replace(day=1), -MONTHS)
    for n, spec in enumerate(ACCOUNTS):
        rng = random.Random(f"dianfei-demo-{spec.account_no}")  # noqa: S311 - demo data
        account = ElectricityAccount(
            account_no=spec.account_no, holder_name=spec.holder, address=spec.address,
            district=districts[spec.district], customer_class=spec.customer_class,
            tariff_code=spec.tariff, created_at=now)
        meter = Meter(account=account, meter_no=spec.meter_no, is_tou=spec.tou,
                      installed_on=_month_add(first_period, -6))
        session.add_all([account, meter])
        if spec.phone:
            session.add(AccountLink(customer=customers[spec.phone], account=account,
                                    created_at=now))
        session.flush()

        cumulative = {"total": Decimal(1000 + 1373 * n), "peak": Decimal(600 + 811 * n),
                      "flat": Decimal(400 + 97 * n), "valley": Decimal(400 + 562 * n)}
        for i in range(-1, MONTHS):  # month -1: the reading the first bill counts from
            start = _month_add(first_period, i)
            if i >= 0:
                regs = _registers(spec, rng, start.month)
                if spec.spike_last_month and i == MONTHS - 1:
                    regs = {r: kwh * 6 for r, kwh in regs.items()}
                for r, kwh in regs.items():
                    cumulative[r] += kwh
            session.add(_reading(spec, meter, start, cumulative, now))
    session.flush()
    _bill_and_pay(session, clock, first_period)


PLAN_ACCOUNT = "3300000009"     # the tea company: a plan with proposed terms
DISPUTE_ACCOUNT = "3300000001"  # 陈静: an open dispute on her newest bill
CASE_STAFF = "hz-collector"     # proposes the terms, answers the dispute; sees both


def seed_cases(session: Session, clock: Clock, settings: Settings) -> None:
    """Add the demo's plan and dispute to a freshly seeded demo (after ``seed_reconciliation``:
    the plan covers what its top-ups left owed), through the services, audit rows and customer
    messages included. The caller commits."""
    today = local_today(clock, settings.zone)
    collector = session.scalars(sa.select(StaffMember)
                                .where(StaffMember.username == CASE_STAFF)).one()

    business, customer_id = _account_and_customer(session, PLAN_ACCOUNT)
    owed = plans.eligible_bills(session, business.id)
    plan = plans.request_plan(
        session, clock, settings.plans, settings.zone, customer_id=customer_id,
        account=business, bill_ids=[bill_id for bill_id, _p, _a in owed], installments=3,
        first_due_on=_month_add(today, 1).replace(day=10),
        reason="旺季前资金周转紧张，希望分三期缴清。", hardship=False)
    plans.propose(session, clock, settings.plans, settings.zone, collector, plan,
                  installments=4, first_due_on=_month_add(today, 1).replace(day=15),
                  note="按四期安排，每月15日缴费。")

    resident, customer_id = _account_and_customer(session, DISPUTE_ACCOUNT)
    bill = session.scalars(sa.select(Bill).where(
        Bill.account_id == resident.id, Bill.status == BillStatus.ISSUED)
        .order_by(Bill.period.desc(), Bill.version.desc()).limit(1)).one()
    dispute = disputes.open_dispute(
        session, clock, customer_id=customer_id, bill=bill, category=DisputeCategory.READING,
        description="本月峰段读数比平时高很多，家里没有新增电器，怀疑抄表有误。",
        disputed_fen=None, files=[], store=FileStore(settings.dispute_attachments_dir),
        sla_working_days=settings.dispute_sla_working_days, today=today)
    disputes.message(session, clock, collector, dispute,
                     "已收到您的异议，我们会安排核对电表读数，请留意进度。")


def _account_and_customer(session: Session, account_no: str) -> tuple[ElectricityAccount, int]:
    account = session.scalars(sa.select(ElectricityAccount)
                              .where(ElectricityAccount.account_no == account_no)).one()
    customer_id = session.scalars(sa.select(AccountLink.customer_id)
                                  .where(AccountLink.account_id == account.id).limit(1)).one()
    return account, customer_id


def _reading(spec: DemoAccount, meter: Meter, start: date, cumulative: dict[str, Decimal],
             now: datetime) -> Reading:
    registers = ("peak", "flat", "valley") if spec.customer_class is CustomerClass.BUSINESS \
        else ("peak", "valley")
    return Reading(
        meter_id=meter.id, period=f"{start:%Y-%m}", created_at=now,
        read_on=_month_add(start, 1) - timedelta(days=1), source=ReadingSource.UTILITY,
        status=ReadingStatus.ACCEPTED,
        value_kwh=(sum((cumulative[r] for r in registers), Decimal(0)) if spec.tou
                   else cumulative["total"]),
        peak_kwh=cumulative["peak"] if spec.tou else None,
        flat_kwh=cumulative["flat"] if spec.tou and "flat" in registers else None,
        valley_kwh=cumulative["valley"] if spec.tou else None)


def _bill_and_pay(session: Session, clock: Clock, first_period: date) -> None:
    """Run the bill run month by month (it commits each month), then pay the older bills."""
    book = bill_run.load_book(session)
    for i in range(MONTHS):
        bill_run.run(session, clock, book, f"{_month_add(first_period, i):%Y-%m}")
    unpaid = {spec.account_no: spec.unpaid_months for spec in ACCOUNTS}
    issued = session.execute(
        sa.select(Bill, ElectricityAccount.account_no).join(ElectricityAccount)
        .where(Bill.status == BillStatus.ISSUED).order_by(Bill.account_id, Bill.period.desc()))
    seen: dict[str, int] = {}
    for bill, account_no in issued:
        seen[account_no] = seen.get(account_no, 0) + 1
        if seen[account_no] <= unpaid[account_no] or bill.total_fen == 0:
            continue
        ledger.post(session, clock, account_id=bill.account_id, bill_id=bill.id,
                    kind=EntryKind.PAYMENT, amount_fen=-bill.total_fen,
                    ref=f"demo-payment:{bill.id}",
                    effective_on=_month_add(bill.period_start, 1).replace(day=18),
                    memo="demo payment")


def describe() -> list[str]:
    """What the demo prints and the README lists."""
    lines = [f"Demo sign-ins (password for all: {DEMO_PASSWORD}):"]
    for spec in ACCOUNTS:
        if spec.phone:
            lines.append(f"  {spec.phone}  {spec.holder}  户号 {spec.account_no}  "
                         f"({spec.customer_class.value}, {spec.tariff})")
    free = [s for s in ACCOUNTS if s.phone is None]
    for spec in free:
        lines.append(f"Unlinked demo account to link after signing up: 户号 {spec.account_no}, "
                     f"holder {spec.holder}, meter last 4 digits {spec.meter_no[-4:]}")
    lines.append(f"Staff sign-ins at /staff/login (password for all: {DEMO_PASSWORD}):")
    for username, name, role, code in STAFF:
        lines.append(f"  {username}  {name}  {role.value}  {code or 'all districts'}")
    lines.append(f"Work in progress: {PLAN_ACCOUNT} has a payment plan with proposed terms and "
                 f"{DISPUTE_ACCOUNT} an open dispute; see them as the customers (分期缴费, "
                 f"我的异议) and as {CASE_STAFF} (/staff/plans, /staff/disputes).")
    lines.append(f"Supervisors and the admin also need a TOTP code: add the key {DEMO_TOTP_SECRET} "
                 "to an authenticator app (time-based, 6 digits, 30 s).")
    return lines


RECON_ACCOUNT = "3300000009"  # the tea company pays through WeChat in the reconciliation demo


def seed_reconciliation(session: Session, clock: Clock, today: date, directory: Path,
                        zone: tzinfo) -> list[str]:
    """Two WeChat days for the reconciliation worklist, matched by the real reconciliation: the
    day before yesterday clean, yesterday with one difference of each kind. The statements are
    what the WeChat sandbox gateway serves for the trades it processed (its ``trade_bill``).
    The orders are top-ups of the tea company (they pay part of its newest bill). Commits."""
    from payments import service as payments
    from payments.channels.base import Scene, StatementFile, Trade, TradeState
    from payments.reconcile import service as reconcile
    from payments.sandbox.wechat import SandboxOrder, WechatSandbox, WechatSandboxKeys
    from payments.states import OrderStatus

    gateway = WechatSandbox(WechatSandboxKeys("1900000109", "wxd930ea5d5a258f4f", *[""] * 7),
                            "http://127.0.0.1:5100")
    account_id = session.scalar(sa.select(ElectricityAccount.id)
                                .where(ElectricityAccount.account_no == RECON_ACCOUNT))
    assert account_id is not None  # noqa: S101 - seeded above

    def trade(day: date, hour: int, fen: int, *, ours: OrderStatus | None,
              theirs_fen: int | None) -> None:
        """An order of ``fen`` in state ``ours`` (None: never set) and the
        sandbox's trade of ``theirs_fen`` paid at ``hour`` (None: the channel has none)."""
        at = datetime.combine(day, time(hour), zone)
        order = payments.create_order(session, clock, account_id=account_id, customer_id=None,
                                      channel="wechat", scene=Scene.DESKTOP, bill_ids=[],
                                      topup_fen=fen, lifetime=timedelta(minutes=30),
                                      first_query_after=timedelta(minutes=1))
        if ours == OrderStatus.SUCCEEDED:
            payments.apply_trade(session, clock, "wechat", Trade(
                order.order_no, TradeState.SUCCEEDED, fen, channel_trade_no=f"4200{hour:024d}",
                paid_at=at), "notify", zone)
        elif ours is not None:
            order.status = ours
        if theirs_fen is not None:
            gateway.orders[order.order_no] = SandboxOrder(
                order.order_no, "NATIVE", theirs_fen, "电费", "", "demo", trade_state="SUCCESS",
                transaction_id=f"4200{day:%m%d}{hour:020d}", success_time=at)
        session.commit()

    clean, seeded = today - timedelta(days=2), today - timedelta(days=1)
    trade(clean, 9, 30000, ours=OrderStatus.SUCCEEDED, theirs_fen=30000)
    trade(clean, 15, 12050, ours=OrderStatus.SUCCEEDED, theirs_fen=12050)
    trade(seeded, 8, 20000, ours=OrderStatus.SUCCEEDED, theirs_fen=20000)   # matches
    trade(seeded, 10, 5000, ours=OrderStatus.SUCCEEDED, theirs_fen=5001)    # amount_mismatch
    trade(seeded, 11, 8000, ours=OrderStatus.CLOSED, theirs_fen=8000)       # status_mismatch
    trade(seeded, 14, 6600, ours=OrderStatus.PENDING, theirs_fen=6600)      # channel_only
    trade(seeded, 16, 4400, ours=OrderStatus.SUCCEEDED, theirs_fen=None)    # local_only
    lines = []
    for day in (clean, seeded):
        text = gateway.trade_bill(day)
        bill = None if text is None else StatementFile(gzip.compress(text.encode()), ".csv.gz")
        result = reconcile.run_day(session, clock, "wechat", day, bill, directory=directory,
                                   zone=zone)
        found = ", ".join(f"{k} {n}" for k, n in sorted(result.found.items())) or "none"
        lines.append(f"Reconciliation demo: WeChat {day}: {result.statement.line_count} lines, "
                     f"differences: {found} (/staff/reconcile)")
    return lines

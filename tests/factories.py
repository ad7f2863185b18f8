"""Small builders for rows the tests need, written through the same models the app uses."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy.orm import Session

from portal.accounts.models import CustomerClass, District, ElectricityAccount, Meter
from portal.bills.models import Bill, BillLine, LineKind
from portal.kernel.clock import Clock


def account(session: Session, clock: Clock, account_no: str = "9900000001",
            holder: str = "测试户", meter_no: str = "990000001234") -> ElectricityAccount:
    district = District(code=f"d-{account_no}", name="测试供电所")
    acct = ElectricityAccount(account_no=account_no, holder_name=holder, address="测试路1号",
                              district=district, customer_class=CustomerClass.RESIDENTIAL,
                              tariff_code="beijing-residential", created_at=clock.now())
    session.add_all([district, acct, Meter(account=acct, meter_no=meter_no,
                                           installed_on=date(2020, 1, 1))])
    session.flush()
    return acct


def bill(session: Session, clock: Clock, acct: ElectricityAccount, period: str = "2026-11",
         amounts: tuple[int, ...] = (11719, 5329), due: date = date(2026, 12, 25),
         version: int = 1) -> Bill:
    year, month = map(int, period.split("-"))
    lines = [BillLine(seq=i, kind=LineKind.ENERGY, tier=i, kwh=Decimal(100),
                      unit_price=Decimal("0.5"), amount_fen=a, description=f"tier {i}")
             for i, a in enumerate(amounts, 1)]
    b = Bill(account_id=acct.id, period=period, version=version, period_start=date(year, month, 1),
             period_end=date(year, month, 28), kwh=Decimal(100 * len(amounts)),
             tariff_code=acct.tariff_code, total_fen=sum(amounts), due_date=due,
             created_at=clock.now(), lines=lines)
    session.add(b)
    session.flush()
    return b

"""A linked customer with one meter, its last accepted reading and six months of bills."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy.orm import Session

from billing_adapter.local.system import LocalBillingSystem
from billing_adapter.local.tariffs import load_tariffs
from portal.accounts import service as accounts
from portal.accounts.models import AccountLink, Customer, ElectricityAccount, Meter
from portal.kernel.clock import FrozenClock
from portal.readings.models import Reading, ReadingSource, ReadingStatus
from tests import factories

IN_WINDOW = datetime(2026, 12, 22, 2, 0, tzinfo=UTC)  # 10:00 on 22 Dec in Shanghai


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    return tmp_path / "photos"


@pytest.fixture
def settings_overrides(photo_dir: Path) -> dict[str, object]:
    return {"reading_photo_dir": photo_dir}


def jpeg(size: tuple[int, int] = (64, 48), exif: bool = False) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    out = io.BytesIO()
    if exif:
        data = Image.Exif()
        data[0x010F] = "SecretPhoneMaker"  # Make
        data[0x0131] = "GPS-Tracker 1.0"   # Software
        image.save(out, "JPEG", exif=data.tobytes())
    else:
        image.save(out, "JPEG")
    return out.getvalue()


@dataclass
class World:
    customer: Customer
    account: ElectricityAccount
    meter: Meter
    system: LocalBillingSystem


def reading(meter: Meter, period: str, value: str, status=ReadingStatus.ACCEPTED,
            **registers: str) -> Reading:
    year, month = map(int, period.split("-"))
    return Reading(meter_id=meter.id, period=period, read_on=date(year, month, 28),
                   value_kwh=Decimal(value), source=ReadingSource.UTILITY, status=status,
                   created_at=datetime(year, month, 28, tzinfo=UTC),
                   **{f"{k}_kwh": Decimal(v) for k, v in registers.items()})


def make_world(session: Session, clock: FrozenClock, account_no: str = "9900000001",
               phone: str = "13900000001", meter_no: str = "990000001234",
               tou: bool = False, tariff: str = "beijing-residential") -> World:
    load_tariffs(session)
    acct = factories.account(session, clock, account_no, meter_no=meter_no)
    acct.tariff_code = tariff
    meter = acct.meters[0]
    meter.is_tou = tou
    customer = accounts.register(session, clock, phone, "correct horse 1")
    session.add(AccountLink(customer=customer, account=acct, created_at=clock.now()))
    for n, period in enumerate(["2026-05", "2026-06", "2026-07", "2026-08", "2026-09",
                                "2026-10"]):
        factories.bill(session, clock, acct, period, amounts=(10000,), version=1)
        del n
    if tou:
        session.add(reading(meter, "2026-11", "1000", peak="600", valley="400"))
    else:
        session.add(reading(meter, "2026-11", "1000"))
    session.flush()
    return World(customer, acct, meter, LocalBillingSystem(session, clock))


@pytest.fixture
def world(session: Session, clock: FrozenClock) -> World:
    clock.set(IN_WINDOW)
    w = make_world(session, clock)
    session.commit()
    return w

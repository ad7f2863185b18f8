"""Signing staff in over HTTP, the way a person does: password, then the authenticator code."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pyotp
import sqlalchemy as sa
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from payments import service as payments
from payments.channels.base import Scene, Trade, TradeState
from payments.models import PaymentOrder, Refund
from payments.reconcile.models import Difference, DifferenceKind, DifferenceStatus, Statement
from portal.accounts.models import AccountLink, ElectricityAccount
from portal.backoffice import service
from portal.backoffice.models import StaffMember, StaffRole
from portal.bills.models import Bill, BillStatus
from portal.demo import DEMO_PASSWORD, DEMO_TOTP_SECRET
from portal.kernel.clock import FrozenClock
from portal.plans.models import PaymentPlan, PlanBill
from tests.helpers import FormClient


def totp_code(clock: FrozenClock, secret: str = DEMO_TOTP_SECRET) -> str:
    return pyotp.TOTP(secret).at(clock.now())


def staff_login(web: FormClient, clock: FrozenClock, username: str,
                password: str = DEMO_PASSWORD, secret: str = DEMO_TOTP_SECRET) -> TestResponse:
    """Password, then (for supervisors and admins) a fresh TOTP code: the clock moves on one
    30-second step first, since a code is never accepted twice."""
    response = web.submit("/staff/login", {"username": username, "password": password})
    if response.status_code == 302 and response.location.startswith("/staff/login/code"):
        clock.advance(timedelta(seconds=30))
        response = web.submit(response.location, {"code": totp_code(clock, secret)})
    return response


def staff_ids(session: Session, clock: FrozenClock, *usernames: str) -> list[int]:
    """Real staff rows (administrators: no district needed), for refunds' requested_by and
    approved_by; flushed, not committed."""
    return [service.create_staff(session, clock, username=name, display_name=name,
                                 password=DEMO_PASSWORD, role=StaffRole.ADMIN).id
            for name in usernames]


def paid_order(session: Session, clock: FrozenClock, account_no: str, amount_fen: int = 8000,
               channel: str = "wechat") -> PaymentOrder:
    """A top-up of ``amount_fen`` on a demo account, paid: the channel's success applied the way
    a verified notification is (credited to the ledger). Committed."""
    account_id = session.scalar(sa.select(ElectricityAccount.id)
                                .where(ElectricityAccount.account_no == account_no))
    assert account_id is not None
    order = payments.create_order(session, clock, account_id=account_id, customer_id=None,
                                  channel=channel, scene=Scene.DESKTOP, bill_ids=[],
                                  topup_fen=amount_fen, lifetime=timedelta(minutes=30),
                                  first_query_after=timedelta(minutes=1))
    payments.apply_trade(session, clock, channel, Trade(order.order_no, TradeState.SUCCEEDED,
                                                        amount_fen, channel_trade_no="T1"),
                         "notify")
    session.commit()
    session.refresh(order)
    return order


def requested_refund(session: Session, clock: FrozenClock, order: PaymentOrder,
                     username: str, amount_fen: int = 1000) -> Refund:
    """A refund of ``order`` requested by the member ``username``. Committed."""
    staff_id = session.scalar(sa.select(StaffMember.id).where(StaffMember.username == username))
    assert staff_id is not None
    refund = payments.request_refund(session, clock, order_no=order.order_no,
                                     amount_fen=amount_fen, reason="paid twice",
                                     requested_by=staff_id)
    session.commit()
    session.refresh(refund)
    return refund


def held_bill(session: Session, clock: FrozenClock, account_no: str) -> Bill:
    """The account's bill held for review: the newest version in ``pending_review`` if there is
    one (the demo holds 1100000001's newest month), else a new one of 2026-12 (0 kWh, held as
    ``zero_usage``). Committed."""
    account_id = session.scalar(sa.select(ElectricityAccount.id)
                                .where(ElectricityAccount.account_no == account_no))
    assert account_id is not None
    bill = session.scalar(sa.select(Bill).where(Bill.account_id == account_id,
                                                Bill.status == BillStatus.PENDING_REVIEW)
                          .order_by(Bill.id.desc()).limit(1))
    if bill is None:
        bill = Bill(account_id=account_id, period="2026-12", version=1,
                    period_start=date(2026, 12, 1), period_end=date(2026, 12, 31),
                    kwh=Decimal(0), tariff_code="zhejiang-residential", total_fen=0,
                    status=BillStatus.PENDING_REVIEW, review_reason="zero_usage",
                    due_date=date(2027, 1, 25), created_at=clock.now())
        session.add(bill)
    session.commit()
    return bill


def requested_plan(session: Session, clock: FrozenClock, account_no: str,
                   attachment_dir: Path) -> PaymentPlan:
    """A payment plan requested for the newest bill of a demo account, with a PDF attachment
    stored in ``attachment_dir``; written directly (the routes' access rules are under test, not
    eligibility). Committed."""
    account = session.scalar(sa.select(ElectricityAccount)
                             .where(ElectricityAccount.account_no == account_no))
    assert account is not None
    bill = session.scalar(sa.select(Bill).where(Bill.account_id == account.id)
                          .order_by(Bill.period.desc()).limit(1))
    customer_id = session.scalar(sa.select(AccountLink.customer_id)
                                 .where(AccountLink.account_id == account.id).limit(1))
    assert bill is not None and customer_id is not None
    from portal.kernel import uploads
    from tests.portal.disputes.helpers import PDF_BYTES

    proof = uploads.check(uploads.Upload("proof.pdf", PDF_BYTES), uploads.UploadRules(1 << 20))
    key = uploads.FileStore(attachment_dir).save(proof, session)
    now = clock.now()
    plan = PaymentPlan(account_id=account.id, customer_id=customer_id, total_fen=bill.total_fen,
                       reason="cash flow", requested_installments=3,
                       requested_first_due_on=date(2027, 1, 10), installment_count=3,
                       first_due_on=date(2027, 1, 10), attachment_key=key,
                       attachment_type=proof.content_type, attachment_name=proof.original_name,
                       requested_at=now, updated_at=now,
                       bills=[PlanBill(bill_id=bill.id, seq=0, amount_fen=bill.total_fen)])
    session.add(plan)
    session.commit()
    return plan


def dispute_with_file(session: Session, clock: FrozenClock, account_no: str,
                      store_dir: Path) -> tuple[int, int]:
    """A dispute, opened by the account's demo customer on its newest issued bill, with one PNG
    attached: (dispute id, attachment id). Committed."""
    from portal.accounts.models import AccountLink
    from portal.bills.models import Bill, BillStatus
    from portal.disputes import service as disputes
    from portal.disputes.models import DisputeCategory
    from portal.kernel.uploads import FileStore, Upload, check
    from tests.portal.disputes.helpers import png_bytes

    bill = session.scalars(sa.select(Bill).join(ElectricityAccount).where(
        ElectricityAccount.account_no == account_no, Bill.status == BillStatus.ISSUED)
        .order_by(Bill.period.desc(), Bill.version.desc()).limit(1)).one()
    customer_id = session.scalars(sa.select(AccountLink.customer_id)
                                  .where(AccountLink.account_id == bill.account_id)).first()
    assert customer_id is not None
    dispute = disputes.open_dispute(
        session, clock, customer_id=customer_id, bill=bill, category=DisputeCategory.READING,
        description="读数不对", disputed_fen=None,
        files=[check(Upload("m.png", png_bytes()), disputes.upload_rules(1 << 20))],
        store=FileStore(store_dir), sla_working_days=5, today=bill.due_date)
    session.commit()
    return dispute.id, dispute.events[0].attachments[0].id


def flagged_reading(session: Session, clock: FrozenClock, account_no: str,
                    customer_phone: str | None = None, value: str = "99999") -> int:
    """A self-reading of the account's meter for next month's period, flagged (usage far above
    the average), with a stored photo. Committed; returns its id."""
    from decimal import Decimal

    from portal import context
    from portal.accounts.models import Customer, Meter
    from portal.kernel.uploads import Upload, check
    from portal.readings import service
    from portal.readings.models import Reading, ReadingSource, ReadingStatus
    from tests.portal.readings.conftest import jpeg

    meter = session.scalars(sa.select(Meter).join(ElectricityAccount).where(
        ElectricityAccount.account_no == account_no)).first()
    assert meter is not None
    customer_id = session.scalar(sa.select(Customer.id).where(Customer.phone == customer_phone))
    settings = context.settings()
    key = service.photo_store(settings).save(
        check(Upload("meter.jpg", jpeg()), service.photo_rules(settings)), session)
    reading = Reading(meter_id=meter.id, period="2099-12", read_on=clock.now().date(),
                      value_kwh=Decimal(value), source=ReadingSource.CUSTOMER,
                      status=ReadingStatus.FLAGGED, submitted_by_customer_id=customer_id,
                      created_at=clock.now(), photo_key=key,
                      flag_reason="usage_high kwh=90000 average=300 months=6")
    session.add(reading)
    session.commit()
    return reading.id


def difference(session: Session, clock: FrozenClock, account_no: str | None,
               order_no: str = "DF-RECON-1", kind: DifferenceKind = DifferenceKind.AMOUNT_MISMATCH,
               day: date = date(2026, 12, 2)) -> Difference:
    """An open reconciliation difference about ``order_no`` of the demo account (none: a
    difference without an account), on a WeChat statement of ``day``. Committed."""
    statement = session.scalar(sa.select(Statement).filter_by(channel="wechat", bill_date=day))
    if statement is None:
        statement = Statement(channel="wechat", bill_date=day, version=1, sha256="0" * 64,
                              fetched_at=clock.now(), matched_at=clock.now())
        session.add(statement)
        session.flush()
    account_id = None if account_no is None else session.scalar(
        sa.select(ElectricityAccount.id).where(ElectricityAccount.account_no == account_no))
    diff = Difference(statement_id=statement.id, channel="wechat", bill_date=day,
                      key=f"payment:{order_no}", kind=kind, status=DifferenceStatus.OPEN,
                      order_no=order_no, channel_amount_fen=8100, local_amount_fen=8000,
                      channel_status="SUCCESS", local_status="succeeded",
                      account_id=account_id, created_at=clock.now())
    session.add(diff)
    session.commit()
    return diff


def staff_message(session: Session, clock: FrozenClock, username: str, plan_id: int = 1) -> int:
    """A ``plan_defaulted`` message in the inbox of staff member ``username``: its id.
    Committed."""
    from notifications import staff as staff_messages
    from notifications.models import StaffMessage

    staff_id = session.scalar(sa.select(StaffMember.id).where(StaffMember.username == username))
    assert staff_id is not None
    key = f"notify_staff:plan_defaulted:test:{username}:{plan_id}"
    staff_messages.notify_staff(session, clock, staff_id, "plan_defaulted",
                                {"plan_id": plan_id, "account_no": "1100000001",
                                 "total_yuan": "12.34"}, dedup_key=key)
    session.commit()
    message_id = session.scalar(sa.select(StaffMessage.id).where(StaffMessage.dedup_key == key))
    assert message_id is not None
    return message_id

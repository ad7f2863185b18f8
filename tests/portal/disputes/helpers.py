"""Rows a dispute needs: an issued bill on an account, its customer, staff of its district."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from PIL import Image
from sqlalchemy.orm import Session

from portal.accounts import service as accounts
from portal.accounts.models import AccountLink
from portal.backoffice import service as staffing
from portal.backoffice.models import StaffMember, StaffRole
from portal.bills import service as bills
from portal.bills.models import Bill
from portal.disputes import service
from portal.disputes.attachments import AttachmentStore
from portal.disputes.models import Dispute, DisputeCategory
from portal.kernel.clock import FrozenClock, local_today
from tests import factories


def png_bytes(size: tuple[int, int] = (8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


PDF_BYTES = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
             b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


@dataclass
class Case:
    bill: Bill
    customer_id: int
    auditor: StaffMember
    store: AttachmentStore


def issued_case(session: Session, clock: FrozenClock, tmp_path: Path,
                account_no: str = "9900000001") -> Case:
    account = factories.account(session, clock, account_no=account_no,
                                meter_no=f"{account_no}99")
    bill = factories.bill(session, clock, account)
    bills.issue(session, clock, bill)
    customer = accounts.register(session, clock, f"139{account_no[-8:]}", "a good password")
    session.add(AccountLink(customer=customer, account=account, created_at=clock.now()))
    auditor = staffing.create_staff(session, clock, username=f"aud-{account_no}",
                                    display_name="核算员", password="a long password 1",
                                    role=StaffRole.AUDITOR, district_ids=[account.district_id])
    session.flush()
    return Case(bill, customer.id, auditor, AttachmentStore(tmp_path / "files"))


def open_one(session: Session, clock: FrozenClock, case: Case, disputed_fen: int | None = None,
             today: date | None = None) -> Dispute:
    return service.open_dispute(
        session, clock, customer_id=case.customer_id, bill=case.bill,
        category=DisputeCategory.READING, description="读数不对", disputed_fen=disputed_fen,
        files=[], store=case.store, sla_working_days=5,
        today=today or local_today(clock, ZoneInfo("Asia/Shanghai")))

"""Disputes: a customer contests a bill; staff of its district assign, investigate, ask the
customer, and resolve it, ``upheld`` (the bill stands) or ``adjusted`` (a credit or debit through
the billing system, which makes a corrected bill version and a ledger entry).

Every step is a guarded state move (``DISPUTE_MACHINE``: a double submit or a race changes
nothing twice), one timeline row (who, when, why), an audit row, and, where the customer is
told, one outbox row, all in the caller's transaction: nothing here commits.

SLA: the dispute is due ``dispute_sla_working_days`` working days after the day it was opened
(local date), counting China's working days as ``chinese_calendar`` publishes them: public
holidays are skipped and adjusted working weekends (调休) count. For years the library does not
know yet, Monday to Friday count. The clock stops while staff wait for the customer: a reply
moves the due date on by the working days waited.

While a dispute is open its disputed amount is held from reminders and late fees (the
``disputes`` source of ``portal.bills.holds``); the rest of the bill follows the normal ladder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta, tzinfo
from typing import Any

import chinese_calendar
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from billing_adapter.base import Adjustment, BillingRejected, BillingSystem
from portal.accounts.models import ElectricityAccount
from portal.backoffice.models import ALL_DISTRICT_ROLES, Permission, StaffMember, staff_districts
from portal.backoffice.service import account_filter
from portal.bills import holds
from portal.bills.models import Bill, BillStatus
from portal.disputes.models import (
    DISPUTE_MACHINE,
    OPEN_STATUSES,
    Dispute,
    DisputeAttachment,
    DisputeCategory,
    DisputeEvent,
    DisputeStatus,
    EventKind,
)
from portal.kernel import audit, outbox
from portal.kernel.audit import Actor
from portal.kernel.clock import Clock, local_today
from portal.kernel.errors import Conflict, DomainError, NotFound
from portal.kernel.money import format_yuan
from portal.kernel.statemachine import IllegalTransition
from portal.kernel.uploads import PHOTOS_AND_PDF, CheckedFile, FileStore, UploadRules

NOTIFY_TOPIC = "notify"
MAX_FILES = 3  # per step (opening, a reply)


def upload_rules(max_bytes: int) -> UploadRules:
    """What a customer may attach when opening a dispute or replying: photos or PDFs."""
    return UploadRules(max_bytes=max_bytes, kinds=PHOTOS_AND_PDF, max_files=MAX_FILES)


class BillNotDisputable(DomainError):
    code = "dispute_bill_not_issued"


class BillSuperseded(Conflict):
    """A newer version of the bill exists (a correction): that one is disputed, not this."""

    code = "dispute_bill_superseded"


class AlreadyDisputed(Conflict):
    code = "dispute_already_open"


class BadDisputedAmount(DomainError):
    code = "dispute_bad_amount"


class BadAssignee(DomainError):
    code = "dispute_bad_assignee"


class AdjustmentRefused(DomainError):
    """The billing system refused the adjustment (e.g. a credit larger than the bill)."""

    code = "dispute_adjustment_refused"


# --- working days ----------------------------------------------------------------------------

def is_working_day(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:  # a year the library has no holiday data for
        return day.weekday() < 5


def working_days_after(start: date, end: date) -> int:
    """How many working days there are after ``start`` up to and including ``end``."""
    return sum(is_working_day(start + timedelta(days=n))
               for n in range(1, (end - start).days + 1))


def add_working_days(start: date, days: int) -> date:
    """The ``days``-th working day after ``start`` (``start`` itself does not count)."""
    day, left = start, days
    while left > 0:
        day += timedelta(days=1)
        if is_working_day(day):
            left -= 1
    return day


# --- holds -------------------------------------------------------------------------------------

@holds.register("disputes")
def held_amounts() -> sa.Select[Any]:
    """(bill_id, held_fen): the disputed amount of every dispute not yet resolved or withdrawn."""
    return sa.select(Dispute.bill_id.label("bill_id"),
                     Dispute.disputed_fen.label("held_fen")).where(
        Dispute.status.in_(OPEN_STATUSES))


# --- reading -----------------------------------------------------------------------------------

def _with_timeline() -> sa.Select[tuple[Dispute]]:
    return sa.select(Dispute).options(
        selectinload(Dispute.events).selectinload(DisputeEvent.attachments),
        selectinload(Dispute.bill).selectinload(Bill.lines),
        selectinload(Dispute.corrected_bill).selectinload(Bill.lines))


def customer_disputes(session: Session, customer_id: int) -> list[Dispute]:
    return list(session.scalars(sa.select(Dispute).options(selectinload(Dispute.bill))
                                .where(Dispute.customer_id == customer_id)
                                .order_by(Dispute.opened_at.desc(), Dispute.id.desc())))


def customer_dispute(session: Session, customer_id: int, dispute_id: int) -> Dispute:
    """The customer's own dispute; NotFound for anyone else's, as if it did not exist."""
    dispute = session.scalar(_with_timeline().where(Dispute.id == dispute_id,
                                                    Dispute.customer_id == customer_id))
    if dispute is None:
        raise NotFound()
    return dispute


def open_dispute_of_bill(session: Session, bill_id: int) -> Dispute | None:
    return session.scalar(sa.select(Dispute).where(Dispute.bill_id == bill_id,
                                                   Dispute.status.in_(OPEN_STATUSES)))


def dispute_of_bill(session: Session, customer_id: int, bill_id: int) -> Dispute | None:
    """The customer's newest dispute of this bill version, or the one that corrected it."""
    return session.scalar(sa.select(Dispute).where(
        Dispute.customer_id == customer_id,
        sa.or_(Dispute.bill_id == bill_id, Dispute.corrected_bill_id == bill_id))
        .order_by(Dispute.id.desc()).limit(1))


def scoped_disputes(session: Session, staff: StaffMember) -> sa.Select[tuple[Dispute]]:
    return sa.select(Dispute).where(account_filter(session, staff, Dispute.account_id))


def staff_queue(session: Session, staff: StaffMember, *, open_only: bool = True,
                limit: int = 200) -> list[Dispute]:
    """Disputes of ``staff``'s districts: open ones by SLA due date, or all, newest first."""
    query = scoped_disputes(session, staff).options(
        selectinload(Dispute.bill).selectinload(Bill.account))
    if open_only:
        query = query.where(Dispute.status.in_(OPEN_STATUSES)).order_by(Dispute.sla_due_on,
                                                                        Dispute.id)
    else:
        query = query.order_by(Dispute.opened_at.desc(), Dispute.id.desc())
    return list(session.scalars(query.limit(limit)))


def get_scoped_dispute(session: Session, staff: StaffMember, dispute_id: int) -> Dispute:
    dispute = session.scalar(_with_timeline().where(
        Dispute.id == dispute_id, account_filter(session, staff, Dispute.account_id)))
    if dispute is None:
        raise NotFound()
    return dispute


def attachment_of(dispute: Dispute, attachment_id: int) -> DisputeAttachment:
    for event in dispute.events:
        for attachment in event.attachments:
            if attachment.id == attachment_id:
                return attachment
    raise NotFound()


def eligible_assignees(session: Session, dispute: Dispute) -> list[StaffMember]:
    """Active staff who handle disputes and see the dispute's district."""
    district_id = session.scalar(sa.select(ElectricityAccount.district_id)
                                 .where(ElectricityAccount.id == dispute.account_id))
    in_district = sa.select(staff_districts.c.staff_id).where(
        staff_districts.c.district_id == district_id)
    members = session.scalars(sa.select(StaffMember).where(
        StaffMember.is_active.is_(True),
        sa.or_(StaffMember.id.in_(in_district), StaffMember.role.in_(sorted(ALL_DISTRICT_ROLES))))
        .order_by(StaffMember.display_name, StaffMember.id))
    return [m for m in members if m.can(Permission.HANDLE_DISPUTES)]


def staff_names(session: Session, ids: Sequence[int | None]) -> dict[int, str]:
    wanted = sorted({i for i in ids if i is not None})
    rows = session.execute(sa.select(StaffMember.id, StaffMember.display_name)
                           .where(StaffMember.id.in_(wanted))).tuples()
    return dict(rows.all())


@dataclass(frozen=True)
class LineDiff:
    label: str
    before_fen: int | None  # None: the line is not on that version
    after_fen: int | None

    @property
    def changed(self) -> bool:
        return self.before_fen != self.after_fen


def compare(before: Bill, after: Bill) -> list[LineDiff]:
    """The two versions' lines side by side, matched by their position on the bill."""
    old = {line.seq: line for line in before.lines}
    new = {line.seq: line for line in after.lines}
    return [LineDiff((new.get(seq) or old[seq]).description,
                     old[seq].amount_fen if seq in old else None,
                     new[seq].amount_fen if seq in new else None)
            for seq in sorted(old.keys() | new.keys())]


# --- steps -------------------------------------------------------------------------------------

def _event(session: Session, clock: Clock, dispute: Dispute, kind: EventKind, *,
           staff_id: int | None = None, customer_id: int | None = None,
           before: DisputeStatus | None = None, after: DisputeStatus | None = None,
           body: str | None = None) -> DisputeEvent:
    actor = Actor.STAFF if staff_id else Actor.CUSTOMER if customer_id else Actor.SYSTEM
    event = DisputeEvent(dispute_id=dispute.id, at=clock.now(), actor=actor, staff_id=staff_id,
                         customer_id=customer_id, kind=kind, from_status=before,
                         to_status=after, body=(body or "").strip()[:2000] or None)
    session.add(event)
    session.flush()
    return event


def _move(session: Session, clock: Clock, dispute: Dispute, target: DisputeStatus,
          **values: Any) -> DisputeStatus:
    """``dispute``'s status -> ``target`` if nobody moved it meanwhile; the status it left.
    IllegalTransition (a Conflict) for a move the table does not allow, Conflict for a lost
    race or a repeated submit."""
    source = dispute.status
    if not DISPUTE_MACHINE.move(session, Dispute, dispute.id, source, target,
                                updated_at=clock.now(), **values):
        raise Conflict(f"dispute {dispute.id} is no longer {source.value}")
    session.refresh(dispute)
    return source


def _attach(session: Session, clock: Clock, store: FileStore, dispute: Dispute,
            event: DisputeEvent, files: Sequence[CheckedFile]) -> None:
    for checked in files:
        session.add(DisputeAttachment(
            dispute_id=dispute.id, event_id=event.id, stored_name=store.save(checked, session),
            original_name=checked.original_name, content_type=checked.content_type,
            size_bytes=len(checked.data), sha256=checked.sha256, uploaded_at=clock.now()))


def _audit(session: Session, clock: Clock, dispute: Dispute, action: str, *,
           staff: StaffMember | None = None, customer_id: int | None = None,
           amount_fen: int | None = None, **details: Any) -> None:
    audit.record(session, clock, f"dispute.{action}", "dispute", dispute.id,
                 staff_id=staff.id if staff else None, customer_id=customer_id,
                 account_id=dispute.account_id, amount_fen=amount_fen,
                 details={k: v for k, v in details.items() if v is not None})


def _notify(session: Session, clock: Clock, dispute: Dispute, event: str, dedup: str,
            **params: str | int) -> None:
    account_no = session.scalar(sa.select(ElectricityAccount.account_no)
                                .where(ElectricityAccount.id == dispute.account_id))
    outbox.enqueue(session, clock, NOTIFY_TOPIC, {
        "customer_id": dispute.customer_id, "account_id": dispute.account_id, "event": event,
        "params": {"dispute_id": dispute.id, "account_no": account_no or "",
                   "period": dispute.bill.period, **params},
    }, dedup_key=f"notify:{event}:dispute:{dispute.id}{dedup}")


def open_dispute(session: Session, clock: Clock, *, customer_id: int, bill: Bill,
                 category: DisputeCategory, description: str, disputed_fen: int | None,
                 files: Sequence[CheckedFile], store: FileStore, sla_working_days: int,
                 today: date) -> Dispute:
    """The customer (whose access to ``bill`` the caller checked) contests it. ``disputed_fen``
    None means the whole bill; files were checked (``upload_rules``)."""
    if bill.status is not BillStatus.ISSUED:
        raise BillNotDisputable(str(bill.id))
    if session.scalar(sa.select(Bill.id).where(
            Bill.account_id == bill.account_id, Bill.period == bill.period,
            Bill.version > bill.version).limit(1)) is not None:
        raise BillSuperseded(str(bill.id))
    amount = bill.total_fen if disputed_fen is None else disputed_fen
    if not isinstance(amount, int) or not 0 < amount <= bill.total_fen:
        raise BadDisputedAmount(format_yuan(bill.total_fen))
    if open_dispute_of_bill(session, bill.id) is not None:
        raise AlreadyDisputed(str(bill.id))
    now = clock.now()
    dispute = Dispute(bill_id=bill.id, account_id=bill.account_id, customer_id=customer_id,
                      category=category, description=description.strip()[:2000],
                      disputed_fen=amount, status=DisputeStatus.OPEN, opened_at=now,
                      updated_at=now, sla_due_on=add_working_days(today, sla_working_days))
    try:
        with session.begin_nested():  # a concurrent dispute of the same bill won the index
            session.add(dispute)
    except IntegrityError:
        raise AlreadyDisputed(str(bill.id)) from None
    event = _event(session, clock, dispute, EventKind.OPENED, customer_id=customer_id,
                   after=DisputeStatus.OPEN, body=dispute.description)
    _attach(session, clock, store, dispute, event, files)
    _audit(session, clock, dispute, "open", customer_id=customer_id, amount_fen=amount,
           bill_id=bill.id, category=category.value)
    session.refresh(dispute)
    return dispute


def reply(session: Session, clock: Clock, dispute: Dispute, customer_id: int, body: str,
          files: Sequence[CheckedFile], store: FileStore, zone: tzinfo) -> None:
    """The customer answers a question: the dispute goes back to investigating, its due date
    moved on by the working days (local dates in ``zone``) after the day staff asked, up to
    today. Only a dispute awaiting the customer takes a reply (IllegalTransition otherwise: an
    assigned dispute is not moved on by its customer)."""
    if dispute.status is not DisputeStatus.AWAITING_CUSTOMER:
        raise IllegalTransition(DISPUTE_MACHINE.name, dispute.status,
                                DisputeStatus.INVESTIGATING)
    asked_at = session.scalars(
        sa.select(DisputeEvent.at).where(DisputeEvent.dispute_id == dispute.id,
                                         DisputeEvent.kind == EventKind.INFO_REQUESTED)
        .order_by(DisputeEvent.id.desc()).limit(1)).one()
    waited = working_days_after(asked_at.astimezone(zone).date(), local_today(clock, zone))
    before = _move(session, clock, dispute, DisputeStatus.INVESTIGATING,
                   sla_due_on=add_working_days(dispute.sla_due_on, waited))
    event = _event(session, clock, dispute, EventKind.CUSTOMER_REPLIED, customer_id=customer_id,
                   before=before, after=dispute.status, body=body)
    _attach(session, clock, store, dispute, event, files)
    _audit(session, clock, dispute, "reply", customer_id=customer_id)


def withdraw(session: Session, clock: Clock, dispute: Dispute, customer_id: int,
             reason: str = "") -> None:
    before = _move(session, clock, dispute, DisputeStatus.WITHDRAWN, resolved_at=clock.now())
    _event(session, clock, dispute, EventKind.WITHDRAWN, customer_id=customer_id,
           before=before, after=dispute.status, body=reason)
    _audit(session, clock, dispute, "withdraw", customer_id=customer_id)


def assign(session: Session, clock: Clock, staff: StaffMember, dispute: Dispute,
           assignee_id: int, note: str = "") -> None:
    """Give an open dispute (or one in progress: reassign) to a member who handles disputes in
    its district."""
    if assignee_id not in {m.id for m in eligible_assignees(session, dispute)}:
        raise BadAssignee(str(assignee_id))
    before = dispute.status
    if before is DisputeStatus.OPEN:
        _move(session, clock, dispute, DisputeStatus.ASSIGNED, assigned_to_id=assignee_id)
    else:
        moved: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]
            sa.update(Dispute).where(Dispute.id == dispute.id, Dispute.status == before,
                                     Dispute.status.in_(OPEN_STATUSES))
            .values(assigned_to_id=assignee_id, updated_at=clock.now())
            .execution_options(synchronize_session=False))
        if moved.rowcount != 1:
            raise Conflict(f"dispute {dispute.id} is no longer {before.value}")
        session.refresh(dispute)
    _event(session, clock, dispute, EventKind.ASSIGNED, staff_id=staff.id, before=before,
           after=dispute.status, body=note or staff_names(session, [assignee_id])[assignee_id])
    _audit(session, clock, dispute, "assign", staff=staff, assignee_id=assignee_id, note=note)


def investigate(session: Session, clock: Clock, staff: StaffMember, dispute: Dispute,
                note: str) -> None:
    before = _move(session, clock, dispute, DisputeStatus.INVESTIGATING)
    _event(session, clock, dispute, EventKind.INVESTIGATING, staff_id=staff.id, before=before,
           after=dispute.status, body=note)
    _audit(session, clock, dispute, "investigate", staff=staff, note=note)


def request_info(session: Session, clock: Clock, staff: StaffMember, dispute: Dispute,
                 question: str) -> None:
    """Ask the customer something; they are told (``dispute_info_requested``) and can reply."""
    before = _move(session, clock, dispute, DisputeStatus.AWAITING_CUSTOMER)
    event = _event(session, clock, dispute, EventKind.INFO_REQUESTED, staff_id=staff.id,
                   before=before, after=dispute.status, body=question)
    _audit(session, clock, dispute, "request_info", staff=staff, question=question)
    _notify(session, clock, dispute, "dispute_info_requested", f":{event.id}",
            question=question.strip())


def message(session: Session, clock: Clock, staff: StaffMember, dispute: Dispute,
            body: str) -> None:
    """A message to the customer on the timeline; the status stays. They are told
    (``dispute_message``)."""
    if DISPUTE_MACHINE.is_final(dispute.status):
        raise Conflict(f"dispute {dispute.id} is closed")
    event = _event(session, clock, dispute, EventKind.STAFF_MESSAGE, staff_id=staff.id,
                   body=body)
    session.execute(sa.update(Dispute).where(Dispute.id == dispute.id)
                    .values(updated_at=clock.now()).execution_options(synchronize_session=False))
    _audit(session, clock, dispute, "message", staff=staff, body=body)
    _notify(session, clock, dispute, "dispute_message", f":{event.id}", message=body.strip())


def uphold(session: Session, clock: Clock, staff: StaffMember, dispute: Dispute,
           reason: str) -> None:
    """The bill stands; the customer is told why."""
    now = clock.now()
    before = _move(session, clock, dispute, DisputeStatus.UPHELD, resolved_at=now,
                   resolved_by_id=staff.id, resolution_note=reason.strip()[:2000])
    _event(session, clock, dispute, EventKind.UPHELD, staff_id=staff.id, before=before,
           after=dispute.status, body=reason)
    _audit(session, clock, dispute, "uphold", staff=staff, reason=reason)
    _notify(session, clock, dispute, "dispute_resolved", "", outcome="upheld",
            note=reason.strip())


def adjustment_no(dispute: Dispute) -> str:
    """The billing system's idempotency key: one adjustment per dispute, whatever repeats."""
    return f"dispute-{dispute.id}"


def adjust(session: Session, clock: Clock, staff: StaffMember, dispute: Dispute,
           amount_fen: int, reason: str, system: BillingSystem) -> Bill | None:
    """Resolve with a credit (< 0) or debit (> 0) of ``amount_fen`` on the disputed bill.

    The status moves first, guarded: a double submit or a second member racing finds the
    dispute resolved and never reaches the billing system. The billing system applies the
    adjustment once per ``adjustment_no`` (a retry after a lost reply changes nothing) and makes
    a corrected bill version; the portal's copy of that version is returned (None while an
    external billing system has not fed it yet)."""
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen == 0:
        raise BadDisputedAmount("0")
    now, number = clock.now(), adjustment_no(dispute)
    before = _move(session, clock, dispute, DisputeStatus.ADJUSTED, resolved_at=now,
                   resolved_by_id=staff.id, resolution_note=reason.strip()[:2000],
                   adjustment_fen=amount_fen, adjustment_no=number)
    account_no = session.scalars(sa.select(ElectricityAccount.account_no)
                                 .where(ElectricityAccount.id == dispute.account_id)).one()
    try:
        info = system.apply_adjustment(Adjustment(
            adjustment_no=number, account_no=account_no, period=dispute.bill.period,
            amount_fen=amount_fen, reason=f"异议 #{dispute.id}: {reason.strip()}"[:200]))
    except BillingRejected as exc:
        raise AdjustmentRefused(exc.code) from exc
    corrected = session.scalar(sa.select(Bill).where(
        Bill.account_id == dispute.account_id, Bill.period == info.period,
        Bill.version == info.version))
    if corrected is not None:
        session.execute(sa.update(Dispute).where(Dispute.id == dispute.id)
                        .values(corrected_bill_id=corrected.id)
                        .execution_options(synchronize_session=False))
        session.refresh(dispute)
    _event(session, clock, dispute, EventKind.ADJUSTED, staff_id=staff.id, before=before,
           after=dispute.status, body=reason)
    _audit(session, clock, dispute, "adjust", staff=staff, amount_fen=amount_fen, reason=reason,
           adjustment_no=number, corrected_bill_id=corrected.id if corrected else None)
    _notify(session, clock, dispute, "dispute_resolved", "", outcome="adjusted",
            note=reason.strip())
    return corrected


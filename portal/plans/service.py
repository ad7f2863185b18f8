"""Payment plans: the rules (eligibility, the installment split, due dates), the steps people
take (request, propose, approve, decline, accept, cancel, pay an installment) and the daily sweep
(settle paid installments, complete, default). Flask-free; callers pass session, clock, policy and
zone, and commit.

Every step is a guarded move of ``PLAN_MACHINE`` (a concurrent or repeated step changes nothing
and raises ``Conflict``), records who and when on the plan, and writes its audit row (and any
customer message, through the outbox) in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
from dateutil.relativedelta import relativedelta
from sqlalchemy.orm import Session

from notifications import staff as staff_messages
from payments import service as payments
from payments.channels.base import Scene
from payments.models import PaymentOrder, Refund
from payments.states import OrderStatus, RefundStatus
from portal.accounts.models import CustomerClass, ElectricityAccount
from portal.backoffice.models import Permission, StaffMember
from portal.backoffice.service import account_filter
from portal.kernel import audit, outbox
from portal.kernel.clock import Clock, local_today
from portal.kernel.errors import Conflict, DomainError, NotFound
from portal.kernel.money import format_yuan
from portal.kernel.uploads import PHOTOS_AND_PDF, CheckedFile, FileStore, UploadRules
from portal.ledger import service as ledger
from portal.plans.models import (
    OPEN_STATUSES,
    PLAN_MACHINE,
    PaymentPlan,
    PlanBill,
    PlanInstallment,
    PlanOrder,
    PlanStatus,
)
from portal.plans.policy import PlanPolicy

MIN_INSTALLMENTS = 2


# --- errors (words in portal.messages) -------------------------------------------------------

class PlanError(DomainError):
    code = "plan_error"


class BadInstallmentCount(PlanError):
    code = "plan_installment_count"


class BadFirstDueDate(PlanError):
    code = "plan_first_due_date"


class NoBills(PlanError):
    code = "plan_no_bills"


class BillNotOwed(PlanError):
    code = "plan_bill_not_owed"


class BillAlreadyCovered(Conflict):
    code = "plan_bill_covered"


class RecentDefault(PlanError):
    code = "plan_recent_default"
    status = 409


class TotalTooSmall(PlanError):
    code = "plan_total_too_small"


class TotalTooLarge(PlanError):
    code = "plan_total_too_large"


class HardshipRequired(PlanError):
    code = "plan_hardship_required"


class NeedsSupervisor(PlanError):
    code = "plan_needs_supervisor"
    status = 403


class TermsExpired(Conflict):
    code = "plan_terms_expired"


class NotNextInstallment(Conflict):
    code = "plan_not_next_installment"


class PlanNotActive(Conflict):
    code = "plan_not_active"


# --- the installment rules -------------------------------------------------------------------

def split_installments(total_fen: int, count: int) -> list[int]:
    """The installment split rule: ``count`` integer amounts in fen summing exactly to
    ``total_fen``; each is ``total_fen // count`` and the last also takes the remainder
    (``total_fen % count`` fen, fewer than ``count``)."""
    if not isinstance(total_fen, int) or not isinstance(count, int):
        raise TypeError("split_installments takes integer fen and an integer count")
    if count < 1 or total_fen < count:
        raise ValueError(f"cannot split {total_fen} fen into {count} installments of >= 1 fen")
    base, remainder = divmod(total_fen, count)
    return [base] * (count - 1) + [base + remainder]


def due_dates(first_due_on: date, count: int) -> list[date]:
    """Monthly due dates from the first: installment n (from 0) is due n months after the first
    due date, on the same day of the month; in a month without that day (the 29th-31st), on the
    month's last day. Counted from the first date each time, so 31 Jan gives 28 (or 29) Feb,
    then 31 Mar, not 28 Mar."""
    return [first_due_on + relativedelta(months=n) for n in range(count)]


@dataclass(frozen=True)
class Installment:
    seq: int
    amount_fen: int
    due_on: date


def schedule(total_fen: int, count: int, first_due_on: date) -> list[Installment]:
    return [Installment(seq, amount, due) for seq, (amount, due) in enumerate(
        zip(split_installments(total_fen, count), due_dates(first_due_on, count), strict=True),
        start=1)]


@dataclass(frozen=True)
class PlanPayment:
    """A succeeded installment order of a plan: what it paid, less what was refunded of it."""
    order_id: int
    paid_at: datetime
    amount_fen: int


def installments_paid(amounts: Sequence[int],
                      paid: Sequence[PlanPayment]) -> list[PlanPayment | None]:
    """The installment payment rule: what the plan's orders paid, in the order they were paid,
    is a running total that covers the installments in sequence, whichever installment each
    order was opened for. Installment k is paid once the running total reaches what is due
    through it (installments 1..k together); it is paid by the payment that got there. So an
    order beyond its own installment pays the next unpaid one, and an installment only partly
    covered is not paid. For each installment (in ``seq`` order), its payment or None."""
    result: list[PlanPayment | None] = []
    payments_left = iter(paid)
    due = total = 0
    last: PlanPayment | None = None
    for amount in amounts:
        due += amount
        while total < due and (payment := next(payments_left, None)) is not None:
            total += payment.amount_fen
            last = payment
        result.append(last if total >= due else None)
    return result


def plan_schedule(plan: PaymentPlan) -> list[Installment]:
    """The accepted installments, or (before acceptance) the schedule the terms would give."""
    if plan.installments:
        return [Installment(i.seq, i.amount_fen, i.due_on) for i in plan.installments]
    return schedule(plan.total_fen, plan.installment_count, plan.first_due_on)


# --- attachments -----------------------------------------------------------------------------

def upload_rules(policy: PlanPolicy) -> UploadRules:
    """What a request may carry: one supporting document, a photo or a PDF."""
    return UploadRules(max_bytes=policy.attachment_max_bytes, kinds=PHOTOS_AND_PDF, max_files=1)


def attachment_of(plan: PaymentPlan) -> tuple[str, str, str]:
    """``(stored name, content type, name to show)`` of the plan's file; NotFound if none."""
    if not (plan.attachment_key and plan.attachment_type):
        raise NotFound()
    return plan.attachment_key, plan.attachment_type, plan.attachment_name or plan.attachment_key


# --- queries ---------------------------------------------------------------------------------

def covered_bill_ids(session: Session, bill_ids: Sequence[int]) -> set[int]:
    """Those of ``bill_ids`` already in an open plan (requested to active)."""
    return set(session.scalars(
        sa.select(PlanBill.bill_id).join(PaymentPlan, PaymentPlan.id == PlanBill.plan_id)
        .where(PlanBill.bill_id.in_(list(bill_ids)), PaymentPlan.status.in_(OPEN_STATUSES))))


def customer_plans(session: Session, customer_id: int) -> list[PaymentPlan]:
    """Plans of the accounts linked to the customer (whoever of them asked), newest first."""
    from portal.accounts.models import AccountLink

    return list(session.scalars(
        sa.select(PaymentPlan).where(PaymentPlan.account_id.in_(
            sa.select(AccountLink.account_id).where(AccountLink.customer_id == customer_id)))
        .order_by(PaymentPlan.requested_at.desc(), PaymentPlan.id.desc())))


def owned_plan(session: Session, customer_id: int, plan_id: int) -> PaymentPlan:
    """The plan if its account is linked to the customer; NotFound otherwise (never 403)."""
    from portal.accounts.models import AccountLink

    plan = session.scalar(sa.select(PaymentPlan).where(
        PaymentPlan.id == plan_id,
        PaymentPlan.account_id.in_(sa.select(AccountLink.account_id)
                                   .where(AccountLink.customer_id == customer_id))))
    if plan is None:
        raise NotFound()
    return plan


def scoped_plans(session: Session, staff: StaffMember) -> sa.Select[tuple[PaymentPlan]]:
    return sa.select(PaymentPlan).where(account_filter(session, staff, PaymentPlan.account_id))


def get_scoped_plan(session: Session, staff: StaffMember, plan_id: int) -> PaymentPlan:
    """A plan of an account in ``staff``'s districts; NotFound otherwise, as if absent."""
    plan = session.scalar(scoped_plans(session, staff).where(PaymentPlan.id == plan_id))
    if plan is None:
        raise NotFound()
    return plan


def staff_worklist(session: Session, staff: StaffMember, status: PlanStatus | None,
                   limit: int = 200) -> list[PaymentPlan]:
    query = scoped_plans(session, staff)
    if status is not None:
        query = query.where(PaymentPlan.status == status)
    return list(session.scalars(query.order_by(PaymentPlan.requested_at, PaymentPlan.id)
                                .limit(limit)))


# --- eligibility and the request -------------------------------------------------------------

def _check_terms(policy: PlanPolicy, today: date, installments: int, first_due_on: date,
                 total_fen: int) -> None:
    if not MIN_INSTALLMENTS <= installments <= policy.max_installments:
        raise BadInstallmentCount(str(installments))
    if not today < first_due_on <= today + timedelta(days=policy.first_due_within_days):
        raise BadFirstDueDate(first_due_on.isoformat())
    if total_fen < installments:  # pragma: no cover  (the minimum total is far above 12 fen)
        raise TotalTooSmall(str(total_fen))


def eligible_bills(session: Session, account_id: int) -> list[tuple[int, str, int]]:
    """``(bill id, period, owed fen)`` of the account's owed bills not in an open plan,
    oldest first: what a request may choose from."""
    owed = ledger.owed_bills(session, account_id)
    taken = covered_bill_ids(session, [b.id for b, _a in owed])
    return [(b.id, b.period, amount) for b, amount in owed if b.id not in taken]


def request_plan(session: Session, clock: Clock, policy: PlanPolicy, zone: tzinfo, *,
                 customer_id: int, account: ElectricityAccount, bill_ids: Sequence[int],
                 installments: int, first_due_on: date, reason: str, hardship: bool,
                 attachment: CheckedFile | None = None,
                 store: FileStore | None = None) -> PaymentPlan:
    """A customer asks to pay the chosen owed bills of their account (checked by the caller)
    in installments, with an optional supporting file (checked with ``upload_rules``, saved in
    ``store``). Every eligibility rule is checked before anything is written. Flushes."""
    today = local_today(clock, zone)
    # one request of an account at a time (PostgreSQL; SQLite's BEGIN IMMEDIATE serialises
    # writers already): two concurrent requests cannot both cover a bill
    session.execute(sa.select(ElectricityAccount.id).where(ElectricityAccount.id == account.id)
                    .with_for_update())
    if account.customer_class == CustomerClass.RESIDENTIAL and not (
            policy.residents_allowed and hardship):
        raise HardshipRequired()
    wanted = list(dict.fromkeys(bill_ids))
    if not wanted:
        raise NoBills()
    owed = {b.id: (b, amount) for b, amount in ledger.owed_bills(session, account.id)}
    if any(bill_id not in owed for bill_id in wanted):
        raise BillNotOwed()
    if covered_bill_ids(session, wanted):
        raise BillAlreadyCovered()
    since = clock.now() - timedelta(days=policy.default_lookback_days)
    if session.scalar(sa.select(sa.func.count()).select_from(PaymentPlan).where(
            PaymentPlan.account_id == account.id, PaymentPlan.status == PlanStatus.DEFAULTED,
            PaymentPlan.defaulted_at >= since)):
        raise RecentDefault()
    chosen = [owed[i] for i in owed if i in wanted]  # owed_bills' order: oldest first
    total = sum(amount for _b, amount in chosen)
    if total < policy.min_total_fen:
        raise TotalTooSmall(str(total))
    if total > policy.max_total_fen:
        raise TotalTooLarge(str(total))
    _check_terms(policy, today, installments, first_due_on, total)
    stored = None
    if attachment is not None:
        if store is None:
            raise ValueError("an attachment needs a store")
        stored = store.save(attachment, session)
    now = clock.now()
    plan = PaymentPlan(
        account_id=account.id, customer_id=customer_id, status=PlanStatus.REQUESTED,
        total_fen=total, reason=reason.strip()[:1000], hardship=hardship,
        requested_installments=installments, requested_first_due_on=first_due_on,
        installment_count=installments, first_due_on=first_due_on,
        attachment_key=stored, attachment_type=attachment and attachment.content_type,
        attachment_name=attachment and attachment.original_name,
        requested_at=now, updated_at=now,
        bills=[PlanBill(bill_id=b.id, seq=n, amount_fen=amount)
               for n, (b, amount) in enumerate(chosen)])
    session.add(plan)
    session.flush()
    audit.record(session, clock, "plan.request", "payment_plan", plan.id,
                 customer_id=customer_id, account_id=account.id, amount_fen=total,
                 details={"installments": installments, "first_due_on": first_due_on.isoformat(),
                          "bills": [b.id for b, _a in chosen], "hardship": hardship})
    return plan


# --- staff steps -----------------------------------------------------------------------------

def _move(session: Session, plan: PaymentPlan, source: PlanStatus, target: PlanStatus,
          **values: Any) -> None:
    if not PLAN_MACHINE.move(session, PaymentPlan, plan.id, source, target, **values):
        raise Conflict(f"plan {plan.id} is {plan.status.value}, not {source.value}")
    session.refresh(plan)


def _account_no(session: Session, plan: PaymentPlan) -> str:
    return session.scalar(sa.select(ElectricityAccount.account_no)
                          .where(ElectricityAccount.id == plan.account_id)) or ""


def _tell_customer(session: Session, clock: Clock, plan: PaymentPlan, event: str,
                   **more: str | int) -> None:
    outbox.enqueue(session, clock, "notify", {
        "customer_id": plan.customer_id, "account_id": plan.account_id, "event": event,
        "params": {"plan_id": plan.id, "account_no": _account_no(session, plan),
                   "total_yuan": format_yuan(plan.total_fen),
                   "installments": plan.installment_count, **more}},
        dedup_key=f"notify:{event}:plan:{plan.id}")


def _to_customer(session: Session, clock: Clock, plan: PaymentPlan, staff: StaffMember,
                 source: PlanStatus, **values: Any) -> None:
    """The terms go to the customer: ``plan_approved`` when they are what was asked for,
    ``plan_proposed`` when staff changed them."""
    _move(session, plan, source, PlanStatus.PROPOSED, **values)
    same = (plan.installment_count == plan.requested_installments
            and plan.first_due_on == plan.requested_first_due_on)
    _tell_customer(session, clock, plan, "plan_approved" if same else "plan_proposed")


def propose(session: Session, clock: Clock, policy: PlanPolicy, zone: tzinfo,
            staff: StaffMember, plan: PaymentPlan, *, installments: int, first_due_on: date,
            note: str) -> PaymentPlan:
    """Staff set the terms of a requested plan (the request's own, or others). At or under
    the approval threshold, or set by someone who may approve plans, they go to the customer;
    otherwise a supervisor approves them first."""
    _check_terms(policy, local_today(clock, zone), installments, first_due_on, plan.total_fen)
    now = clock.now()
    values: dict[str, Any] = {
        "installment_count": installments, "first_due_on": first_due_on,
        "staff_note": note.strip()[:1000] or None, "proposed_by_id": staff.id,
        "proposed_at": now, "updated_at": now}
    needs_approval = plan.total_fen > policy.approval_threshold_fen
    if needs_approval and staff.can(Permission.APPROVE_PLANS):
        values.update(approved_by_id=staff.id, approved_at=now)
        needs_approval = False
    if needs_approval:
        _move(session, plan, PlanStatus.REQUESTED, PlanStatus.AWAITING_APPROVAL, **values)
    else:
        _to_customer(session, clock, plan, staff, PlanStatus.REQUESTED, **values)
    audit.record(session, clock, "plan.propose", "payment_plan", plan.id, staff_id=staff.id,
                 account_id=plan.account_id, amount_fen=plan.total_fen,
                 details={"installments": installments, "first_due_on": first_due_on.isoformat(),
                          "note": note[:500], "status": plan.status.value})
    return plan


def approve(session: Session, clock: Clock, staff: StaffMember, plan: PaymentPlan,
            note: str = "") -> PaymentPlan:
    """A supervisor approves terms a collector proposed above the threshold."""
    if not staff.can(Permission.APPROVE_PLANS):  # pragma: no cover  (the route requires it)
        raise NeedsSupervisor()
    now = clock.now()
    values: dict[str, Any] = {"approved_by_id": staff.id, "approved_at": now,
                                 "updated_at": now}
    if note.strip():
        values["staff_note"] = note.strip()[:1000]
    _to_customer(session, clock, plan, staff, PlanStatus.AWAITING_APPROVAL, **values)
    audit.record(session, clock, "plan.approve", "payment_plan", plan.id, staff_id=staff.id,
                 account_id=plan.account_id, amount_fen=plan.total_fen,
                 details={"note": note[:500]})
    return plan


def decline(session: Session, clock: Clock, staff: StaffMember, plan: PaymentPlan,
            reason: str) -> PaymentPlan:
    """Staff decline a request, with the reason the customer reads. Terms awaiting a
    supervisor's approval are declined only by someone who may approve plans."""
    source = plan.status
    if source == PlanStatus.AWAITING_APPROVAL and not staff.can(Permission.APPROVE_PLANS):
        raise NeedsSupervisor()
    if source not in (PlanStatus.REQUESTED, PlanStatus.AWAITING_APPROVAL):
        raise Conflict(f"plan {plan.id} is {source.value}")
    now = clock.now()
    _move(session, plan, source, PlanStatus.DECLINED, declined_by_id=staff.id, declined_at=now,
          decline_reason=reason.strip()[:1000], updated_at=now)
    _tell_customer(session, clock, plan, "plan_declined")
    audit.record(session, clock, "plan.decline", "payment_plan", plan.id, staff_id=staff.id,
                 account_id=plan.account_id, amount_fen=plan.total_fen,
                 details={"reason": reason[:500], "from": source.value})
    return plan


# --- customer steps --------------------------------------------------------------------------

def cancel(session: Session, clock: Clock, customer_id: int, plan: PaymentPlan) -> PaymentPlan:
    """The customer withdraws a request, or says no to the proposed terms."""
    source = plan.status
    if source not in (PlanStatus.REQUESTED, PlanStatus.AWAITING_APPROVAL, PlanStatus.PROPOSED):
        raise Conflict(f"plan {plan.id} is {source.value}")
    now = clock.now()
    _move(session, plan, source, PlanStatus.CANCELLED, cancelled_at=now, updated_at=now)
    audit.record(session, clock, "plan.cancel", "payment_plan", plan.id,
                 customer_id=customer_id, account_id=plan.account_id,
                 details={"from": source.value})
    return plan


def accept(session: Session, clock: Clock, zone: tzinfo, customer_id: int,
           plan: PaymentPlan) -> PaymentPlan:
    """The customer accepts the proposed terms: the plan is active and its installments are
    written (the split rule, monthly due dates). Terms whose first due date has passed cannot be
    accepted (the customer asks again)."""
    if plan.status != PlanStatus.PROPOSED:
        raise Conflict(f"plan {plan.id} is {plan.status.value}")
    if plan.first_due_on <= local_today(clock, zone):
        raise TermsExpired()
    now = clock.now()
    _move(session, plan, PlanStatus.PROPOSED, PlanStatus.ACTIVE, accepted_at=now,
          updated_at=now)
    session.add_all(PlanInstallment(plan_id=plan.id, seq=i.seq, amount_fen=i.amount_fen,
                                    due_on=i.due_on)
                    for i in schedule(plan.total_fen, plan.installment_count, plan.first_due_on))
    session.flush()
    session.refresh(plan)
    audit.record(session, clock, "plan.accept", "payment_plan", plan.id,
                 customer_id=customer_id, account_id=plan.account_id, amount_fen=plan.total_fen,
                 details={"installments": plan.installment_count,
                          "first_due_on": plan.first_due_on.isoformat()})
    return plan


def next_installment(plan: PaymentPlan) -> PlanInstallment | None:
    return next((i for i in plan.installments if i.paid_at is None), None)


def covered_owed_fen(session: Session, plan: PaymentPlan) -> int:
    """What the plan's bills still owe now (the ledger's word)."""
    owed = ledger.owed_by_bill(session, [b.bill_id for b in plan.bills])
    return sum(max(amount, 0) for amount in owed.values())


def open_installment_order(session: Session, clock: Clock, customer_id: int, plan: PaymentPlan,
                           seq: int, *, channel: str, scene: Scene, lifetime: timedelta,
                           first_query_after: timedelta) -> PaymentOrder:
    """A payment order for the next unpaid installment: the installment's amount (no more than
    the covered bills still owe) paid against the covered bills oldest first, through the normal
    order path. What the order pays counts towards the installments in sequence
    (``installments_paid``), whichever one it was opened for. Flushes."""
    settle(session, clock, [plan.id])  # an installment paid since the page was shown
    session.refresh(plan)
    if plan.status != PlanStatus.ACTIVE:
        raise PlanNotActive()
    installment = next_installment(plan)
    if installment is None or installment.seq != seq:
        raise NotNextInstallment(str(seq))
    owed = ledger.owed_by_bill(session, [b.bill_id for b in plan.bills])
    bill_ids = [b.bill_id for b in plan.bills if owed.get(b.bill_id, 0) > 0]
    order = payments.create_order(
        session, clock, account_id=plan.account_id, customer_id=customer_id, channel=channel,
        scene=scene, bill_ids=bill_ids, limit_fen=installment.amount_fen, lifetime=lifetime,
        first_query_after=first_query_after)
    session.add(PlanOrder(order_id=order.id, installment_id=installment.id))
    session.flush()
    return order


# --- the daily sweep -------------------------------------------------------------------------

def plan_payments(session: Session,
                  plan_ids: Sequence[int] | None = None) -> dict[int, list[PlanPayment]]:
    """The succeeded installment orders of each plan (of ``plan_ids``, or of every plan with an
    unpaid installment), oldest payment first, each less what succeeded refunds of it returned:
    what ``installments_paid`` counts."""
    refunded = (sa.select(Refund.order_id, sa.func.sum(Refund.amount_fen).label("fen"))
                .where(Refund.status == RefundStatus.SUCCEEDED)
                .group_by(Refund.order_id).subquery())
    query = (sa.select(PlanInstallment.plan_id, PaymentOrder.id, PaymentOrder.paid_at,
                       PaymentOrder.amount_fen - sa.func.coalesce(refunded.c.fen, 0))
             .join(PlanOrder, PlanOrder.installment_id == PlanInstallment.id)
             .join(PaymentOrder, PaymentOrder.id == PlanOrder.order_id)
             .outerjoin(refunded, refunded.c.order_id == PaymentOrder.id)
             .where(PaymentOrder.status == OrderStatus.SUCCEEDED)
             .order_by(PlanInstallment.plan_id, PaymentOrder.paid_at, PaymentOrder.id))
    if plan_ids is not None:
        query = query.where(PlanInstallment.plan_id.in_(list(plan_ids)))
    else:
        query = query.where(PlanInstallment.plan_id.in_(
            sa.select(PlanInstallment.plan_id).where(PlanInstallment.paid_at.is_(None))))
    paid: dict[int, list[PlanPayment]] = {}
    for plan_id, order_id, paid_at, amount in session.execute(query).tuples():
        assert paid_at is not None  # noqa: S101  (a succeeded order has its paid_at)
        paid.setdefault(plan_id, []).append(PlanPayment(order_id, paid_at, int(amount)))
    return paid


def settle(session: Session, clock: Clock, plan_ids: Sequence[int] | None = None) -> int:
    """Record installments paid by the rule (``installments_paid``) on the installment
    (``paid_at``, ``order_id``: the payment that covered it), and complete active plans whose
    installments are all paid or whose bills owe nothing any more. Returns the plans completed.
    ``plan_ids`` limits it to some plans (a page view).

    Each record is a guarded UPDATE of an installment still unpaid, so settling twice, or two
    settles at once (a page view and the sweep), record an installment once; a recorded
    installment stays paid (what a later refund takes back is owed on the bills again)."""
    paid = plan_payments(session, plan_ids)
    installments: dict[int, list[tuple[int, int, datetime | None]]] = {}
    for plan_id, installment_id, amount, paid_at in session.execute(
            sa.select(PlanInstallment.plan_id, PlanInstallment.id, PlanInstallment.amount_fen,
                      PlanInstallment.paid_at)
            .where(PlanInstallment.plan_id.in_(list(paid)))
            .order_by(PlanInstallment.plan_id, PlanInstallment.seq)).tuples():
        installments.setdefault(plan_id, []).append((installment_id, amount, paid_at))
    records = [
        {"b_id": installment_id, "b_order_id": payment.order_id, "b_paid_at": payment.paid_at}
        for plan_id, rows in installments.items()
        for (installment_id, _amount, paid_at), payment in zip(
            rows, installments_paid([amount for _i, amount, _p in rows], paid[plan_id]),
            strict=True)
        if payment is not None and paid_at is None]
    if records:  # executemany on the connection: guarded, and no ORM bulk-update semantics
        session.connection().execute(
            sa.update(PlanInstallment)
            .where(PlanInstallment.id == sa.bindparam("b_id", type_=PlanInstallment.id.type),
                   PlanInstallment.paid_at.is_(None))
            .values(order_id=sa.bindparam("b_order_id", type_=PlanInstallment.order_id.type),
                    paid_at=sa.bindparam("b_paid_at", type_=PlanInstallment.paid_at.type)),
            records)
    active = sa.select(PaymentPlan).where(PaymentPlan.status == PlanStatus.ACTIVE)
    if plan_ids is not None:
        active = active.where(PaymentPlan.id.in_(list(plan_ids)))
    completed = 0
    now = clock.now()
    for plan in session.scalars(active.execution_options(populate_existing=True)).all():
        session.refresh(plan, ["installments"])
        all_paid = all(i.paid_at is not None for i in plan.installments)
        if not all_paid and covered_owed_fen(session, plan) > 0:
            continue
        if PLAN_MACHINE.move(session, PaymentPlan, plan.id, PlanStatus.ACTIVE,
                             PlanStatus.COMPLETED, completed_at=now, updated_at=now):
            audit.record(session, clock, "plan.complete", "payment_plan", plan.id,
                         account_id=plan.account_id, amount_fen=plan.total_fen,
                         details={"all_installments_paid": all_paid})
            completed += 1
    return completed


@dataclass(frozen=True)
class SweepReport:
    completed: int
    defaulted: int
    reminded: int


def sweep(session: Session, clock: Clock, policy: PlanPolicy, zone: tzinfo) -> SweepReport:
    """The daily job: settle paid installments; default active plans with an installment unpaid
    more than ``grace_days`` after its due date (the customer and the staff member who set the
    terms are told); remind customers of installments due within ``reminder_days``. Safe to
    run twice (guarded moves, outbox dedup keys). Does not commit."""
    completed = settle(session, clock)
    today = local_today(clock, zone)
    late = (sa.select(PlanInstallment.plan_id)
            .join(PaymentPlan, PaymentPlan.id == PlanInstallment.plan_id)
            .where(PaymentPlan.status == PlanStatus.ACTIVE, PlanInstallment.paid_at.is_(None),
                   PlanInstallment.due_on < today - timedelta(days=policy.grace_days))
            .distinct())
    defaulted = 0
    now = clock.now()
    for plan in session.scalars(sa.select(PaymentPlan).where(PaymentPlan.id.in_(late))
                                .order_by(PaymentPlan.id)).all():
        if not PLAN_MACHINE.move(session, PaymentPlan, plan.id, PlanStatus.ACTIVE,
                                 PlanStatus.DEFAULTED, defaulted_at=now, updated_at=now):
            continue  # pragma: no cover  (settled or defaulted by a concurrent sweep)
        session.refresh(plan)
        _tell_customer(session, clock, plan, "plan_defaulted")
        collector = plan.proposed_by_id or plan.approved_by_id
        if collector is not None:
            staff_messages.notify_staff(
                session, clock, collector, "plan_defaulted",
                {"plan_id": plan.id, "account_no": _account_no(session, plan),
                 "total_yuan": format_yuan(plan.total_fen)},
                dedup_key=f"notify_staff:plan_defaulted:plan:{plan.id}")
        audit.record(session, clock, "plan.default", "payment_plan", plan.id,
                     account_id=plan.account_id, amount_fen=plan.total_fen,
                     details={"grace_days": policy.grace_days})
        defaulted += 1
    reminded = 0
    soon = session.execute(
        sa.select(PlanInstallment, PaymentPlan)
        .join(PaymentPlan, PaymentPlan.id == PlanInstallment.plan_id)
        .where(PaymentPlan.status == PlanStatus.ACTIVE, PlanInstallment.paid_at.is_(None),
               PlanInstallment.due_on >= today,
               PlanInstallment.due_on <= today + timedelta(days=policy.reminder_days))).all()
    for installment, plan in soon:
        reminded += outbox.enqueue(session, clock, "notify", {
            "customer_id": plan.customer_id, "account_id": plan.account_id,
            "event": "plan_installment_due",
            "params": {"plan_id": plan.id, "account_no": _account_no(session, plan),
                       "seq": installment.seq, "amount_yuan": format_yuan(installment.amount_fen),
                       "due_date": installment.due_on.isoformat()}},
            dedup_key=f"notify:plan_installment_due:plan:{plan.id}:{installment.seq}")
    return SweepReport(completed, defaulted, reminded)


def staff_names(session: Session, plan: PaymentPlan) -> dict[int, str]:
    ids = {i for i in (plan.proposed_by_id, plan.approved_by_id, plan.declined_by_id) if i}
    if not ids:
        return {}
    return dict(session.execute(sa.select(StaffMember.id, StaffMember.display_name)
                                .where(StaffMember.id.in_(ids))).tuples().all())


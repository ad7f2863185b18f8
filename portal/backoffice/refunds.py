"""Refunds in the back office: payment orders and refunds of the accounts in a member's
districts, and the steps people take (a collector requests; a second member approves, or
someone who may approve declines).

Scoping is here, in the query layer, like ``portal.backoffice.service``: another district's
order or refund is NotFound, as if it did not exist. The money rules (what is refundable, the
four-eyes check, the state machine, sending and the ledger) are ``payments.service``'s.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from payments import service as payments
from payments.models import PaymentOrder, Refund
from payments.states import REFUND_MACHINE, OrderStatus, RefundStatus
from portal.backoffice.models import StaffMember
from portal.backoffice.service import account_filter
from portal.kernel import audit
from portal.kernel.clock import Clock
from portal.kernel.errors import Conflict, NotFound

RECENT_REFUNDS = 50


class OrderNotPaid(Conflict):
    code = "refund_order_not_paid"


class ChannelNotEnabled(Conflict):
    code = "refund_channel_not_enabled"


@dataclass(frozen=True)
class OrderRow:
    order: PaymentOrder
    refundable_fen: int  # 0 unless the order succeeded


def account_orders(session: Session, account_id: int) -> list[OrderRow]:
    """An account's payment orders, newest first, with what is left to refund on each; the
    caller has checked the account is in scope (``get_scoped_account``)."""
    orders = list(session.scalars(sa.select(PaymentOrder)
                                  .where(PaymentOrder.account_id == account_id)
                                  .order_by(PaymentOrder.created_at.desc(),
                                            PaymentOrder.id.desc())))
    refundable = payments.refundable_by_order(session, orders)
    return [OrderRow(o, refundable[o.id] if o.status == OrderStatus.SUCCEEDED else 0)
            for o in orders]


def get_scoped_order(session: Session, staff: StaffMember, order_id: int) -> OrderRow:
    """An order of an account in ``staff``'s districts, with its refundable amount."""
    order = session.scalar(sa.select(PaymentOrder).where(
        PaymentOrder.id == order_id, account_filter(session, staff, PaymentOrder.account_id)))
    if order is None:
        raise NotFound()
    refundable = (payments.refundable_fen(session, order)
                  if order.status == OrderStatus.SUCCEEDED else 0)
    return OrderRow(order, refundable)


def scoped_refunds(session: Session, staff: StaffMember) -> sa.Select[tuple[Refund]]:
    return sa.select(Refund).join(PaymentOrder, PaymentOrder.id == Refund.order_id).where(
        account_filter(session, staff, PaymentOrder.account_id))


def get_scoped_refund(session: Session, staff: StaffMember, refund_id: int) -> Refund:
    refund = session.scalar(scoped_refunds(session, staff).where(Refund.id == refund_id))
    if refund is None:
        raise NotFound()
    return refund


def awaiting_approval(session: Session, staff: StaffMember) -> list[Refund]:
    """Requested refunds in ``staff``'s districts, oldest first."""
    return list(session.scalars(scoped_refunds(session, staff)
                                .where(Refund.status == RefundStatus.REQUESTED)
                                .order_by(Refund.requested_at, Refund.id)))


def recent_refunds(session: Session, staff: StaffMember,
                   limit: int = RECENT_REFUNDS) -> list[Refund]:
    """Refunds decided (approved or declined) in ``staff``'s districts, newest first."""
    return list(session.scalars(scoped_refunds(session, staff)
                                .where(Refund.status != RefundStatus.REQUESTED)
                                .order_by(Refund.updated_at.desc(), Refund.id.desc())
                                .limit(limit)))


def staff_names(session: Session, refunds: Sequence[Refund]) -> dict[int, str]:
    """Who requested, approved or declined each refund, by staff id."""
    ids = {r.requested_by_id for r in refunds} | {
        i for r in refunds for i in (r.approved_by_id, r.declined_by_id) if i is not None}
    rows = session.execute(sa.select(StaffMember.id, StaffMember.display_name)
                           .where(StaffMember.id.in_(sorted(ids)))).tuples()
    return dict(rows.all())


def request(session: Session, clock: Clock, staff: StaffMember, order: PaymentOrder, *,
            amount_fen: int, reason: str) -> Refund:
    """``staff`` asks to refund ``amount_fen`` of a succeeded order (in scope: the caller got
    it from ``get_scoped_order``). Flushes; the caller commits."""
    if order.status != OrderStatus.SUCCEEDED:
        raise OrderNotPaid(order.order_no)
    refund = payments.request_refund(session, clock, order_no=order.order_no,
                                     amount_fen=amount_fen, reason=reason.strip(),
                                     requested_by=staff.id)
    _audit(session, clock, staff, refund, "refund.request", reason=reason.strip())
    return refund


def _audit(session: Session, clock: Clock, staff: StaffMember, refund: Refund, action: str,
           **details: str) -> None:
    """The decision's audit row, in the caller's transaction."""
    audit.record(session, clock, action, "refund", refund.refund_no, staff_id=staff.id,
                 account_id=refund.order.account_id, amount_fen=refund.amount_fen,
                 details={"order_no": refund.order.order_no, **details})


def approve(session: Session, clock: Clock, staff: StaffMember, refund: Refund,
            enabled_channels: Collection[str]) -> None:
    """``staff`` approves a requested refund (in scope); SameApprover for its requester,
    Conflict when someone else decided first, ChannelNotEnabled when its order's channel is not
    enabled here (an approved refund could not be sent: better not to approve it). Does not
    commit."""
    if refund.order.channel not in enabled_channels:
        raise ChannelNotEnabled(refund.order.channel)
    payments.approve_refund(session, clock, refund, approved_by=staff.id)
    _audit(session, clock, staff, refund, "refund.approve")


def decline(session: Session, clock: Clock, staff: StaffMember, refund: Refund,
            reason: str) -> None:
    """``staff`` decides against a requested refund (in scope): nothing is sent, and the amount
    is refundable again. Who, when and why are recorded; Conflict when someone else decided
    first. Does not commit."""
    now = clock.now()
    if not REFUND_MACHINE.move(session, Refund, refund.id, RefundStatus.REQUESTED,
                               RefundStatus.DECLINED, declined_by_id=staff.id, declined_at=now,
                               failure_reason=reason.strip()[:255], finished_at=now,
                               updated_at=now):
        raise Conflict(f"refund {refund.refund_no} is no longer requested")
    session.refresh(refund)
    _audit(session, clock, staff, refund, "refund.decline", reason=reason.strip())

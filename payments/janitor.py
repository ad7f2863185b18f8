"""The janitor: turns a lost notification or a channel timeout into a delay, never a loss.

Every minute (Celery beat) it takes open orders whose ``next_query_at`` has come and asks their
channel. A success found by query goes through the same ``apply_trade`` as a notification. An
order past its ``expires_at`` is closed at the channel FIRST (so it cannot be paid afterwards)
and then locally; if the channel says it was paid meanwhile, the payment is applied instead. An
order still open after ``max_attempts`` queries and past its expiry goes to review for staff.
Pending refunds are pushed forward the same way (re-sent with their refund number, or queried).
Each order is handled in its own transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from payments import service
from payments.channels.base import ChannelError, ChannelUnavailable, PaymentChannel, TradeState
from payments.models import PaymentOrder, Refund
from payments.states import OPEN, ORDER_MACHINE, OrderStatus, RefundStatus
from portal.kernel.clock import Clock

log = logging.getLogger(__name__)


class JanitorPolicy(BaseModel):
    """How long orders live and how often open ones are queried (settings: DIANFEI_PAYMENTS__*)."""

    model_config = ConfigDict(frozen=True)

    order_minutes: int = Field(default=30, ge=5, le=7 * 24 * 60)
    # seconds before query n+1; the last one repeats
    query_backoff_seconds: tuple[int, ...] = Field(default=(60, 120, 300, 600, 1800), min_length=1)
    max_attempts: int = Field(default=12, ge=1)
    refund_retry_seconds: int = Field(default=300, ge=10)
    batch: int = Field(default=100, ge=1)

    @property
    def lifetime(self) -> timedelta:
        return timedelta(minutes=self.order_minutes)

    def backoff(self, attempts: int) -> timedelta:
        """The wait after ``attempts`` queries (0: the first query after creation)."""
        steps = self.query_backoff_seconds
        return timedelta(seconds=steps[min(attempts, len(steps) - 1)])


@dataclass
class JanitorReport:
    queried: int = 0
    applied: int = 0
    closed: int = 0
    review: int = 0
    unreachable: int = 0
    refunds: int = 0
    skipped: list[str] = field(default_factory=list)


def run(session: Session, clock: Clock, channels: Mapping[str, PaymentChannel],
        policy: JanitorPolicy, zone: tzinfo = service.DEFAULT_ZONE) -> JanitorReport:
    """One sweep over due orders and pending refunds; commits per order."""
    report = JanitorReport()
    now = clock.now()
    due = list(session.scalars(  # loaded first: each is then handled in its own transaction
        sa.select(PaymentOrder)
        .where(PaymentOrder.status.in_(OPEN), PaymentOrder.next_query_at <= now)
        .order_by(PaymentOrder.next_query_at).limit(policy.batch)))
    for order in due:
        channel = channels.get(order.channel)
        if channel is None:
            report.skipped.append(order.order_no)
            continue
        _sweep_order(session, clock, channel, order, policy, zone, report)
        session.commit()
    refunds = list(session.scalars(
        sa.select(Refund).where(Refund.status == RefundStatus.PENDING,
                                sa.or_(Refund.next_query_at.is_(None),
                                       Refund.next_query_at <= now))
        .order_by(Refund.id).limit(policy.batch)))
    for refund in refunds:
        channel = channels.get(refund.order.channel)
        if channel is None:
            report.skipped.append(refund.refund_no)
            continue
        service.send_refund(session, clock, channel, refund,
                            timedelta(seconds=policy.refund_retry_seconds), zone)
        report.refunds += 1
    return report


def _sweep_order(session: Session, clock: Clock, channel: PaymentChannel, order: PaymentOrder,
                 policy: JanitorPolicy, zone: tzinfo, report: JanitorReport) -> None:
    now = clock.now()
    report.queried += 1
    try:
        trade = channel.query(order.order_no, order.channel_ref)
    except ChannelError as exc:
        log.info("janitor: query of %s failed: %s", order.order_no, exc)
        report.unreachable += 1
        _later(session, clock, order, policy, report)
        return
    if trade.state not in (TradeState.PENDING, TradeState.NOT_FOUND):
        outcome = service.apply_trade(session, clock, channel.name, trade, "query", zone)
        report.applied += outcome == service.Outcome.APPLIED
        report.review += outcome == service.Outcome.REVIEW
        return
    if now < order.expires_at:
        if order.status != OrderStatus.PENDING and trade.state == TradeState.PENDING:
            service.apply_trade(session, clock, channel.name, trade, "query", zone)
        _later(session, clock, order, policy, report)
        return
    try:  # expired: close at the channel first, so nobody can pay it after we gave up on it
        channel.close(order.order_no, order.channel_ref)
    except ChannelError as exc:
        if exc.code == "already_paid":
            paid = channel.query(order.order_no, order.channel_ref)
            outcome = service.apply_trade(session, clock, channel.name, paid, "query", zone)
            report.applied += outcome == service.Outcome.APPLIED
            report.review += outcome == service.Outcome.REVIEW
            return
        log.info("janitor: close of %s failed: %s", order.order_no, exc)
        report.unreachable += isinstance(exc, ChannelUnavailable)
        _later(session, clock, order, policy, report)
        return
    ORDER_MACHINE.move(session, PaymentOrder, order.id, order.status, OrderStatus.CLOSED,
                       next_query_at=None, updated_at=now)
    report.closed += 1


def _later(session: Session, clock: Clock, order: PaymentOrder, policy: JanitorPolicy,
           report: JanitorReport) -> None:
    """Schedule the next query, or hand the order to staff when its queries ran out after
    expiry."""
    now = clock.now()
    attempts = order.query_attempts + 1
    if attempts >= policy.max_attempts and now >= order.expires_at:
        ORDER_MACHINE.move(session, PaymentOrder, order.id, order.status, OrderStatus.REVIEW,
                           review_reason="queries_exhausted", query_attempts=attempts,
                           next_query_at=None, updated_at=now)
        report.review += 1
        return
    next_at = now + policy.backoff(attempts)
    if now < order.expires_at:
        next_at = min(next_at, order.expires_at)
    order.query_attempts, order.next_query_at, order.updated_at = attempts, next_at, now

"""Payment orders: create (committed before any channel call), check out, apply verified trades
once, credit the ledger, and refunds. Flask-free; callers pass the session, clock and channel.

Idempotency: the order row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` already serialises writers) and every move is a guarded UPDATE; ledger refs
derive from the order number, so a duplicate that slips past both still writes nothing.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Sequence
from dataclasses import asdict
from datetime import date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from payments.channels.base import (
    ChannelError,
    ChannelUnavailable,
    Checkout,
    Notification,
    OrderRequest,
    PaymentChannel,
    RefundRequest,
    RefundResult,
    RefundState,
    Scene,
    Trade,
    TradeState,
)
from payments.models import PaymentEvent, PaymentOrder, PaymentOrderBill, Refund
from payments.states import OPEN, ORDER_MACHINE, REFUND_MACHINE, OrderStatus, RefundStatus
from portal.accounts.models import ElectricityAccount
from portal.bills import service as bills_service
from portal.bills.models import Bill, BillStatus
from portal.kernel import outbox
from portal.kernel.clock import Clock, local_today
from portal.kernel.db import (
    NewRows,
    insert_new_together,
    move_and_insert,
    statements_commit_alone,
)
from portal.kernel.errors import Conflict, DomainError, NotFound
from portal.ledger import service as ledger
from portal.ledger.models import EntryKind, LedgerEntry

log = logging.getLogger(__name__)

DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")
POST_PAYMENT_TOPIC = "billing.post_payment"
REVERSE_PAYMENT_TOPIC = "billing.reverse_payment"
MAX_TOPUP_FEN = 10_000_000  # 100,000 yuan: a typing slip, not a top-up


class NothingToPay(DomainError):
    code = "payment_nothing_to_pay"


class InvalidAmount(DomainError):
    code = "payment_invalid_amount"


class ChannelDown(DomainError):
    code = "payment_channel_unavailable"
    status = 503


class ChannelRefused(DomainError):
    code = "payment_channel_refused"
    status = 502


class SameApprover(Conflict):
    code = "refund_same_approver"


class RefundTooLarge(Conflict):
    code = "refund_too_large"


class Outcome(enum.StrEnum):
    """What applying a trade did, recorded on the raw event."""

    APPLIED = "applied"            # a move happened (succeeded, closed, failed, pending)
    DUPLICATE = "duplicate"        # nothing new: already in that state or past it
    REVIEW = "review"              # amount/currency mismatch or paid after close: staff decide
    UNKNOWN_ORDER = "unknown_order"
    IGNORED = "ignored"            # an event without a trade, or a state we do not act on


def new_number(prefix: str, clock: Clock) -> str:
    """``DF20261203100000a1b2c3d4e5``: prefix, UTC time, 10 random hex (26 characters)."""
    return f"{prefix}{clock.now():%Y%m%d%H%M%S}{secrets.token_hex(5)}"


# --- orders ----------------------------------------------------------------------------------

def create_order(session: Session, clock: Clock, *, account_id: int, customer_id: int | None,
                 channel: str, scene: Scene, bill_ids: Sequence[int] | None,
                 topup_fen: int = 0, lifetime: timedelta,
                 first_query_after: timedelta, limit_fen: int | None = None) -> PaymentOrder:
    """Add an order for the given owed bills (all owed bills when ``bill_ids`` is None) plus an
    optional top-up. Each bill is paid what it owes now, oldest first; with ``limit_fen`` (a
    payment plan's installment) the order is for at most that much, spread over the bills oldest
    first. Flushes, the caller (or ``start_checkout``) commits."""
    if not isinstance(topup_fen, int) or topup_fen < 0 or topup_fen > MAX_TOPUP_FEN:
        raise InvalidAmount(str(topup_fen))
    owed = ledger.owed_bills(session, account_id)
    if bill_ids is not None:
        wanted = set(bill_ids)
        owed = [(bill, amount) for bill, amount in owed if bill.id in wanted]
        if len(owed) != len(wanted):
            raise NothingToPay("a chosen bill is not owed by this account")
    if limit_fen is not None:
        owed = _up_to(owed, limit_fen)
    amount = sum(a for _b, a in owed) + topup_fen
    if amount <= 0:
        raise NothingToPay()
    now = clock.now()
    order = PaymentOrder(
        order_no=new_number("DF", clock), account_id=account_id, customer_id=customer_id,
        channel=channel, scene=scene, amount_fen=amount, currency="CNY",
        status=OrderStatus.CREATED, expires_at=now + lifetime,
        next_query_at=now + first_query_after, query_attempts=0,
        created_at=now, updated_at=now,
        bills=[PaymentOrderBill(bill_id=bill.id, seq=i, amount_fen=a)
               for i, (bill, a) in enumerate(owed)],
    )
    session.add(order)
    session.flush()
    return order


def _up_to(owed: list[tuple[Bill, int]], limit_fen: int) -> list[tuple[Bill, int]]:
    """The first ``limit_fen`` of what the bills owe, oldest first (bills left out get 0)."""
    if not isinstance(limit_fen, int) or limit_fen <= 0:
        raise InvalidAmount(str(limit_fen))
    parts: list[tuple[Bill, int]] = []
    for bill, amount in owed:
        part = min(amount, limit_fen - sum(a for _b, a in parts))
        if part > 0:
            parts.append((bill, part))
    return parts


def start_checkout(session: Session, clock: Clock, channel: PaymentChannel,
                   order: PaymentOrder, *, description: str, notify_url: str, return_url: str,
                   payer_openid: str | None = None) -> Checkout:
    """Commit the order row, then ask the channel for a checkout and record the answer.

    No answer (timeout, 5xx) leaves the order ``unknown`` for the janitor and raises
    ``ChannelDown``; a refusal fails the order and raises ``ChannelRefused``.
    """
    request = OrderRequest(order_no=order.order_no, amount_fen=order.amount_fen,
                           description=description, scene=order.scene, notify_url=notify_url,
                           return_url=return_url, expires_at=order.expires_at,
                           payer_openid=payer_openid, currency=order.currency)
    order_id = order.id
    # The row exists before the channel hears of it; the session is not touched again until
    # the channel answered, so no transaction (on SQLite: no write lock) spans the call.
    session.commit()
    try:
        checkout = channel.create(request)
    except ChannelUnavailable as exc:
        ORDER_MACHINE.move(session, PaymentOrder, order_id, OrderStatus.CREATED,
                           OrderStatus.UNKNOWN, updated_at=clock.now())
        session.commit()
        raise ChannelDown(str(exc)) from exc
    except ChannelError as exc:
        ORDER_MACHINE.move(session, PaymentOrder, order_id, OrderStatus.CREATED,
                           OrderStatus.FAILED, updated_at=clock.now())
        session.commit()
        raise ChannelRefused(exc.code) from exc
    values = {k: v for k, v in asdict(checkout).items() if v is not None}
    ORDER_MACHINE.move(session, PaymentOrder, order_id, OrderStatus.CREATED, OrderStatus.PENDING,
                       checkout=values, channel_ref=checkout.channel_ref, updated_at=clock.now())
    session.commit()
    session.refresh(order)
    return checkout


def order_by_no(session: Session, order_no: str, lock: bool = False) -> PaymentOrder | None:
    query = sa.select(PaymentOrder).where(PaymentOrder.order_no == order_no)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalars(query).first()


def record_event(session: Session, clock: Clock, channel_name: str,
                 notification: Notification, outcome: Outcome) -> bool:
    """Store the verified event as received with what applying it did; False (nothing written)
    when this event id was recorded before (a concurrent copy waits here until the first one
    commits)."""
    return bool(insert_new_together(
        session, [event_row(clock, channel_name, notification, outcome)])[0])


def event_row(clock: Clock, channel_name: str, notification: Notification,
              outcome: Outcome) -> NewRows:
    """The row ``record_event`` writes, unique on (channel, event id)."""
    trade = notification.trade
    return NewRows(PaymentEvent, [{
        "channel": channel_name, "event_id": notification.event_id[:128],
        "event_type": notification.event_type[:64],
        "order_no": trade.order_no[:64] if trade else None,
        "payload": dict(notification.raw), "outcome": outcome.value, "received_at": clock.now(),
    }], unique=["channel", "event_id"])


def _param(column: sa.ColumnElement[Any]) -> sa.BindParameter[Any]:
    """``:b_<column>`` of the column's type (an UPDATE reserves the column's own name)."""
    return sa.bindparam(f"b_{column.key}", type_=column.type)


# A success's statements, built once on the tables (see StateMachine.matching): the guarded
# UPDATE ... RETURNING id moving a matching open order to succeeded, and the read of the order
# with the bills it covers.
#
# Each credits a bill up to what it owes, so what a bill owes must be read after any other
# credit to it has committed: two orders of one account covering the same bill (a customer
# abandons a WeChat QR code and pays by Alipay, then pays the QR code too) succeeding at once,
# an allocation of the prepaid balance, a dispute's credit moving the bill to a new version.
# Else both pay it in full and the surplus sits on the bill instead of in the prepaid balance.
# So the UPDATE also locks the account row (as ``ledger.lock_account`` and every writer that
# decides from what a bill owes do) until the transaction ends, and the general way
# (``_SUCCEED``) reads the bills after it. The one-statement way reads them before, so its
# UPDATE (``_SUCCEED_UNLESS_BUSY``) moves nothing, and the general way takes over, when another
# order of the account is open (``others_open``), when the account is locked (``SKIP LOCKED``),
# or when a ledger entry was written on a covered bill since the read (entries are
# append-only: their count is the bills' version).
_orders = sa.inspect(PaymentOrder).local_table
_accounts = sa.inspect(ElectricityAccount).local_table
_other_orders = _orders.alias("other_orders")
_order_bills = sa.inspect(PaymentOrderBill).local_table
_bills = sa.inspect(Bill).local_table
_entries = sa.inspect(LedgerEntry).local_table
_covering = _order_bills.alias("covering")
_entries_on_covered = (  # the order's covered bills' ledger entries, counted
    sa.select(sa.func.count())
    .select_from(_entries.join(_covering, _covering.c.bill_id == _entries.c.bill_id))
    .where(_covering.c.order_id == _orders.c.id).scalar_subquery())


def _succeed(*, alone: bool) -> sa.Update:
    guards = [_entries_on_covered == sa.bindparam("b_entries_seen", type_=sa.Integer)] \
        if alone else []
    return ORDER_MACHINE.matching(
        PaymentOrder, OPEN, OrderStatus.SUCCEEDED,
        _orders.c.order_no == _param(_orders.c.order_no),
        _orders.c.channel == _param(_orders.c.channel),
        _orders.c.amount_fen == _param(_orders.c.amount_fen),
        _orders.c.currency == _param(_orders.c.currency),
        *guards,
        _orders.c.account_id.in_(sa.select(_accounts.c.id)
                                 .where(_accounts.c.id == _orders.c.account_id)
                                 .with_for_update(key_share=True, skip_locked=alone)),
        returning=(_orders.c.id,),
        paid_at=_param(_orders.c.paid_at), channel_trade_no=_param(_orders.c.channel_trade_no),
        next_query_at=None, updated_at=_param(_orders.c.updated_at),
    )


_SUCCEED = _succeed(alone=False)
_SUCCEED_UNLESS_BUSY = _succeed(alone=True)


# The order by number, with each bill it covers (oldest first) and what that bill owes now;
# an order covering no bill is one row without a bill.
_owed = (sa.select(sa.func.coalesce(sa.func.sum(_entries.c.amount_fen), 0))
         .where(_entries.c.bill_id == _order_bills.c.bill_id).scalar_subquery())
_ORDER_AND_COVERED = (
    sa.select(_orders.c.id, _orders.c.order_no, _orders.c.account_id, _orders.c.amount_fen,
              _orders.c.currency, _orders.c.channel, _orders.c.status, _accounts.c.account_no,
              _order_bills.c.bill_id, _bills.c.period, _owed.label("owed"),
              sa.exists().where(_other_orders.c.account_id == _orders.c.account_id,
                                _other_orders.c.id != _orders.c.id,
                                sa.or_(*(_other_orders.c.status == s for s in sorted(OPEN)))
                                ).label("others_open"),
              _entries_on_covered.label("entries_seen"))
    .select_from(_orders.join(_accounts, _accounts.c.id == _orders.c.account_id)
                 .outerjoin(_order_bills, _order_bills.c.order_id == _orders.c.id)
                 .outerjoin(_bills, _bills.c.id == _order_bills.c.bill_id))
    .where(_orders.c.order_no == sa.bindparam("order_no"))
    .order_by(_order_bills.c.seq))

Covered = list[tuple[int, str, int]]  # (bill id, period, owed now) oldest first


def _order_and_covered(connection: sa.Connection,
                       order_no: str) -> tuple[sa.Row[Any] | None, Covered]:
    """The order (``_ORDER_AND_COVERED``'s order columns; None if there is none) and the
    bills it covers."""
    rows = connection.execute(_ORDER_AND_COVERED, {"order_no": order_no}).all()
    return (rows[0] if rows else None,
            [(r.bill_id, r.period, int(r.owed)) for r in rows if r.bill_id is not None])


def _success_params(channel_name: str, trade: Trade, paid_at: datetime,
                    now: datetime) -> dict[str, Any]:
    return {"b_order_no": trade.order_no, "b_channel": channel_name,
            "b_amount_fen": trade.amount_fen, "b_currency": trade.currency,
            "b_paid_at": paid_at, "b_channel_trade_no": trade.channel_trade_no,
            "b_updated_at": now}


def apply_trade(session: Session, clock: Clock, channel_name: str, trade: Trade,
                source: str, zone: tzinfo = DEFAULT_ZONE) -> Outcome:
    """Apply one verified statement about an order, once. Does not commit.

    ``source`` says where the trade came from ("notify", "query", "return") for the log.

    A success for an open order of this channel with the same amount and currency is one
    guarded UPDATE; anything else locks the order row and decides.
    """
    now = clock.now()
    if trade.state == TradeState.SUCCEEDED:
        paid_at = trade.paid_at or now
        connection = session.connection()
        if connection.execute(_SUCCEED, _success_params(channel_name, trade, paid_at,
                                                        now)).first() is not None:
            paid, covered = _order_and_covered(connection, trade.order_no)
            assert paid is not None  # noqa: S101  (the UPDATE just moved it)
            rows, remaining = _credit(clock, paid, covered, paid_at, zone)
            insert_new_together(session, rows)
            if remaining > 0:
                _to_balance(session, clock, paid, remaining, paid_at, zone)
            return Outcome.APPLIED
    order = order_by_no(session, trade.order_no, lock=True)
    if order is None or order.channel != channel_name:
        log.warning("%s %s: no %s order %s", channel_name, source, channel_name, trade.order_no)
        return Outcome.UNKNOWN_ORDER
    status = order.status
    if trade.state in (TradeState.SUCCEEDED, TradeState.REFUNDED):
        if status in (OrderStatus.SUCCEEDED, OrderStatus.REVIEW):
            return Outcome.DUPLICATE
        reason = None
        if trade.amount_fen != order.amount_fen or trade.currency != order.currency:
            reason = (f"amount_mismatch: paid {trade.amount_fen} {trade.currency}, "
                      f"ordered {order.amount_fen} {order.currency}")
        elif status not in OPEN:
            reason = f"paid_after_{status.value}"
        elif trade.state == TradeState.REFUNDED:  # paid, then refunded at the channel's console:
            reason = "refunded_at_channel"        # in part or whole, a person decides
        if reason is None:  # pragma: no cover  (open and matching: the UPDATE above moved it)
            return Outcome.DUPLICATE
        ORDER_MACHINE.move(session, PaymentOrder, order.id, status, OrderStatus.REVIEW,
                           review_reason=reason[:255], channel_trade_no=trade.channel_trade_no,
                           next_query_at=None, updated_at=now)
        log.warning("order %s to review (%s, via %s)", order.order_no, reason, source)
        return Outcome.REVIEW
    target = {TradeState.CLOSED: OrderStatus.CLOSED, TradeState.FAILED: OrderStatus.FAILED,
              TradeState.PENDING: OrderStatus.PENDING}.get(trade.state)
    if target is None or status not in OPEN:
        return Outcome.IGNORED if target is None else Outcome.DUPLICATE
    if status == target:
        return Outcome.DUPLICATE
    ORDER_MACHINE.move(session, PaymentOrder, order.id, status, target, updated_at=now,
                       next_query_at=None if target != OrderStatus.PENDING else order.next_query_at)
    return Outcome.APPLIED


def _credit(clock: Clock, order: sa.Row[Any], covered: Covered, paid_at: datetime,
            zone: tzinfo) -> tuple[list[NewRows], int]:
    """What crediting a succeeded order (``order_no, account_id, amount_fen, channel,
    account_no``) writes: its bills' ledger entries, oldest first and up to what each still
    owes, and the message telling billing; and what is left over for the prepaid balance
    (``_to_balance``)."""
    day = paid_at.astimezone(zone).date()
    memo = f"{order.channel} {order.order_no}"
    entries = []
    remaining = order.amount_fen
    for bill_id, _period, owed in covered:
        amount = min(owed, remaining)
        if amount <= 0:
            continue
        entries.append(ledger.Entry(account_id=order.account_id, bill_id=bill_id,
                                    kind=EntryKind.PAYMENT, amount_fen=-amount,
                                    ref=f"pay:{order.order_no}:bill:{bill_id}",
                                    effective_on=day, memo=memo))
        remaining -= amount
    message = outbox.message(clock, POST_PAYMENT_TOPIC, {
        "order_no": order.order_no, "account_no": order.account_no,
        "amount_fen": order.amount_fen, "paid_at": paid_at.isoformat(), "channel": order.channel,
        "bill_periods": [period for _bill_id, period, _owed in covered],
    }, dedup_key=f"post:{order.order_no}")
    return [ledger.new_entries(clock, entries), message], remaining


def _to_balance(session: Session, clock: Clock, order: sa.Row[Any], amount_fen: int,
                paid_at: datetime, zone: tzinfo) -> None:
    """What an order paid beyond its bills goes to the prepaid balance, which then pays the
    account's other owed bills (only new credit can)."""
    ledger.post_many(session, clock, [ledger.Entry(
        account_id=order.account_id, kind=EntryKind.PAYMENT, amount_fen=-amount_fen,
        ref=f"pay:{order.order_no}:prepaid", effective_on=paid_at.astimezone(zone).date(),
        memo=f"{order.channel} {order.order_no}")])
    ledger.apply_prepaid(session, clock, order.account_id, local_today(clock, zone))


def handle_notification(session: Session, clock: Clock, channel_name: str,
                        notification: Notification, zone: tzinfo = DEFAULT_ZONE) -> Outcome:
    """Apply the verified event's trade once and record the event with the outcome, before
    the caller answers the channel.

    The everyday notification, a success for an open order of this channel paying its amount
    and no more than its bills owe, while no other order of its account is open (see
    ``_SUCCEED``), is one read and one write (``move_and_insert``: the
    order's move, the ledger entries, the billing message and the event, all or nothing),
    each committed by itself on PostgreSQL: four round trips fewer than a transaction. Any
    other notification, or one whose order moved between the read and the write, takes the
    general way in the session (``apply_trade``, then ``record_event``), which the caller
    commits. A copy of an event already recorded is applied again, which changes nothing
    (every move is guarded, ledger refs derive from the order number), and answers
    DUPLICATE."""
    trade = notification.trade
    if trade is None:
        outcome = Outcome.IGNORED
    else:
        if trade.state == TradeState.SUCCEEDED:
            with statements_commit_alone(session) as connection:
                done = _succeed_at_once(connection, clock, channel_name, notification, trade,
                                        zone)
            if done is not None:
                return done
        outcome = apply_trade(session, clock, channel_name, trade, "notify", zone)
    return outcome if record_event(session, clock, channel_name, notification, outcome) \
        else Outcome.DUPLICATE


def _succeed_at_once(connection: sa.Connection, clock: Clock, channel_name: str,
                     notification: Notification, trade: Trade,
                     zone: tzinfo) -> Outcome | None:
    """The everyday success (``notification``'s ``trade``) in two statements (see
    ``handle_notification``); None when this is not one, or the order moved meanwhile:
    nothing was written."""
    order, covered = _order_and_covered(connection, trade.order_no)
    if (order is None or order.channel != channel_name or order.status not in OPEN
            or order.amount_fen != trade.amount_fen or order.currency != trade.currency
            or order.others_open):
        return None
    now = clock.now()
    paid_at = trade.paid_at or now
    credit, remaining = _credit(clock, order, covered, paid_at, zone)
    if remaining > 0:  # overpaid: the balance is allocated in the session's transaction
        return None
    moved, written = move_and_insert(
        connection, _SUCCEED_UNLESS_BUSY,
        {**_success_params(channel_name, trade, paid_at, now),
         "b_entries_seen": order.entries_seen},
        [*credit, event_row(clock, channel_name, notification, Outcome.APPLIED)])
    if not moved:
        return None
    return Outcome.APPLIED if written[-1] else Outcome.DUPLICATE


def refresh_from_channel(session: Session, clock: Clock, channel: PaymentChannel,
                         order: PaymentOrder, zone: tzinfo = DEFAULT_ZONE) -> Outcome | None:
    """Query the channel once for an open order (the return page) and apply what it says.
    Commits. None when the channel did not answer: the notification or the janitor will."""
    if order.status not in OPEN:
        return None
    try:
        trade = channel.query(order.order_no, order.channel_ref)
    except ChannelError as exc:
        log.info("query of %s on return failed: %s", order.order_no, exc)
        return None
    if trade.state == TradeState.NOT_FOUND:
        return None
    outcome = apply_trade(session, clock, channel.name, trade, "return", zone)
    session.commit()
    session.refresh(order)
    return outcome


# --- refunds ---------------------------------------------------------------------------------

# Refunds that take nothing from what an order can still refund.
NOT_TAKEN = (RefundStatus.FAILED, RefundStatus.DECLINED)


def refundable_by_order(session: Session, orders: Sequence[PaymentOrder]) -> dict[int, int]:
    """What is left to refund on each order (by id): its amount less the refunds that did not
    fail or get declined; one query for any number of orders."""
    taken: dict[int, int] = {}
    if orders:
        taken = {order_id: int(total) for order_id, total in session.execute(
            sa.select(Refund.order_id, sa.func.sum(Refund.amount_fen))
            .where(Refund.order_id.in_([o.id for o in orders]),
                   Refund.status.not_in(NOT_TAKEN))
            .group_by(Refund.order_id)).tuples()}
    return {o.id: o.amount_fen - taken.get(o.id, 0) for o in orders}


def refundable_fen(session: Session, order: PaymentOrder) -> int:
    return refundable_by_order(session, [order])[order.id]


def request_refund(session: Session, clock: Clock, *, order_no: str, amount_fen: int,
                   reason: str, requested_by: int) -> Refund:
    """A staff member asks to refund part or all of a succeeded order. Flushes."""
    order = order_by_no(session, order_no, lock=True)
    if order is None:
        raise NotFound(order_no)
    if order.status != OrderStatus.SUCCEEDED:
        raise Conflict(f"order {order_no} is {order.status.value}")
    if not isinstance(amount_fen, int) or amount_fen <= 0:
        raise InvalidAmount(str(amount_fen))
    if amount_fen > refundable_fen(session, order):
        raise RefundTooLarge(f"{amount_fen} > refundable")
    now = clock.now()
    refund = Refund(refund_no=new_number("RF", clock), order_id=order.id, amount_fen=amount_fen,
                    status=RefundStatus.REQUESTED, reason=reason[:255],
                    requested_by_id=requested_by, requested_at=now, updated_at=now)
    session.add(refund)
    session.flush()
    return refund


def approve_refund(session: Session, clock: Clock, refund: Refund, approved_by: int) -> None:
    """A second staff member approves; the requester cannot approve their own refund."""
    if approved_by == refund.requested_by_id:
        raise SameApprover()
    now = clock.now()
    if not REFUND_MACHINE.move(session, Refund, refund.id, RefundStatus.REQUESTED,
                               RefundStatus.APPROVED, approved_by_id=approved_by,
                               approved_at=now, updated_at=now):
        raise Conflict(f"refund {refund.refund_no} is no longer requested")
    session.refresh(refund)


def _refund_request(refund: Refund) -> RefundRequest:
    order = refund.order
    return RefundRequest(order_no=order.order_no, refund_no=refund.refund_no,
                         amount_fen=refund.amount_fen, order_amount_fen=order.amount_fen,
                         reason=refund.reason, channel_ref=order.channel_ref)


def send_refund(session: Session, clock: Clock, channel: PaymentChannel, refund: Refund,
                retry_after: timedelta, zone: tzinfo = DEFAULT_ZONE) -> RefundStatus:
    """Send an approved refund, or push a pending one forward: re-send it (same refund number)
    while the channel has not acknowledged it, otherwise query its outcome. Commits."""
    now = clock.now()
    if refund.status == RefundStatus.APPROVED:
        REFUND_MACHINE.move(session, Refund, refund.id, RefundStatus.APPROVED,
                            RefundStatus.PENDING, updated_at=now)
        session.commit()  # pending (sent or not) is on record before the channel hears of it
        session.refresh(refund)
    if refund.status != RefundStatus.PENDING:
        return refund.status
    try:
        if refund.accepted:
            refund.query_attempts += 1
            result = channel.query_refund(_refund_request(refund))
        else:
            refund.send_attempts += 1
            result = channel.refund(_refund_request(refund))
            refund.accepted = True
    except ChannelUnavailable as exc:
        log.info("refund %s: no answer (%s); retry later", refund.refund_no, exc)
        refund.next_query_at, refund.updated_at = now + retry_after, now
        session.commit()
        return refund.status
    except ChannelError as exc:
        result = RefundResult(refund.refund_no, RefundState.FAILED)
        refund.failure_reason = exc.code[:255]
    _finish_refund(session, clock, refund, result, retry_after, zone)
    session.commit()
    session.refresh(refund)
    return refund.status


def _finish_refund(session: Session, clock: Clock, refund: Refund, result: RefundResult,
                   retry_after: timedelta, zone: tzinfo) -> None:
    now = clock.now()
    if result.channel_refund_no:
        refund.channel_refund_no = result.channel_refund_no
    if result.state == RefundState.PENDING:
        refund.next_query_at, refund.updated_at = now + retry_after, now
        return
    target = (RefundStatus.SUCCEEDED if result.state == RefundState.SUCCEEDED
              else RefundStatus.FAILED)
    session.flush()
    if REFUND_MACHINE.move(session, Refund, refund.id, RefundStatus.PENDING, target,
                           finished_at=now, next_query_at=None, updated_at=now) \
            and target == RefundStatus.SUCCEEDED:
        order = refund.order
        _debit_refund(session, clock, refund, order, local_today(clock, zone))
        account_no = session.scalar(sa.select(ElectricityAccount.account_no)
                                    .where(ElectricityAccount.id == order.account_id))
        full = refund.amount_fen == order.amount_fen
        outbox.enqueue(session, clock, REVERSE_PAYMENT_TOPIC, {
            "order_no": order.order_no, "refund_no": refund.refund_no, "account_no": account_no,
            "amount_fen": refund.amount_fen, "full": full,
            "refunded_at": now.isoformat(), "channel": order.channel,
        }, dedup_key=f"reverse:{order.order_no}" if full
           else f"reverse:{order.order_no}:{refund.refund_no}")


def _paid_bills_newest_first(session: Session, account_id: int) -> list[tuple[int, int]]:
    """(bill id, fen paid of its total) of the account's issued bills (the newest version of
    each period, newest period first) paid at least in part."""
    issued = [b for b in bills_service.account_bills(session, account_id)
              if b.status is BillStatus.ISSUED]
    owed = ledger.owed_by_bill(session, [b.id for b in issued])
    return [(b.id, b.total_fen - owed[b.id]) for b in issued if b.total_fen > owed[b.id]]


def _debit_refund(session: Session, clock: Clock, refund: Refund, order: PaymentOrder,
                  today: date) -> None:
    """Refunded money leaves the prepaid balance first; the rest un-pays the bills this order
    paid, newest first, then, for money of the order that reached other bills through the
    balance (a top-up the next bill consumed), the account's paid bills, newest first: they
    show as owed again. One REFUND entry per part; what is bill-less is only what none of
    these could take (the balance never hides a debt otherwise)."""
    memo = f"refund of {order.order_no}"
    ledger.lock_account(session, order.account_id)
    from_pool = min(ledger.prepaid_balance(session, order.account_id), refund.amount_fen)
    rest = refund.amount_fen - from_pool
    earlier = list(session.scalars(sa.select(Refund.refund_no).where(
        Refund.order_id == order.id, Refund.id != refund.id,
        Refund.status == RefundStatus.SUCCEEDED)))
    refs = [LedgerEntry.ref.like(f"pay:{order.order_no}:bill:%")] + [
        LedgerEntry.ref.like(f"refund:{no}:bill:%") for no in earlier]
    paid = session.execute(  # what this order paid each bill, less earlier refunds of it
        sa.select(LedgerEntry.bill_id, -sa.func.sum(LedgerEntry.amount_fen))
        .join(PaymentOrderBill, sa.and_(PaymentOrderBill.bill_id == LedgerEntry.bill_id,
                                        PaymentOrderBill.order_id == order.id))
        .where(LedgerEntry.account_id == order.account_id, sa.or_(*refs))
        .group_by(LedgerEntry.bill_id, PaymentOrderBill.seq)
        .order_by(PaymentOrderBill.seq.desc())).all()
    for bill_id, amount in paid:
        part = min(int(amount), rest)
        if part <= 0:
            continue
        ledger.post(session, clock, account_id=order.account_id, bill_id=bill_id,
                    kind=EntryKind.REFUND, amount_fen=part,
                    ref=f"refund:{refund.refund_no}:bill:{bill_id}", effective_on=today,
                    memo=memo)
        rest -= part
    if rest > 0:
        for bill_id, paid_fen in _paid_bills_newest_first(session, order.account_id):
            part = min(paid_fen, rest)
            ledger.post(session, clock, account_id=order.account_id, bill_id=bill_id,
                        kind=EntryKind.REFUND, amount_fen=part,
                        ref=f"refund:{refund.refund_no}:balance:{bill_id}", effective_on=today,
                        memo=memo)
            rest -= part
            if rest == 0:
                break
    if from_pool + rest > 0:
        ledger.post(session, clock, account_id=order.account_id, kind=EntryKind.REFUND,
                    amount_fen=from_pool + rest, ref=f"refund:{refund.refund_no}",
                    effective_on=today, memo=memo)

"""The payment order and refund state machines, as tables (DESIGN §5).

Every move is a guarded ``UPDATE ... WHERE id = :id AND status = :from`` (``StateMachine.move``):
a duplicate or concurrent event finds the row already moved and changes nothing.

Order: ``created`` (row written, channel not called yet) -> ``pending`` (the channel has it) ->
``succeeded`` | ``failed`` | ``closed``. ``unknown`` means the channel did not answer (timeout,
5xx): the janitor queries it. A verified amount or currency different from the order, a success
reported after we closed or failed the order, or an order whose queries ran out, goes to
``review`` for staff; nothing is credited there.

Refund: ``requested`` (staff) -> ``approved`` (a second staff member) -> ``pending`` (sent; the
same refund number on every retry) -> ``succeeded`` | ``failed``; or ``requested`` -> ``declined``
(staff decided against it; nothing was sent).
"""

from __future__ import annotations

import enum

from portal.kernel.statemachine import StateMachine


class OrderStatus(enum.StrEnum):
    CREATED = "created"
    PENDING = "pending"
    UNKNOWN = "unknown"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"
    REVIEW = "review"


# A trade can settle from any open state: the notification may beat our own "pending" write.
OPEN = frozenset({OrderStatus.CREATED, OrderStatus.PENDING, OrderStatus.UNKNOWN})
SETTLED = {OrderStatus.SUCCEEDED, OrderStatus.FAILED, OrderStatus.CLOSED, OrderStatus.REVIEW}

ORDER_MACHINE = StateMachine(
    "payment_order",
    OrderStatus,
    {
        OrderStatus.CREATED: {OrderStatus.PENDING, OrderStatus.UNKNOWN} | SETTLED,
        OrderStatus.PENDING: {OrderStatus.UNKNOWN} | SETTLED,
        OrderStatus.UNKNOWN: {OrderStatus.PENDING} | SETTLED,
        OrderStatus.FAILED: {OrderStatus.REVIEW},   # paid after all: staff decide
        OrderStatus.CLOSED: {OrderStatus.REVIEW},   # paid after we closed it: staff decide
    },
    initial=OrderStatus.CREATED,
)


class RefundStatus(enum.StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DECLINED = "declined"


REFUND_MACHINE = StateMachine(
    "refund",
    RefundStatus,
    {
        RefundStatus.REQUESTED: {RefundStatus.APPROVED, RefundStatus.DECLINED},
        RefundStatus.APPROVED: {RefundStatus.PENDING},
        RefundStatus.PENDING: {RefundStatus.SUCCEEDED, RefundStatus.FAILED},
    },
    initial=RefundStatus.REQUESTED,
)

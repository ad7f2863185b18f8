"""Amounts of bills that reminders and late fees leave alone while something covers them.

An open dispute holds its disputed amount; an active payment plan in good standing holds the
bills it covers. Each source registers a function returning a SELECT of ``(bill_id, held_fen)``
rows; ``held_by_bill()`` sums them per bill as a subquery, so the sweeps stay set-based::

    held = held_by_bill()
    sa.select(...).outerjoin(held, held.c.bill_id == Bill.id)
    # owed on the bill minus sa.func.coalesce(held.c.held_fen, 0) is what reminders and fees see
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

HoldSource = Callable[[], sa.Select[Any]]

_sources: dict[str, HoldSource] = {}


def register(name: str) -> Callable[[HoldSource], HoldSource]:
    """Declare a source of held amounts (a decorator); registering a name again replaces it."""
    def add(source: HoldSource) -> HoldSource:
        _sources[name] = source
        return source
    return add


def sources() -> dict[str, HoldSource]:
    return dict(_sources)


def held_by_bill() -> sa.Subquery:
    """``(bill_id, held_fen)`` per bill with any hold; bills without a hold have no row."""
    selects = [source().subquery().select() for source in _sources.values()]
    if not selects:
        none = sa.select(sa.literal(0).label("bill_id"), sa.literal(0).label("held_fen"))
        return none.where(sa.false()).subquery("held")
    rows = sa.union_all(*selects).subquery("held_rows")
    return (sa.select(rows.c.bill_id, sa.func.sum(rows.c.held_fen).label("held_fen"))
            .group_by(rows.c.bill_id).subquery("held"))

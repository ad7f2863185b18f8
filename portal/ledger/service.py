"""Posting to the ledger and reading balances from it, set-based."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from portal.kernel.clock import Clock
from portal.ledger.models import EntryKind, LedgerEntry


def post(session: Session, clock: Clock, *, account_id: int, kind: EntryKind, amount_fen: int,
         ref: str, effective_on: date, bill_id: int | None = None,
         memo: str | None = None) -> bool:
    """Append one entry; False (and nothing written) when an entry with ``ref`` exists already."""
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool):
        raise TypeError("amount_fen must be int")
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(LedgerEntry).values(
        account_id=account_id, bill_id=bill_id, kind=kind, amount_fen=amount_fen, ref=ref,
        memo=memo, effective_on=effective_on, created_at=clock.now(),
    ).on_conflict_do_nothing(index_elements=["ref"]).returning(LedgerEntry.id)
    return session.execute(stmt).first() is not None


def owed_by_account(session: Session, account_ids: Iterable[int]) -> dict[int, int]:
    """What each account owes in fen (negative: prepaid balance); absent accounts owe 0."""
    ids = list(account_ids)
    rows = session.execute(
        sa.select(LedgerEntry.account_id, sa.func.sum(LedgerEntry.amount_fen))
        .where(LedgerEntry.account_id.in_(ids))
        .group_by(LedgerEntry.account_id)
    )
    owed = dict.fromkeys(ids, 0)
    owed.update({account_id: int(total) for account_id, total in rows})
    return owed


def owed_by_bill(session: Session, bill_ids: Iterable[int]) -> dict[int, int]:
    """What is still owed on each bill in fen (charges and fees less what was allocated to it)."""
    ids = list(bill_ids)
    rows = session.execute(
        sa.select(LedgerEntry.bill_id, sa.func.sum(LedgerEntry.amount_fen))
        .where(LedgerEntry.bill_id.in_(ids))
        .group_by(LedgerEntry.bill_id)
    )
    owed = dict.fromkeys(ids, 0)
    owed.update({bill_id: int(total) for bill_id, total in rows})
    return owed

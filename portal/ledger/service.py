"""Posting to the ledger and reading balances from it, set-based."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import District, ElectricityAccount
from portal.bills.models import Bill, BillStatus
from portal.kernel.clock import Clock, local_today
from portal.kernel.db import NewRows, insert_new_together
from portal.ledger.models import EntryKind, LedgerEntry


@dataclass(frozen=True)
class Entry:
    """One ledger entry to append (see ``post``)."""

    account_id: int
    kind: EntryKind
    amount_fen: int
    ref: str
    effective_on: date
    bill_id: int | None = None
    memo: str | None = None


def post(session: Session, clock: Clock, *, account_id: int, kind: EntryKind, amount_fen: int,
         ref: str, effective_on: date, bill_id: int | None = None,
         memo: str | None = None) -> bool:
    """Append one entry; False (and nothing written) when an entry with ``ref`` exists already."""
    return post_many(session, clock, [Entry(account_id=account_id, kind=kind,
                                            amount_fen=amount_fen, ref=ref,
                                            effective_on=effective_on, bill_id=bill_id,
                                            memo=memo)]) == 1


def post_many(session: Session, clock: Clock, entries: Sequence[Entry]) -> int:
    """Append entries in one INSERT; how many were written (an entry whose ``ref`` exists
    already is skipped)."""
    return len(insert_new_together(session, [new_entries(clock, entries)])[0])


def new_entries(clock: Clock, entries: Sequence[Entry]) -> NewRows:
    """The rows ``post_many`` writes, for a caller that writes them together with others."""
    for entry in entries:
        if not isinstance(entry.amount_fen, int) or isinstance(entry.amount_fen, bool):
            raise TypeError("amount_fen must be int")
    now = clock.now()
    return NewRows(LedgerEntry, [
        {"account_id": e.account_id, "bill_id": e.bill_id, "kind": e.kind,
         "amount_fen": e.amount_fen, "ref": e.ref, "memo": e.memo,
         "effective_on": e.effective_on, "created_at": now} for e in entries
    ], unique=["ref"])


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


# --- prepaid balance ---------------------------------------------------------------------------
# Credit without a bill (an overpayment, a top-up) is the account's prepaid balance. Allocating it
# to a bill appends a pair of ADJUSTMENT entries summing to zero: ``+x`` without a bill (the credit
# leaves the pool) and ``-x`` on the bill. Balances and sums stay right; nothing is rewritten.

def owed_bills(session: Session, account_id: int) -> list[tuple[Bill, int]]:
    """The account's issued bills that still owe something, oldest first, with what each owes."""
    owed = (
        sa.select(LedgerEntry.bill_id, sa.func.sum(LedgerEntry.amount_fen).label("owed"))
        .where(LedgerEntry.account_id == account_id, LedgerEntry.bill_id.is_not(None))
        .group_by(LedgerEntry.bill_id)
        .subquery()
    )
    rows = session.execute(
        sa.select(Bill, owed.c.owed).join(owed, owed.c.bill_id == Bill.id)
        .where(Bill.account_id == account_id, Bill.status == BillStatus.ISSUED, owed.c.owed > 0)
        .order_by(Bill.due_date, Bill.period, Bill.id)
    )
    return [(bill, int(amount)) for bill, amount in rows]


def prepaid_balance(session: Session, account_id: int) -> int:
    """Credit not allocated to any bill (fen, >= 0): overpayments and top-ups not yet used."""
    total = session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(LedgerEntry.amount_fen), 0))
        .where(LedgerEntry.account_id == account_id, LedgerEntry.bill_id.is_(None)))
    return max(-int(total or 0), 0)


def lock_account(session: Session, account_id: int) -> None:
    """Hold the account until the transaction ends, before reading what its bills owe or its
    prepaid balance to decide what to write (an allocation, a refund, a payment's credit), so
    two such writers cannot spend the same credit or pay the same bill twice. PostgreSQL:
    ``FOR NO KEY UPDATE``, exclusive among these writers yet compatible with the KEY SHARE lock
    every ledger insert takes on the account through its foreign key, so no deadlock; SQLite's
    ``BEGIN IMMEDIATE`` already serialises writers."""
    session.execute(sa.select(ElectricityAccount.id).where(ElectricityAccount.id == account_id)
                    .with_for_update(key_share=True))


def apply_prepaid(session: Session, clock: Clock, account_id: int, today: date) -> int:
    """Allocate the account's prepaid balance to its owed bills, oldest first; returns the fen
    allocated. Call it after a payment succeeds and after bills are issued; the caller commits.

    The account is locked (``lock_account``). Refs carry the account's entry count, which only
    grows: a replay of the same state writes nothing.
    """
    lock_account(session, account_id)
    pool = prepaid_balance(session, account_id)
    if pool <= 0:
        return 0
    seen = session.scalar(sa.select(sa.func.count(LedgerEntry.id))
                          .where(LedgerEntry.account_id == account_id))
    allocated = 0
    for bill, owed in owed_bills(session, account_id):
        amount = min(owed, pool - allocated)
        if amount <= 0:
            break
        ref = f"prepaid:{account_id}:{seen}:{bill.id}"
        memo = f"prepaid balance to bill {bill.period}"
        post(session, clock, account_id=account_id, kind=EntryKind.ADJUSTMENT, amount_fen=amount,
             ref=f"{ref}:from", effective_on=today, memo=memo)
        post(session, clock, account_id=account_id, kind=EntryKind.ADJUSTMENT, amount_fen=-amount,
             ref=f"{ref}:to", effective_on=today, bill_id=bill.id, memo=memo)
        allocated += amount
    return allocated


def apply_prepaid_in_range(session: Session, clock: Clock, first_id: int, last_id: int) -> int:
    """After bills are issued to the accounts with ids in [first_id, last_id]: allocate each one's
    prepaid balance to its owed bills (``apply_prepaid``, today in its district's zone); returns
    the fen allocated. One query finds the accounts holding unallocated credit, so the others cost
    nothing (the bill run calls this once per chunk). The caller commits."""
    holders = session.execute(
        sa.select(LedgerEntry.account_id, District.timezone)
        .join(ElectricityAccount, ElectricityAccount.id == LedgerEntry.account_id)
        .join(District, District.id == ElectricityAccount.district_id)
        .where(LedgerEntry.account_id.between(first_id, last_id), LedgerEntry.bill_id.is_(None))
        .group_by(LedgerEntry.account_id, District.timezone)
        .having(sa.func.sum(LedgerEntry.amount_fen) < 0)
        .order_by(LedgerEntry.account_id)).all()
    return sum(apply_prepaid(session, clock, account_id, local_today(clock, ZoneInfo(zone)))
               for account_id, zone in holders)

"""The prepaid balance: credit without a bill is allocated to owed bills, oldest first."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from portal.bills import service as bills
from portal.ledger import service as ledger
from portal.ledger.models import EntryKind, LedgerEntry
from tests import factories

TODAY = date(2026, 12, 3)


def test_a_top_up_pays_the_oldest_bills_first_and_the_rest_stays_prepaid(session, clock):
    acct = factories.account(session, clock)
    newer = factories.bill(session, clock, acct, period="2026-11", amounts=(6000,),
                           due=date(2026, 12, 25))
    older = factories.bill(session, clock, acct, period="2026-10", amounts=(7000,),
                           due=date(2026, 11, 25))
    bills.issue(session, clock, newer)
    bills.issue(session, clock, older)
    assert ledger.apply_prepaid(session, clock, acct.id, TODAY) == 0  # nothing prepaid
    ledger.post(session, clock, account_id=acct.id, kind=EntryKind.PAYMENT, amount_fen=-10000,
                ref="topup:1", effective_on=TODAY)
    assert ledger.apply_prepaid(session, clock, acct.id, TODAY) == 10000
    assert ledger.owed_by_bill(session, [older.id, newer.id]) == {older.id: 0, newer.id: 3000}
    assert ledger.prepaid_balance(session, acct.id) == 0
    assert [(b.id, owed) for b, owed in ledger.owed_bills(session, acct.id)] == [(newer.id, 3000)]
    assert ledger.owed_by_account(session, [acct.id]) == {acct.id: 3000}
    pairs = session.scalars(sa.select(LedgerEntry.amount_fen).where(
        LedgerEntry.kind == EntryKind.ADJUSTMENT)).all()
    assert sorted(pairs) == [-7000, -3000, 3000, 7000]
    assert ledger.apply_prepaid(session, clock, acct.id, TODAY) == 0


def _top_up(session, clock, account_id: int, fen: int, ref: str) -> None:
    ledger.post(session, clock, account_id=account_id, kind=EntryKind.PAYMENT, amount_fen=-fen,
                ref=ref, effective_on=TODAY)


def test_after_bills_are_issued_only_accounts_in_range_holding_credit_are_allocated(
        session, clock):
    holder, owing, outside = (factories.account(session, clock, f"99000000{n}",
                                                meter_no=f"99000000{n}") for n in (1, 2, 3))
    idle = factories.account(session, clock, "9900000004", meter_no="990000004")
    for acct in (holder, owing, outside):
        bill = factories.bill(session, clock, acct, period="2026-11", amounts=(5000,))
        bills.issue(session, clock, bill)  # nobody has credit yet: nothing allocated
    assert session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry)) == 3
    _top_up(session, clock, holder.id, 2000, "topup:holder")
    _top_up(session, clock, outside.id, 2000, "topup:outside")
    _top_up(session, clock, idle.id, 700, "topup:idle")  # credit, but no bill to pay
    first, last = sorted((holder.id, owing.id))
    assert ledger.apply_prepaid_in_range(session, clock, first, last) == 2000
    assert ledger.owed_by_account(session, [holder.id, owing.id, outside.id, idle.id]) == {
        holder.id: 3000, owing.id: 5000, outside.id: 3000, idle.id: -700}
    assert ledger.prepaid_balance(session, outside.id) == 2000  # not in the range: untouched
    assert ledger.apply_prepaid_in_range(session, clock, idle.id, idle.id) == 0
    count = session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry))
    assert ledger.apply_prepaid_in_range(session, clock, first, last) == 0  # nothing twice
    assert session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry)) == count
    dates = session.scalars(sa.select(LedgerEntry.effective_on).where(
        LedgerEntry.kind == EntryKind.ADJUSTMENT)).all()
    assert dates == [TODAY, TODAY]  # today in the district's zone (10:00 in Shanghai)

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
    assert ledger.apply_prepaid(session, clock, acct.id, TODAY) == 0  # nothing prepaid
    ledger.post(session, clock, account_id=acct.id, kind=EntryKind.PAYMENT, amount_fen=-10000,
                ref="topup:1", effective_on=TODAY)
    assert ledger.apply_prepaid(session, clock, acct.id, TODAY) == 0  # nothing owed yet
    newer = factories.bill(session, clock, acct, period="2026-11", amounts=(6000,),
                           due=date(2026, 12, 25))
    older = factories.bill(session, clock, acct, period="2026-10", amounts=(7000,),
                           due=date(2026, 11, 25))
    bills.issue(session, clock, newer)
    bills.issue(session, clock, older)
    assert ledger.apply_prepaid(session, clock, acct.id, TODAY) == 10000
    assert ledger.owed_by_bill(session, [older.id, newer.id]) == {older.id: 0, newer.id: 3000}
    assert ledger.prepaid_balance(session, acct.id) == 0
    assert [(b.id, owed) for b, owed in ledger.owed_bills(session, acct.id)] == [(newer.id, 3000)]
    assert ledger.owed_by_account(session, [acct.id]) == {acct.id: 3000}
    pairs = session.scalars(sa.select(LedgerEntry.amount_fen).where(
        LedgerEntry.kind == EntryKind.ADJUSTMENT)).all()
    assert sorted(pairs) == [-7000, -3000, 3000, 7000]
    assert ledger.apply_prepaid(session, clock, acct.id, TODAY) == 0

from datetime import date

import pytest
import sqlalchemy as sa

from portal.bills import service as bills
from portal.bills.models import Bill, BillStatus
from portal.bills.service import PaymentState
from portal.kernel.errors import Conflict
from portal.ledger import service as ledger
from portal.ledger.models import EntryKind, LedgerEntry
from tests import factories


@pytest.fixture
def issued(session, clock):
    account = factories.account(session, clock)
    bill = factories.bill(session, clock, account, amounts=(11719, 5329), due=date(2026, 12, 25))
    bills.issue(session, clock, bill)
    session.commit()
    return bill


def _pay(session, clock, bill, fen, ref):
    ledger.post(session, clock, account_id=bill.account_id, bill_id=bill.id,
                kind=EntryKind.PAYMENT, amount_fen=-fen, ref=ref,
                effective_on=date(2026, 12, 10))


def test_issue_charges_the_ledger_once(session, clock, issued) -> None:
    assert issued.status is BillStatus.ISSUED and issued.issued_at == clock.now()
    with pytest.raises(Conflict):
        bills.issue(session, clock, issued)
    session.rollback()
    charges = session.scalars(sa.select(LedgerEntry.amount_fen)
                              .where(LedgerEntry.kind == EntryKind.CHARGE)).all()
    assert charges == [17048]


@pytest.mark.parametrize(("paid", "today", "state"), [
    (0, date(2026, 12, 25), PaymentState.UNPAID),          # due date itself is not late
    (0, date(2026, 12, 26), PaymentState.OVERDUE),
    (5000, date(2026, 12, 20), PaymentState.PARTIALLY_PAID),
    (5000, date(2026, 12, 26), PaymentState.OVERDUE),
    (17048, date(2027, 3, 1), PaymentState.PAID),
    (20000, date(2026, 12, 1), PaymentState.PAID),
])
def test_state_derives_from_the_ledger(session, clock, issued, paid, today, state) -> None:
    if paid:
        _pay(session, clock, issued, paid, "p1")
    [summary] = bills.summaries(session, [issued], today)
    assert summary.state is state
    assert summary.owed_fen == 17048 - paid


def test_bill_in_review_is_not_charged(session, clock) -> None:
    account = factories.account(session, clock)
    bill = factories.bill(session, clock, account)
    from portal.bills.models import BILL_MACHINE
    BILL_MACHINE.move(session, Bill, bill.id, BillStatus.DRAFT, BillStatus.PENDING_REVIEW)
    session.commit()
    session.refresh(bill)
    [summary] = bills.summaries(session, [bill], date(2026, 12, 1))
    assert summary.state is PaymentState.IN_REVIEW
    assert ledger.owed_by_account(session, [account.id]) == {account.id: 0}


def test_overpayment_is_prepaid_balance(session, clock, issued) -> None:
    _pay(session, clock, issued, 17048, "p1")
    ledger.post(session, clock, account_id=issued.account_id, kind=EntryKind.PAYMENT,
                amount_fen=-1000, ref="topup", effective_on=date(2026, 12, 10))
    assert ledger.owed_by_account(session, [issued.account_id]) == {issued.account_id: -1000}


def test_the_next_bill_issued_consumes_the_prepaid_balance(session, clock, issued) -> None:
    """An overpayment of 10000 pays the next bill (8000) in full as it is issued and the one
    after (5000) in part; the ledger only grows, sums right, and nothing is allocated twice."""
    _pay(session, clock, issued, 17048, "p1")
    ledger.post(session, clock, account_id=issued.account_id, kind=EntryKind.PAYMENT,
                amount_fen=-10000, ref="overpaid", effective_on=date(2026, 12, 10))
    session.commit()
    account = issued.account
    before = session.execute(sa.select(LedgerEntry.id, LedgerEntry.amount_fen)
                             .order_by(LedgerEntry.id)).all()
    december = factories.bill(session, clock, account, "2026-12", (8000,), due=date(2027, 1, 25))
    bills.issue(session, clock, december)
    january = factories.bill(session, clock, account, "2027-01", (5000,), due=date(2027, 2, 25))
    bills.issue(session, clock, january)
    session.commit()
    states = bills.summaries(session, [december, january], date(2027, 1, 2))
    assert [(s.state, s.owed_fen) for s in states] == [
        (PaymentState.PAID, 0), (PaymentState.PARTIALLY_PAID, 3000)]
    assert ledger.prepaid_balance(session, account.id) == 0
    assert ledger.owed_by_account(session, [account.id]) == {account.id: 3000}
    after = session.execute(sa.select(LedgerEntry.id, LedgerEntry.amount_fen)
                            .order_by(LedgerEntry.id)).all()
    assert after[:len(before)] == before  # appended to, nothing rewritten
    assert sum(amount for _, amount in after) == 17048 + 8000 + 5000 - 17048 - 10000
    assert ledger.apply_prepaid(session, clock, account.id, date(2027, 1, 2)) == 0


def test_newest_version_wins_and_usage_is_oldest_first(session, clock) -> None:
    account = factories.account(session, clock)
    for period in ("2026-09", "2026-10", "2026-11"):
        bills.issue(session, clock, factories.bill(session, clock, account, period=period))
    corrected = factories.bill(session, clock, account, period="2026-10", amounts=(100,),
                               version=2)
    bills.issue(session, clock, corrected)
    session.commit()
    listed = bills.account_bills(session, account.id)
    assert [(b.period, b.version) for b in listed] == [("2026-11", 1), ("2026-10", 2),
                                                      ("2026-09", 1)]
    usage = bills.usage_history(session, account.id, months=2)
    assert [(p.period, p.total_fen) for p in usage] == [("2026-10", 100), ("2026-11", 17048)]


def test_demo_seed_bills_add_up(session, clock, demo) -> None:
    all_bills = session.scalars(sa.select(Bill)).all()
    assert len(all_bills) == 5 * 24
    for bill in all_bills:
        assert bill.total_fen == sum(line.amount_fen for line in bill.lines)
        assert bill.kwh == sum((line.kwh for line in bill.lines
                                if line.kind.value == "energy"), 0)


def test_latest_bill_per_account_in_one_query(session, clock) -> None:
    first = factories.account(session, clock)
    second = factories.account(session, clock, account_no="9900000002", meter_no="990000005678")
    factories.account(session, clock, account_no="9900000003", meter_no="990000009999")
    for period in ("2026-10", "2026-11"):
        factories.bill(session, clock, first, period=period)
    factories.bill(session, clock, second, period="2026-09")
    factories.bill(session, clock, second, period="2026-09", amounts=(1,), version=2)
    session.commit()
    latest = bills.latest_bills(session, [first.id, second.id])
    assert {k: (b.period, b.version) for k, b in latest.items()} == {
        first.id: ("2026-11", 1), second.id: ("2026-09", 2)}

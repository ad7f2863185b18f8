"""The embedded billing system: the shared contract on the portal's own tables (SQLite and
PostgreSQL), and what embedded mode adds: the ledger follows an adjusted bill."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing_adapter.local.postings import BillingPosting, BillingReversal
from billing_adapter.local.system import LocalBillingSystem
from portal.accounts.models import ElectricityAccount
from portal.bills import service as bills
from portal.bills.models import Bill
from portal.kernel.clock import FrozenClock
from portal.ledger import service as ledger
from portal.ledger.models import EntryKind
from portal.readings.models import Reading
from tests.billing_adapter.contract import (
    ACCOUNT,
    BillingContract,
    Harness,
    adjustment,
    posting,
    reading,
    rejected,
    seed_world,
)


class TestLocalBillingSystem(BillingContract):
    @pytest.fixture
    def billing(self, session: Session, clock: FrozenClock) -> Harness:
        def seed(build):  # type: ignore[no-untyped-def]
            result = build(session)
            session.commit()
            return result
        return Harness(LocalBillingSystem(session, clock), seed)


@pytest.fixture
def world(session: Session, clock: FrozenClock) -> LocalBillingSystem:
    seed_world(session, clock)
    session.commit()
    return LocalBillingSystem(session, clock)


def _october(session: Session, version: int) -> Bill:
    return session.scalars(sa.select(Bill).where(Bill.period == "2026-10",
                                                 Bill.version == version)).one()


def test_an_adjusted_bill_owes_what_the_customer_sees(session, clock, world) -> None:
    account = session.scalars(sa.select(ElectricityAccount)
                              .where(ElectricityAccount.account_no == ACCOUNT)).one()
    before = ledger.owed_by_account(session, [account.id])[account.id]
    v1 = _october(session, 1)
    ledger.post(session, clock, account_id=account.id, bill_id=v1.id, kind=EntryKind.PAYMENT,
                amount_fen=-5000, ref="payment:part", effective_on=clock.now().date())
    world.apply_adjustment(adjustment(amount_fen=-1000))
    world.apply_adjustment(adjustment(amount_fen=-1000))  # once
    session.commit()
    v2 = _october(session, 2)
    owed = ledger.owed_by_bill(session, [v1.id, v2.id])
    assert owed == {v1.id: 0, v2.id: 17048 - 5000 - 1000}
    assert ledger.owed_by_account(session, [account.id])[account.id] == before - 5000 - 1000
    [summary] = bills.summaries(session, [v2], clock.now().date())
    assert summary.state is bills.PaymentState.PARTIALLY_PAID


def test_adjusting_a_paid_bill_leaves_a_credit(session, clock, world) -> None:
    v1 = _october(session, 1)
    ledger.post(session, clock, account_id=v1.account_id, bill_id=v1.id,
                kind=EntryKind.PAYMENT, amount_fen=-17048, ref="payment:all",
                effective_on=clock.now().date())
    adjusted = world.apply_adjustment(adjustment(amount_fen=-300))
    v2 = _october(session, 2)
    assert adjusted.total_fen == 16748
    assert ledger.owed_by_bill(session, [v1.id, v2.id]) == {v1.id: 0, v2.id: -300}


def test_a_bill_under_review_cannot_be_adjusted(session, clock, world) -> None:
    from tests import factories

    account = session.get(ElectricityAccount, _october(session, 1).account_id)
    factories.bill(session, clock, account, "2026-12")  # a draft, never issued
    assert rejected(lambda: world.apply_adjustment(adjustment(period="2026-12"))
                    ) == "bill_not_issued"


def test_postings_and_readings_are_rows_of_the_portal(session, clock, world) -> None:
    world.post_payment(posting())
    world.reverse_payment(posting().order_no, "refund RF1", reversal_no="RF1", amount_fen=5000)
    world.submit_reading(reading("1500"))
    session.commit()
    row = session.scalars(sa.select(BillingPosting)).one()
    assert (row.amount_fen, row.bill_periods) == (17048, "2026-10")
    reversal = session.scalars(sa.select(BillingReversal)).one()
    assert (reversal.posting_id, reversal.reversal_no, reversal.amount_fen, reversal.reason,
            reversal.created_at) == (row.id, "RF1", 5000, "refund RF1", clock.now())
    assert session.scalar(sa.select(sa.func.count()).select_from(Reading)) == 2


def test_a_rejected_call_writes_nothing(session, clock, world) -> None:
    from billing_adapter.base import BillingRejected

    with pytest.raises(BillingRejected):
        world.post_payment(posting(amount_fen=0))
    with pytest.raises(BillingRejected):
        world.submit_reading(reading("10"))
    session.commit()
    assert session.scalar(sa.select(sa.func.count()).select_from(BillingPosting)) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(Reading)) == 1


# SQLite serialises writers before they read: these races need PostgreSQL.
@pytest.mark.parametrize("database_url", [pytest.param("pg", marks=pytest.mark.pg)],
                         indirect=True)
def test_two_adjustments_at_once_queue_on_the_account(database_url, app, session, clock,
                                                     world) -> None:
    """Both arrive at once: the account's lock queues the second, which then reads version 2
    and makes version 3 (never a second version 2, never a lost adjustment)."""
    from sqlalchemy.orm import sessionmaker

    from portal.extensions import db
    from tests.helpers import run_concurrently

    numbers = iter(["ADJ-A", "ADJ-B"])
    make_session = sessionmaker(db.engine)

    def adjust() -> None:
        with make_session() as own:
            LocalBillingSystem(own, clock).apply_adjustment(adjustment(next(numbers), -100))
            own.commit()

    run_concurrently(adjust, 2)
    bills = session.scalars(sa.select(Bill).where(Bill.period == "2026-10")
                            .order_by(Bill.version)).all()
    assert [b.version for b in bills] == [1, 2, 3]
    assert bills[2].total_fen == bills[0].total_fen - 200


# SQLite serialises writers before they read: these races need PostgreSQL.
@pytest.mark.parametrize("database_url", [pytest.param("pg", marks=pytest.mark.pg)],
                         indirect=True)
def test_two_partial_reversals_racing_never_reverse_more_than_the_posting(
        database_url, app, session, clock, world, monkeypatch) -> None:
    """Both have read the posting before either writes: the posting row's lock makes the second
    see the first's reversal, so 10000 + 10000 of a 17048 posting lets exactly one through."""
    from threading import Barrier

    from sqlalchemy.orm import sessionmaker

    from billing_adapter.base import BillingRejected
    from portal.extensions import db
    from tests.helpers import run_concurrently

    world.post_payment(posting())
    session.commit()
    both_read = Barrier(2)
    atomic = LocalBillingSystem._atomic

    def after_both_read(self):  # type: ignore[no-untyped-def]
        both_read.wait(timeout=10)
        return atomic(self)

    monkeypatch.setattr(LocalBillingSystem, "_atomic", after_both_read)
    numbers, outcomes = iter(["RF-A", "RF-B"]), []
    make_session = sessionmaker(db.engine)

    def reverse() -> None:
        number = next(numbers)
        with make_session() as own:
            try:
                LocalBillingSystem(own, clock).reverse_payment(
                    posting().order_no, f"refund {number}", reversal_no=number, amount_fen=10000)
                own.commit()
                outcomes.append("reversed")
            except BillingRejected as exc:
                outcomes.append(exc.code)

    run_concurrently(reverse, 2)
    assert sorted(outcomes) == ["reversal_too_large", "reversed"]
    session.expire_all()
    assert session.scalar(sa.select(sa.func.sum(BillingReversal.amount_fen))) == 10000


def test_a_repeated_reading_key_is_the_same_reading(session, clock, world) -> None:
    """docs/billing-api.md: a repeated reading key is the same reading. The portal's readings
    service relies on it: in embedded mode it hands over the row it has already written."""
    first = world.submit_reading(reading("1500", source="customer"))
    again = world.submit_reading(reading("1500", source="customer"))
    session.commit()
    assert again.reading_ref == first.reading_ref
    assert session.scalar(sa.select(sa.func.count()).select_from(Reading)) == 2  # seed + one

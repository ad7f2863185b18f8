import pytest
import sqlalchemy as sa
from flask import Flask

from portal.bills.models import BILL_MACHINE, Bill, BillStatus
from portal.extensions import db
from portal.kernel.statemachine import IllegalTransition, StateMachine
from portal.readings.models import READING_MACHINE, ReadingStatus
from tests import factories
from tests.helpers import run_concurrently


def test_guarded_move_happens_once(session, clock) -> None:
    bill = factories.bill(session, clock, factories.account(session, clock))
    session.commit()
    assert BILL_MACHINE.move(session, Bill, bill.id, BillStatus.DRAFT, BillStatus.PENDING_REVIEW)
    # the same event again: the row is no longer in the source state, nothing changes
    assert not BILL_MACHINE.move(session, Bill, bill.id, BillStatus.DRAFT,
                                 BillStatus.PENDING_REVIEW)
    session.commit()
    assert session.scalar(sa.select(Bill.status).where(Bill.id == bill.id)) \
        is BillStatus.PENDING_REVIEW


def test_illegal_move_raises_before_touching_the_row(session, clock) -> None:
    bill = factories.bill(session, clock, factories.account(session, clock))
    session.commit()
    with pytest.raises(IllegalTransition, match="issued -> draft"):
        BILL_MACHINE.move(session, Bill, bill.id, BillStatus.ISSUED, BillStatus.DRAFT)
    assert session.scalar(sa.select(Bill.status).where(Bill.id == bill.id)) is BillStatus.DRAFT


def test_concurrent_moves_one_winner(app: Flask, clock) -> None:
    with app.app_context():
        bill = factories.bill(db.session, clock, factories.account(db.session, clock))
        db.session.commit()
        bill_id = bill.id
    wins: list[bool] = []

    def worker() -> None:
        with app.app_context():
            won = BILL_MACHINE.move(db.session, Bill, bill_id, BillStatus.DRAFT,
                                    BillStatus.ISSUED)
            db.session.commit()
            wins.append(won)
            db.session.remove()

    run_concurrently(worker, 8)
    assert sorted(wins) == [False] * 7 + [True]


def test_machine_tables_are_checked() -> None:
    assert READING_MACHINE.can(ReadingStatus.FLAGGED, ReadingStatus.REJECTED)
    assert not READING_MACHINE.can(ReadingStatus.REJECTED, ReadingStatus.ACCEPTED)
    assert READING_MACHINE.is_final(ReadingStatus.ACCEPTED)
    with pytest.raises(ValueError, match="outside"):
        StateMachine("bad", BillStatus, {BillStatus.DRAFT: {ReadingStatus.ACCEPTED}},
                     initial=BillStatus.DRAFT)


def test_mermaid_lists_every_move() -> None:
    text = BILL_MACHINE.mermaid()
    assert text.splitlines()[:2] == ["stateDiagram-v2", "    [*] --> draft"]
    assert "    draft --> pending_review" in text
    assert "    pending_review --> issued" in text
    assert "    issued --> [*]" in text

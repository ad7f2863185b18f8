"""Held amounts from every registered source are summed per bill, set-based."""

import sqlalchemy as sa

from portal.bills import holds
from portal.bills.models import Bill
from tests import factories


def test_no_source_holds_nothing(session, clock, monkeypatch) -> None:
    monkeypatch.setattr(holds, "_sources", {})
    factories.bill(session, clock, factories.account(session, clock))
    held = holds.held_by_bill()
    assert session.execute(sa.select(held.c.bill_id, held.c.held_fen)).all() == []


def test_sources_are_summed_per_bill(session, clock, monkeypatch) -> None:
    monkeypatch.setattr(holds, "_sources", {})
    account = factories.account(session, clock)
    first = factories.bill(session, clock, account, period="2026-10")
    second = factories.bill(session, clock, account, period="2026-11")

    @holds.register("dispute")
    def disputed() -> sa.Select:
        return sa.select(Bill.id.label("bill_id"), sa.literal(500).label("held_fen")).where(
            Bill.id == first.id)

    @holds.register("plan")
    def planned() -> sa.Select:
        return sa.select(Bill.id.label("bill_id"), Bill.total_fen.label("held_fen"))

    held = holds.held_by_bill()
    rows = dict(session.execute(sa.select(held.c.bill_id, held.c.held_fen)).all())
    assert rows == {first.id: first.total_fen + 500, second.id: second.total_fen}
    assert set(holds.sources()) == {"dispute", "plan"}

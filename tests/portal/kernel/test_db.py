from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from portal.kernel.db import (
    ALIVE_WINDOW_S,
    NewRows,
    insert_new,
    insert_new_together,
    move_and_insert,
    ping_when_idle,
    statements_commit_alone,
)
from portal.kernel.outbox import OutboxMessage, OutboxStatus
from portal.ledger.models import EntryKind, LedgerEntry
from tests import factories


def _message(key: str, now: datetime, **extra: object) -> dict[str, object]:
    return {"topic": "t", "payload": {"key": key, "n": [1, "二"]}, "dedup_key": key,
            "created_at": now, "available_at": now, **extra}


def test_insert_new_writes_new_rows_skips_existing_keys_and_fills_plain_defaults(
        session, clock) -> None:
    now = clock.now()
    [first] = insert_new(session, OutboxMessage, [_message("a", now)], unique=["dedup_key"])
    ids = insert_new(session, OutboxMessage, [_message("a", now), _message("b", now),
                                              _message("c", now)], unique=["dedup_key"])
    session.commit()
    assert len(ids) == 2 and first not in ids
    rows = session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert [(r.dedup_key, r.status, r.attempts, r.payload["n"], r.created_at) for r in rows] == [
        (key, OutboxStatus.PENDING, 0, [1, "二"], now) for key in "abc"]
    assert insert_new(session, OutboxMessage, [], unique=["dedup_key"]) == []


def test_insert_new_refuses_rows_with_different_columns(session, clock) -> None:
    now = clock.now()
    with pytest.raises(ValueError, match="same columns"):
        insert_new(session, OutboxMessage, [_message("a", now), _message("b", now, attempts=1)],
                   unique=["dedup_key"])


class _OtherBase(DeclarativeBase):
    pass


class _Stamped(_OtherBase):
    __tablename__ = "stamped"
    id: Mapped[int] = mapped_column(primary_key=True)
    stamp: Mapped[str] = mapped_column(default=lambda: "computed")


def test_insert_new_refuses_to_leave_out_a_computed_default(session) -> None:
    with pytest.raises(ValueError, match=r"stamped\.stamp"):
        insert_new(session, _Stamped, [{"id": 1}], unique=["id"])


def _entry(ref: str, amount: int, now: datetime) -> dict[str, object]:
    return {"account_id": None, "bill_id": None, "kind": EntryKind.PAYMENT, "amount_fen": amount,
            "ref": ref, "effective_on": now.date(), "memo": "", "created_at": now}


def test_insert_new_together_answers_each_part_its_own_new_ids(session, clock) -> None:
    now = clock.now()
    account_id = factories.account(session, clock).id
    [[seen]] = insert_new_together(session, [NewRows(OutboxMessage, [_message("a", now)],
                                                     ["dedup_key"])])
    entries = [{**_entry(f"r{n}", -100 * n, now), "account_id": account_id} for n in (1, 2)]
    messages, none, ledger_ids = insert_new_together(session, [
        NewRows(OutboxMessage, [_message("a", now), _message("b", now)], ["dedup_key"]),
        NewRows(_Stamped, [], ["id"]),  # no rows: no statement (its table does not even exist)
        NewRows(LedgerEntry, entries, ["ref"]),
    ])
    session.commit()
    assert none == [] and len(messages) == 1 and seen not in messages and len(ledger_ids) == 2
    assert session.scalar(sa.select(OutboxMessage.dedup_key).where(
        OutboxMessage.id == messages[0])) == "b"
    assert sorted(session.scalars(sa.select(LedgerEntry.amount_fen).where(
        LedgerEntry.id.in_(ledger_ids)))) == [-200, -100]
    # the same rows again: nothing new in any part
    assert insert_new_together(session, [
        NewRows(OutboxMessage, [_message("b", now)], ["dedup_key"]),
        NewRows(LedgerEntry, entries, ["ref"])]) == [[], []]


def test_insert_new_together_refuses_a_table_twice(session, clock) -> None:
    now = clock.now()
    with pytest.raises(ValueError, match="at most once"):
        insert_new_together(session, [NewRows(OutboxMessage, [_message("a", now)], ["dedup_key"]),
                                      NewRows(OutboxMessage, [_message("b", now)], ["dedup_key"])])
    assert session.scalar(sa.select(sa.func.count(OutboxMessage.id))) == 0


class _Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _backend(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sa.text("SELECT pg_backend_pid()")))


def _kill(url: str, pid: int) -> None:
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        assert conn.scalar(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


@pytest.mark.pg
def test_a_connection_idle_past_the_window_is_pinged_and_a_dead_one_replaced(
        pg_schema_url) -> None:
    engine, monotonic = sa.create_engine(pg_schema_url, pool_size=1), _Monotonic()
    ping_when_idle(engine, monotonic=monotonic)
    try:
        first = _backend(engine)
        _kill(pg_schema_url, first)  # the server went away while the connection was pooled
        monotonic.now += ALIVE_WINDOW_S + 1
        second = _backend(engine)  # no error: the ping found it dead, a new one answers
        assert second != first
    finally:
        engine.dispose()


@pytest.mark.pg
def test_a_connection_alive_a_moment_ago_is_not_pinged(pg_schema_url) -> None:
    engine, monotonic = sa.create_engine(pg_schema_url, pool_size=1), _Monotonic()
    ping_when_idle(engine, monotonic=monotonic)
    try:
        first = _backend(engine)
        _kill(pg_schema_url, first)
        monotonic.now += ALIVE_WINDOW_S / 2
        with pytest.raises(sa.exc.OperationalError):  # used unchecked: it fails once ...
            _backend(engine)
        assert _backend(engine) != first  # ... and the pool reconnects
    finally:
        engine.dispose()


_outbox = OutboxMessage.__table__
# a guarded move: a message sent once (its status from pending), returning its id
_SEND = (sa.update(_outbox)
         .where(_outbox.c.dedup_key == sa.bindparam("b_key"),
                _outbox.c.status == OutboxStatus.PENDING)
         .values(status=OutboxStatus.SENT).returning(_outbox.c.id))


def _count(session, model) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(model)))


def test_move_and_insert_writes_the_rows_only_when_the_row_moves(session, clock) -> None:
    now = clock.now()
    account_id = factories.account(session, clock).id
    insert_new(session, OutboxMessage, [_message("m", now)], unique=["dedup_key"])
    session.commit()

    def send(ref: str, *messages: str) -> tuple[bool, list[list[int]]]:
        with statements_commit_alone(session) as connection:
            return move_and_insert(connection, _SEND, {"b_key": "m"}, [
                NewRows(LedgerEntry, [{**_entry(ref, -100, now), "account_id": account_id}],
                        ["ref"]),
                NewRows(OutboxMessage, [_message(key, now) for key in messages],
                        ["dedup_key"])])

    moved, (entries, messages) = send("r1", "m", "n")  # "m" exists: skipped
    session.commit()
    assert moved and len(entries) == 1 and len(messages) == 1
    assert session.scalar(sa.select(OutboxMessage.status).where(
        OutboxMessage.dedup_key == "m")) == OutboxStatus.SENT
    moved, written = send("r2", "o")  # already sent: nothing moves, nothing is written
    session.commit()
    assert (moved, written) == (False, [[], []])
    assert _count(session, LedgerEntry) == 1 and _count(session, OutboxMessage) == 2


@pytest.mark.parametrize("database_url", [pytest.param("pg", marks=pytest.mark.pg)],
                         indirect=True)  # SQLite runs them in the session's transaction
def test_move_and_insert_is_all_or_nothing_on_a_connection_committing_alone(
        session, clock) -> None:
    now = clock.now()
    account_id = factories.account(session, clock).id
    insert_new(session, OutboxMessage, [_message("m", now)], unique=["dedup_key"])
    session.commit()
    wrong_sign = {**_entry("r1", +100, now), "account_id": account_id}  # a payment is < 0
    with pytest.raises(sa.exc.IntegrityError), statements_commit_alone(session) as connection:
        move_and_insert(connection, _SEND, {"b_key": "m"}, [
            NewRows(OutboxMessage, [_message("n", now)], ["dedup_key"]),
            NewRows(LedgerEntry, [wrong_sign], ["ref"])])
    session.rollback()
    assert session.scalar(sa.select(OutboxMessage.status).where(
        OutboxMessage.dedup_key == "m")) == OutboxStatus.PENDING
    assert _count(session, OutboxMessage) == 1 and _count(session, LedgerEntry) == 0
    with statements_commit_alone(session) as connection:  # committed by itself
        moved, _ = move_and_insert(connection, _SEND, {"b_key": "m"}, [
            NewRows(OutboxMessage, [_message("n", now)], ["dedup_key"])])
    session.rollback()  # the session's transaction has nothing of it to lose
    assert moved and _count(session, OutboxMessage) == 2

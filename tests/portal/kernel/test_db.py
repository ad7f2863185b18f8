from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from portal.kernel.db import insert_new
from portal.kernel.outbox import OutboxMessage, OutboxStatus


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

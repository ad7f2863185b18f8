"""The declarative base every model uses, with a constraint naming convention and UTC timestamps.

Flask-free: payments, billing and notification code import this, never Flask-SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.sql.compiler import IdentifierPreparer
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone of its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass a timezone-aware UTC value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


def str_enum(enum_cls: type[enum.Enum], name: str) -> sa.Enum:
    """A portable enum column: VARCHAR plus a named CHECK of the allowed values."""
    return sa.Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=max(len(m.value) for m in enum_cls),
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class IdMixin:
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True)


@sa.event.listens_for(sa.engine.Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """Every SQLite file we open (the portal's and the embedded broker's): enforce foreign keys,
    wait for locks instead of failing, and use WAL so web, worker and beat can share it."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


def use_real_sqlite_transactions(engine: sa.Engine) -> None:
    """Let SQLAlchemy, not pysqlite, begin transactions on the portal's SQLite engine.

    pysqlite defers BEGIN to the first write, which breaks SAVEPOINT (a rolled-back savepoint's
    rows could still be committed). SQLAlchemy's documented recipe turns that off; we begin with
    ``BEGIN IMMEDIATE`` (as Rails does for SQLite) so a transaction that reads and then writes
    waits for the lock instead of failing with "database is locked" when another process wrote
    in between. The embedded broker's engine belongs to kombu and is left alone.
    """
    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin_immediate(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


ALIVE_WINDOW_S = 0.5  # HikariCP's aliveBypassWindowMs


def ping_when_idle(engine: sa.Engine, window_s: float = ALIVE_WINDOW_S,
                   monotonic: Callable[[], float] = time.monotonic) -> None:
    """Pessimistic disconnect handling that costs no round trip on a busy pool: a connection
    is pinged on checkout only when it last proved alive (was opened, or came back to the
    pool after use) more than ``window_s`` ago, as HikariCP does. ``pool_pre_ping`` pings on
    every checkout: one more round trip per request, a tenth of a payment notification's
    cost. A dead connection found is replaced and the pool's older connections dropped
    (``InvalidatePoolError``, as ``pool_pre_ping`` does); one that died within the window
    fails its statement once (the request answers 500; a channel retries) and SQLAlchemy
    then drops the pool's connections."""

    @sa.event.listens_for(engine, "connect")
    @sa.event.listens_for(engine, "checkin")
    def _alive(dbapi_connection: Any, record: Any) -> None:
        record.info["alive_at"] = monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        alive_at = record.info.get("alive_at")
        if alive_at is not None and monotonic() - alive_at <= window_s:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise sa.exc.InvalidatePoolError(str(exc)) from exc
            raise


@dataclass(frozen=True)
class NewRows:
    """Rows to INSERT into ``model``'s table unless their ``unique`` columns match a row:
    column name -> value, the same columns in each (a scalar ``default=`` fills a column left
    out). Built by the code that owns the table; written by ``insert_new_together``."""

    model: type[Base]
    rows: Sequence[Mapping[str, Any]]
    unique: Sequence[str]


def insert_new(session: Session, model: type[Base], rows: Sequence[Mapping[str, Any]], *,
               unique: Sequence[str]) -> list[int]:
    """INSERT ``rows`` into one table skipping those whose ``unique`` columns match an existing
    row (see ``insert_new_together``); the ids of the rows written."""
    return insert_new_together(session, [NewRows(model, rows, unique)])[0]


def insert_new_together(session: Session, parts: Sequence[NewRows]) -> list[list[int]]:
    """INSERT each part's rows (``ON CONFLICT (unique) DO NOTHING``), on the session's
    connection and in its transaction; for each part, the ids of the rows written.

    A concurrent insert of the same key waits for the other transaction and is skipped if it
    commits. Core, not ORM: it runs on hot paths where the ORM's bookkeeping for an INSERT
    costs more than the INSERT. Each table at most once.
    """
    shapes, params = _shapes(parts)
    return _insert_each(session.connection(), shapes, params, len(parts))


def move_and_insert(connection: sa.Connection, update: sa.Update, update_params: Mapping[str, Any],
                    parts: Sequence[NewRows]) -> tuple[bool, list[list[int]]]:
    """Run ``update``, a guarded ``UPDATE ... RETURNING id`` that moves at most one row (see
    ``StateMachine.matching``), and only if it moved the row INSERT ``parts`` as
    ``insert_new_together`` does: (moved, the ids written per part).

    On PostgreSQL this is ONE statement (the UPDATE and each INSERT data-modifying CTEs, an
    INSERT's rows selected from the UPDATE's), so it is atomic even on a connection that
    commits each statement by itself (``statements_commit_alone``): a payment notification
    costs no BEGIN and COMMIT round trips. SQLite, which has no data-modifying CTEs, takes a
    statement each, in the connection's transaction.
    """
    shapes, params = _shapes(parts)
    params.update(update_params)
    if connection.dialect.name != "postgresql":
        if connection.execute(update, params).first() is None:
            return False, [[] for _ in parts]
        return True, _insert_each(connection, shapes, params, len(parts))
    written: list[list[int]] = [[] for _ in parts]
    moved = False
    for k, id_ in connection.execute(_move_and_insert_statement(
            connection.dialect, update, tuple(shapes)), params):
        if k < 0:
            moved = True
        else:
            written[k].append(id_)
    return moved, written


@contextlib.contextmanager
def statements_commit_alone(session: Session) -> Iterator[sa.Connection]:
    """A connection on which each statement commits by itself, for work that is one atomic
    statement (``move_and_insert``): on PostgreSQL a pooled connection in autocommit (no
    BEGIN, no COMMIT: two round trips fewer), returned to the pool after the block. On
    SQLite, whose transactions here always begin with BEGIN IMMEDIATE, the session's own
    connection: the statements commit with the session. On PostgreSQL it is another
    transaction than the session's: use it before the session writes, or it may wait for the
    session's own row locks."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, sa.Engine) else bind.engine
    if engine.dialect.name != "postgresql":
        yield session.connection()
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        yield connection


def _insert_each(connection: sa.Connection, shapes: Sequence[tuple[int, _Shape]],
                 params: Mapping[str, Any], count: int) -> list[list[int]]:
    """One INSERT statement per part with rows; the ids written, for each of ``count`` parts."""
    written: list[list[int]] = [[] for _ in range(count)]
    preparer = connection.dialect.identifier_preparer
    for k, shape in shapes:
        written[k] = list(connection.execute(
            _insert_new_statement(preparer, k, shape), params).scalars())
    return written


def _shapes(parts: Sequence[NewRows]) -> tuple[list[tuple[int, _Shape]], dict[str, Any]]:
    """(part number, shape) of each part with rows, and every row's bind parameter values."""
    if len({part.model for part in parts}) != len(parts):
        raise ValueError("insert_new_together: each table at most once")
    shapes: list[tuple[int, _Shape]] = []
    params: dict[str, Any] = {}
    for k, part in enumerate(parts):
        if not part.rows:
            continue
        table = cast(sa.Table, part.model.__table__)
        names = tuple(part.rows[0])
        defaults = _scalar_defaults(table, names)
        for n, row in enumerate(part.rows):
            if len(row) != len(names) or any(name not in row for name in names):
                raise ValueError("insert_new: every row must have the same columns")
            params.update({f"p{k}_{name}_{n}": row[name] for name in names})
            params.update({f"p{k}_{name}_{n}": value for name, value in defaults})
        shapes.append((k, (table, names + tuple(name for name, _value in defaults),
                           tuple(part.unique), len(part.rows))))
    return shapes, params


# (table, columns, unique columns, row count) of one part
_Shape = tuple[sa.Table, tuple[str, ...], tuple[str, ...], int]


@functools.lru_cache(maxsize=256)
def _scalar_defaults(table: sa.Table, names: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """(column, default) for each column of ``table`` not in ``names`` with a ``default=``;
    found once per table and columns given."""
    defaults = []
    for column in table.columns:
        if column.key in names or column.default is None:
            continue
        if not column.default.is_scalar:
            raise ValueError(f"insert_new: give {table.name}.{column.key} (its default is "
                             "not a plain value)")
        defaults.append((column.key, column.default.arg))  # type: ignore[attr-defined]
    return tuple(defaults)


def _insert_sql(preparer: IdentifierPreparer, shape: _Shape, rows: str) -> str:
    """``INSERT INTO <table> (<columns>) <rows> ON CONFLICT (...) DO NOTHING RETURNING id``:
    identifiers from the table metadata, quoted by the dialect; ``rows`` (``VALUES ...`` or a
    ``SELECT``) holds every value as a bind parameter ``:p<k>_<column>_<n>``."""
    table, names, unique, _count = shape
    columns = ", ".join(preparer.format_column(table.c[name]) for name in names)
    conflict = ", ".join(preparer.format_column(table.c[name]) for name in unique)
    return (f"INSERT INTO {preparer.format_table(table)} ({columns}) {rows} "
            f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {preparer.format_column(table.c.id)}")


def _binds(k: int, shape: _Shape) -> list[sa.BindParameter[Any]]:
    table, names, _unique, count = shape
    return [sa.bindparam(f"p{k}_{name}_{n}", type_=table.c[name].type)
            for n in range(count) for name in names]


# ``postgresql.insert(...).on_conflict_do_nothing()`` (and SQLite's) have no cache key in
# SQLAlchemy 2.0, so every execution compiled them again (~0.5 ms each, several per payment
# notification); a ``text()`` with typed bind parameters is compiled once and cached, and both
# databases take the same single-table SQL.

@functools.lru_cache(maxsize=256)
def _insert_new_statement(preparer: IdentifierPreparer, k: int,
                          shape: _Shape) -> sa.TextualSelect:
    """One part's INSERT as a typed textual statement, built once per shape."""
    _table, names, _unique, count = shape
    values = "VALUES " + ", ".join(
        "(" + ", ".join(f":p{k}_{name}_{n}" for name in names) + ")" for n in range(count))
    return (sa.text(_insert_sql(preparer, shape, values)).bindparams(*_binds(k, shape))
            .columns(shape[0].c.id))


@functools.lru_cache(maxsize=256)
def _move_and_insert_statement(dialect: sa.Dialect, update: sa.Update,
                               shapes: tuple[tuple[int, _Shape], ...]) -> sa.CompoundSelect[Any]:
    """PostgreSQL: ``WITH moved AS (UPDATE ...), i<k> AS (INSERT ... SELECT <row> FROM moved
    ...) SELECT -1, moved.id UNION ALL SELECT k, id FROM i<k> ...``, built once per shape:
    each row a SELECT from ``moved`` (at most one row), so nothing is inserted unless the
    UPDATE moved its row; every CTE runs once whether or not its rows are read. Each value
    is cast to its column's type: a bind parameter in a SELECT list has no type of its own."""
    preparer, types = dialect.identifier_preparer, dialect.type_compiler_instance
    moved = update.cte("moved")
    selects: list[sa.Select[Any]] = [
        sa.select(sa.literal_column("-1", sa.Integer).label("part"), moved.c.id.label("id"))]
    for k, shape in shapes:
        table, names, _unique, count = shape
        row = ", ".join(f"CAST(:p{k}_{name}_{{n}} AS {types.process(table.c[name].type)})"
                        for name in names)
        rows = " UNION ALL ".join(f"SELECT {row.format(n=n)} FROM moved"  # noqa: S608
                                  for n in range(count))
        insert = (sa.text(_insert_sql(preparer, shape, rows)).bindparams(*_binds(k, shape))
                  .columns(table.c.id).cte(f"i{k}"))
        selects.append(sa.select(sa.literal_column(str(k), sa.Integer), insert.c.id))
    return sa.union_all(*selects)

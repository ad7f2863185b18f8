"""The declarative base every model uses, with a constraint naming convention and UTC timestamps.

Flask-free: payments, billing and notification code import this, never Flask-SQLAlchemy.
"""

from __future__ import annotations

import enum
import functools
import sqlite3
from collections.abc import Mapping, Sequence
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


def insert_new(session: Session, model: type[Base], rows: Sequence[Mapping[str, Any]], *,
               unique: Sequence[str]) -> list[int]:
    """INSERT ``rows`` (column name -> value, the same columns in each; a scalar ``default=``
    fills a column left out) in one statement, skipping each row whose ``unique`` columns match
    an existing row (``ON CONFLICT (...) DO NOTHING``, PostgreSQL and SQLite); the ids of the
    rows written. A concurrent insert of the same key waits for the other transaction and is
    skipped if it commits. Core, not ORM, on the session's connection (in its transaction):
    it runs on hot paths (every payment notification) where the ORM's bookkeeping for an
    INSERT costs more than the INSERT.
    """
    if not rows:
        return []
    table = cast(sa.Table, model.__table__)
    names = tuple(rows[0])
    defaults = _scalar_defaults(table, names)
    params: dict[str, Any] = {}
    for n, row in enumerate(rows):
        if len(row) != len(names) or any(name not in row for name in names):
            raise ValueError("insert_new: every row must have the same columns")
        params.update({f"{name}_{n}": row[name] for name in names})
        params.update({f"{name}_{n}": value for name, value in defaults})
    connection = session.connection()
    stmt = _insert_new_statement(connection.dialect.identifier_preparer, table,
                                 names + tuple(name for name, _value in defaults),
                                 tuple(unique), len(rows))
    return list(connection.execute(stmt, params).scalars())


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


@functools.lru_cache(maxsize=256)
def _insert_new_statement(preparer: IdentifierPreparer, table: sa.Table, names: tuple[str, ...],
                          unique: tuple[str, ...], count: int) -> sa.TextualSelect:
    """The INSERT for ``insert_new`` as a typed textual statement, built once per shape.

    ``postgresql.insert(...).on_conflict_do_nothing()`` (and SQLite's) have no cache key in
    SQLAlchemy 2.0, so every execution compiled them again (~0.5 ms each, three per payment
    notification); a ``text()`` with typed bind parameters is compiled once and cached, and both
    databases take this same SQL.
    """
    columns = ", ".join(preparer.format_column(table.c[name]) for name in names)
    values = ", ".join(
        "(" + ", ".join(f":{name}_{n}" for name in names) + ")" for n in range(count))
    conflict = ", ".join(preparer.format_column(table.c[name]) for name in unique)
    # identifiers from the table metadata, quoted by the dialect; every value is a bind parameter
    sql = (f"INSERT INTO {preparer.format_table(table)} ({columns}) VALUES {values} "  # noqa: S608
           f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {preparer.format_column(table.c.id)}")
    binds = [sa.bindparam(f"{name}_{n}", type_=table.c[name].type)
             for n in range(count) for name in names]
    return sa.text(sql).bindparams(*binds).columns(table.c.id)

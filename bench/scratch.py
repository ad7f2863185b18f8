"""A migrated scratch schema on PostgreSQL for the benchmarks, dropped afterwards.

    with scratch_schema("bench_bill_run") as (schema, url, engine):
        ...

The database is ``PG_URL``: ``DIANFEI_TEST_PG_URL``, default the test database. A bench may pass
another ``base_url`` (``bench/notify_load.py`` passes ``DIANFEI_BENCH_PG_URL`` when it is set).
The schema is ``<prefix>_<8 hex digits>``; ``url`` is ``base_url`` with ``search_path`` set to
it and ``engine`` an engine on that URL. The schema is dropped (``CASCADE``) when the block
ends, also on an error or Ctrl-C, unless ``keep`` is true.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import sqlalchemy as sa

PG_URL = os.environ.get("DIANFEI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class Scratch(NamedTuple):
    schema: str
    url: str
    engine: sa.Engine


def migrate(url: str) -> None:
    """``flask db upgrade`` on ``url``, with test settings."""
    from flask_migrate import upgrade

    from portal.app import create_app
    from portal.extensions import db
    from portal.settings import Settings

    app = create_app(Settings(env="test", database_url=url, secret_key="x" * 40,
                              broker_url="memory://"))
    with app.app_context():
        upgrade()
        db.engine.dispose()


@contextmanager
def scratch_schema(prefix: str, base_url: str = PG_URL, *, keep: bool = False
                   ) -> Iterator[Scratch]:
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{base_url}{'&' if '?' in base_url else '?'}options=-csearch_path%3D{schema}"
    engine = sa.create_engine(url)
    try:
        migrate(url)
        yield Scratch(schema, url, engine)
    finally:
        engine.dispose()
        if not keep:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def own_tables(conn: sa.Connection) -> str:
    """The scratch schema's tables as a list for ``ANALYZE``/``VACUUM``: a database-wide one
    would wait behind, and then block, every other session's locks on a shared server."""
    tables = conn.scalars(sa.text(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))
    return ", ".join(f'"{table}"' for table in tables)

"""A real Celery worker delivers outbox messages: over the embedded SQLite broker (unit tier) and
over Redis (``redis`` tier). Tasks run in the app context and see the same database."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from celery.contrib.testing.worker import start_worker
from flask import Flask

from portal.app import create_app
from portal.celery_app import sqlite_broker_path
from portal.extensions import db
from portal.kernel import outbox
from portal.kernel.outbox import OutboxMessage, OutboxStatus
from portal.tasks import OUTBOX_HANDLERS_KEY, purge_broker_messages
from tests.conftest import REDIS_URL, _settings


def _worker_app(database_url: str, broker_url: str, clock) -> Flask:
    app = create_app(_settings(database_url, broker_url=broker_url), clock=clock)
    delivered: list[dict] = []
    app.extensions[OUTBOX_HANDLERS_KEY] = {"test.greeting": delivered.append}
    app.extensions["test.delivered"] = delivered
    return app


def _deliver_through_worker(app: Flask, clock) -> list[dict]:
    celery = app.extensions["celery"]
    with app.app_context():
        outbox.enqueue(db.session, clock, "test.greeting", {"to": "13800000001"}, "greet-1")
        db.session.commit()
    with start_worker(celery, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        celery.send_task("portal.tasks.dispatch_outbox")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with app.app_context():
                status = db.session.scalar(sa.select(OutboxMessage.status))
                db.session.remove()
            if status is OutboxStatus.SENT:
                break
            time.sleep(0.2)
    with app.app_context():
        db.engine.dispose()
    assert status is OutboxStatus.SENT
    return app.extensions["test.delivered"]


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    import shutil

    shutil.copy(sqlite_template, tmp_path / "db.sqlite")
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


def test_worker_over_embedded_sqlite_broker(sqlite_url: str, tmp_path: Path, clock) -> None:
    broker = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    app = _worker_app(sqlite_url, broker, clock)
    assert _deliver_through_worker(app, clock) == [{"to": "13800000001"}]
    # web, worker and beat share the broker file: it must be in WAL mode
    with sqlite3.connect(tmp_path / "broker.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.redis
def test_worker_over_redis(sqlite_url: str, clock) -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    app = _worker_app(sqlite_url, REDIS_URL, clock)
    assert _deliver_through_worker(app, clock) == [{"to": "13800000001"}]


@pytest.fixture
def broker_app(sqlite_url: str, tmp_path: Path, clock) -> Iterator[tuple[Flask, Path]]:
    broker = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    assert sqlite_broker_path(broker) == tmp_path / "broker.sqlite"
    yield create_app(_settings(sqlite_url, broker_url=broker), clock=clock), tmp_path


def test_purge_deletes_only_old_consumed_messages(broker_app, clock) -> None:
    app, tmp_path = broker_app
    celery = app.extensions["celery"]
    with celery.connection_for_write() as conn:  # let kombu create its tables
        queue = conn.SimpleQueue("probe")
        queue.put({"x": 1})
        queue.close()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'broker.sqlite'}")
    with engine.begin() as conn:
        queue_id = conn.execute(sa.text("SELECT id FROM kombu_queue")).scalar()
        conn.execute(sa.text(
            "INSERT INTO kombu_message (visible, timestamp, payload, version, queue_id) VALUES "
            "(0, '2020-01-01 00:00:00', 'old', 1, :q), (1, '2020-01-01 00:00:00', 'waiting', 1, :q)"
        ), {"q": queue_id})
    with app.app_context():
        assert purge_broker_messages() == 1
    with engine.connect() as conn:
        payloads = {row[0] for row in conn.execute(sa.text("SELECT payload FROM kombu_message"))}
    engine.dispose()
    assert "old" not in payloads and "waiting" in payloads


def test_purge_is_a_no_op_without_the_embedded_broker(app) -> None:
    with app.app_context():
        assert purge_broker_messages() == 0

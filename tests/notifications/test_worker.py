"""Outbox delivery by real Celery workers over Redis (``redis`` tier): a notify message reaches
the SMS sandbox through ``dispatch_outbox``; a worker killed mid-delivery loses nothing (the
row was never committed as sent, so the next dispatch delivers it)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from celery.contrib.testing.worker import start_worker

from notifications.models import DeliveryAttempt, NotificationPreference, Outcome
from notifications.sandbox import NotificationSandbox, serving
from portal.accounts.models import Customer
from portal.app import create_app
from portal.extensions import db
from portal.kernel import outbox
from portal.kernel.outbox import OutboxMessage, OutboxStatus
from tests.conftest import REDIS_URL, TEST_SECRET, _settings

ROOT = Path(__file__).resolve().parents[2]
PARAMS = {"account_no": "9900000001", "amount_yuan": "170.48", "order_no": "P1"}


def _sms_settings(url: str) -> dict[str, object]:
    return {"sms": {"secret_id": "AKIDsandbox", "secret_key": "k", "sdk_app_id": "1400000000",
                    "endpoint": url.removeprefix("http://"), "scheme": "http"}}


@pytest.fixture
def world(sqlite_template: Path, tmp_path: Path, clock):
    shutil.copy(sqlite_template, tmp_path / "db.sqlite")
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    redis.Redis.from_url(REDIS_URL).flushdb()
    box = NotificationSandbox()
    with serving(box) as sandbox_url:
        app = create_app(_settings(url, broker_url=REDIS_URL,
                                   notifications=_sms_settings(sandbox_url)), clock=clock)
        with app.app_context():
            customer = Customer(phone="13900000001", password_hash="x", created_at=clock.now())
            db.session.add(customer)
            db.session.flush()
            db.session.add(NotificationPreference(customer_id=customer.id,
                                                  event="payment_succeeded", channels="sms",
                                                  updated_at=clock.now()))
            outbox.enqueue(db.session, clock, "notify", {
                "customer_id": customer.id, "account_id": None, "event": "payment_succeeded",
                "params": PARAMS}, dedup_key="notify:payment_succeeded:order:P1")
            db.session.commit()
        yield app, box, url, sandbox_url
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _wait_for(app, predicate, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with app.app_context():
            done = predicate()
            db.session.remove()
        if done:
            return True
        time.sleep(0.2)
    return False


def _delivered() -> bool:
    statuses = set(db.session.scalars(sa.select(OutboxMessage.status)))
    return len(db.session.scalars(sa.select(OutboxMessage)).all()) == 2 and \
        statuses == {OutboxStatus.SENT}


def _drain(app) -> None:
    """Run dispatch_outbox on an in-process worker until both rows are sent."""
    celery = app.extensions["celery"]
    with start_worker(celery, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        for _ in range(3):
            celery.send_task("portal.tasks.dispatch_outbox")
        assert _wait_for(app, _delivered)


@pytest.mark.redis
def test_a_worker_over_redis_delivers_notifications(world) -> None:
    app, box, _url, _sandbox = world
    _drain(app)
    assert [(s["to"], s["template_id"]) for s in box.sent] == [("+8613900000001",
                                                                "payment_succeeded")]


@pytest.mark.redis
def test_a_worker_killed_mid_delivery_loses_nothing(world, tmp_path, clock) -> None:
    app, box, url, sandbox_url = world
    release = box.hold_next()
    env = {**os.environ, "DIANFEI_ENV": "test", "DIANFEI_SECRET_KEY": TEST_SECRET,
           "DIANFEI_DATABASE_URL": url, "DIANFEI_BROKER_URL": REDIS_URL,
           "DIANFEI_NOTIFICATIONS__SMS__SECRET_ID": "AKIDsandbox",
           "DIANFEI_NOTIFICATIONS__SMS__SECRET_KEY": "k",
           "DIANFEI_NOTIFICATIONS__SMS__SDK_APP_ID": "1400000000",
           "DIANFEI_NOTIFICATIONS__SMS__ENDPOINT": sandbox_url.removeprefix("http://"),
           "DIANFEI_NOTIFICATIONS__SMS__SCHEME": "http"}
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "--app", "portal.worker", "worker", "--pool", "solo",
         "--loglevel", "INFO", "--without-heartbeat", "--without-mingle",
         "--without-gossip"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        for _ in range(2):  # the fan-out, then the delivery rows it wrote (the next pass)
            app.extensions["celery"].send_task("portal.tasks.dispatch_outbox")
        assert box.held.wait(60), (tmp_path / "worker.log").read_text()[-2000:]
        worker.send_signal(signal.SIGKILL)  # mid-delivery: the SMS request is in flight
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        log.close()
        release.set()
    with app.app_context():  # nothing was lost and nothing recorded as sent
        assert db.session.scalar(sa.select(sa.func.count()).select_from(DeliveryAttempt)) == 0
        db.session.remove()
    clock.set(datetime.now(UTC) + timedelta(minutes=1))  # the killed worker ran on real time
    _drain(app)  # the next dispatch (beat, every 30 s) delivers it
    with app.app_context():
        outcomes = list(db.session.scalars(sa.select(DeliveryAttempt.outcome)))
    assert outcomes == [Outcome.SENT] and len(box.sent) == 1

"""Test tiers: SQLite always; PostgreSQL (``pg``), Redis (``redis``) and the browser (``browser``)
when their servers answer. With ``DIANFEI_REQUIRE_SERVICES=1`` (CI) an unreachable server fails
its tests instead of skipping them. The summary at the end says which tiers ran."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.app import create_app
from portal.extensions import db
from portal.kernel.clock import FrozenClock
from portal.plans.policy import PlanPolicy
from portal.settings import Settings
from tests.helpers import FormClient

PG_URL = os.environ.get("DIANFEI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("DIANFEI_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE = os.environ.get("DIANFEI_REQUIRE_SERVICES") == "1"
CHROMIUM = "/usr/bin/chromium"
# 2026-12-03 10:00 in Beijing: demo bills for 2026-11 are issued, one 2026-10 bill is overdue.
NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


def _probe_pg() -> str | None:
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at {PG_URL} did not answer: {type(exc).__name__}: {exc}"[:300]
    return None


def _probe_redis() -> str | None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"Redis at {REDIS_URL} did not answer: {type(exc).__name__}: {exc}"[:300]
    return None


def _probe_browser() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium chromium-driver)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


PROBES = {"pg": _probe_pg, "redis": _probe_redis, "browser": _probe_browser}
_unreachable: dict[str, str | None] = {}
_ran: dict[str, int] = {"sqlite": 0, "pg": 0, "redis": 0, "browser": 0}


def pytest_configure(config: pytest.Config) -> None:
    for tier, probe in PROBES.items():
        _unreachable[tier] = probe()


def pytest_runtest_setup(item: pytest.Item) -> None:
    for tier in PROBES:
        if item.get_closest_marker(tier) is None:
            continue
        reason = _unreachable[tier]
        if reason:
            if REQUIRE:
                pytest.fail(f"DIANFEI_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
            pytest.skip(f"{tier} tier skipped: {reason}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" or not report.passed:
        return
    tiers = [t for t in PROBES if t in report.keywords]
    for tier in tiers or ["sqlite"]:
        _ran[tier] += 1


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    terminalreporter.section("Dianfei test tiers")
    for tier, count in _ran.items():
        reason = _unreachable.get(tier)
        state = f"SKIPPED ({reason})" if reason else f"{count} passed"
        terminalreporter.write_line(f"{tier:8} {state}")


# --- databases -------------------------------------------------------------------------------

def _migrate(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app(_settings(url))
    with app.app_context():
        upgrade()
        db.engine.dispose()


def _settings(url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "test", "database_url": url, "secret_key": TEST_SECRET,
        "broker_url": "memory://", "ratelimit_storage_url": "memory://",
        # payment plan attachments: never into the repository's instance folder
        "plans": PlanPolicy(attachment_dir=Path(tempfile.gettempdir()) / "dianfei-test-plans"),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "dianfei.sqlite"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    """A private schema in the test database, migrated once for the session."""
    if _unreachable["pg"]:
        pytest.fail(_unreachable["pg"]) if REQUIRE else pytest.skip(_unreachable["pg"])
    schema = f"dianfei_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    try:
        _migrate(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _truncate_pg(app: Flask) -> None:
    with app.app_context():
        tables = [t.name for t in db.metadata.sorted_tables]
        with db.engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        target = tmp_path / "dianfei.sqlite"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite:///{target}"
    return request.getfixturevalue("pg_schema_url")  # type: ignore[no-any-return]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Settings the ``app`` fixture uses beyond the test defaults; a test module overrides it."""
    return {}


@pytest.fixture
def app(database_url: str, clock: FrozenClock,
        settings_overrides: dict[str, object]) -> Iterator[Flask]:
    app = create_app(_settings(database_url, **settings_overrides), clock=clock)
    app.config["TESTING"] = True
    yield app
    with app.app_context():
        db.session.remove()
        if database_url.startswith("postgresql"):
            _truncate_pg(app)
        db.engine.dispose()


@pytest.fixture
def session(app: Flask) -> Iterator[sa.orm.Session]:
    with app.app_context():
        yield db.session


@pytest.fixture
def demo(app: Flask, clock: FrozenClock) -> None:
    from portal import context
    from portal import demo as demo_data

    with app.app_context():
        demo_data.seed(db.session, clock, context.today())
        db.session.commit()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def web(app: Flask) -> FormClient:
    return FormClient(app.test_client())


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashing() -> Iterator[None]:
    """Argon2 with production cost takes ~0.1 s a hash; tests hash hundreds of times. The
    algorithm and code path stay the same, only the cost parameters are lowered."""
    from argon2 import PasswordHasher

    from portal.accounts import service

    original = service._hasher
    service._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    service._hasher = original

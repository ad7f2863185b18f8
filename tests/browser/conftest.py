"""A live portal on loopback (seeded demo on SQLite) and headless Debian Chromium."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from portal import context
from portal import demo as demo_data
from portal.app import create_app
from portal.extensions import db
from tests.conftest import CHROMIUM, NOW, _settings

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture
def live_url(sqlite_template: Path, tmp_path: Path) -> Iterator[str]:
    from portal.kernel.clock import FrozenClock

    shutil.copy(sqlite_template, tmp_path / "db.sqlite")
    clock = FrozenClock(NOW)
    app = create_app(_settings(f"sqlite:///{tmp_path / 'db.sqlite'}"), clock=clock)
    with app.app_context():
        demo_data.seed(db.session, clock, context.today())
        db.session.commit()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def page(live_url: str):  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context_ = browser.new_context(locale="zh-CN", viewport={"width": 1100, "height": 900})
        page = context_.new_page()
        page.set_default_timeout(15_000)
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        yield page
        # a script error or a content-policy violation would break the page for real people
        assert problems == []
        context_.close()
        browser.close()

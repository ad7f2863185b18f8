"""A resident reads the meter on a phone: values, preview, photo from the camera input, done."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from portal import context
from portal import demo as demo_data
from portal.accounts.models import Meter
from portal.app import create_app
from portal.extensions import db
from portal.kernel.clock import FrozenClock
from portal.readings.models import Reading, ReadingStatus
from tests.browser.conftest import ARTIFACTS, CHROMIUM_ARGS
from tests.conftest import CHROMIUM, NOW, _settings
from tests.portal.readings.conftest import jpeg

pytestmark = pytest.mark.browser
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True, "locale": "zh-CN"}


@pytest.fixture
def site(sqlite_template: Path, tmp_path: Path) -> Iterator[tuple[str, object]]:
    shutil.copy(sqlite_template, tmp_path / "db.sqlite")
    clock = FrozenClock(NOW)
    app = create_app(_settings(f"sqlite:///{tmp_path / 'db.sqlite'}",
                               reading_photo_dir=tmp_path / "photos"), clock=clock)
    with app.app_context():
        demo_data.seed(db.session, clock, context.today())
        db.session.commit()
    clock.set(datetime(2026, 12, 22, 2, 0, tzinfo=UTC))  # inside the month's reading window
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", app
    server.shutdown()
    thread.join(timeout=10)
    with app.app_context():
        db.engine.dispose()


def _last_reading(app, meter_no: str) -> Decimal:
    with app.app_context():
        return db.session.scalar(
            sa.select(Reading.value_kwh).join(Meter).where(Meter.meter_no == meter_no)
            .order_by(Reading.period.desc()).limit(1))


def test_self_reading_on_a_phone(site, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    url, app = site
    last = _last_reading(app, "110101000001")
    photo = tmp_path / "IMG_20261222.jpg"
    photo.write_bytes(jpeg((800, 600), exif=True))
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        phone = browser.new_context(**PHONE)
        page = phone.new_page()
        page.set_default_timeout(15_000)
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

        page.goto(f"{url}/login")
        page.get_by_label("手机号").fill("13800000001")
        page.get_by_label("密码").fill("dianfei-demo")
        page.get_by_role("button", name="登录").click()
        page.wait_for_url(re.compile(r"/dashboard$"))
        page.get_by_role("link", name="电表读数").click()
        page.wait_for_url(re.compile(r"/readings$"))
        page.get_by_role("link", name="提交读数").click()

        page.get_by_label("总读数（千瓦时）").fill(str(last + 150))
        page.get_by_role("button", name="核对读数").click()
        preview = page.locator("#reading-preview")
        preview.wait_for()
        assert preview.locator(".usage").inner_text() == "150 kWh"
        assert re.fullmatch(r"¥\d+\.\d\d", preview.locator(".estimate").inner_text())
        camera = page.locator("input[type=file][name=photo]")
        assert camera.get_attribute("capture") == "environment"
        assert camera.get_attribute("accept") == "image/jpeg,image/png"
        # nothing sticks out of a phone's screen
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(ARTIFACTS / "self-reading-preview.png"), full_page=True)

        camera.set_input_files(str(photo))
        page.get_by_role("button", name="确认并提交").click()
        page.wait_for_url(re.compile(r"/readings$"))
        assert page.get_by_text(re.compile(r"读数 .* 千瓦时已通过")).is_visible()
        newest = page.locator("table.readings tbody tr").first
        assert "2026-12" in newest.inner_text() and "已通过" in newest.inner_text()
        # the photo, with the page's cookies (opening an image itself makes Chromium ask for a
        # /favicon.ico this portal does not have)
        href = newest.get_by_role("link", name="照片").get_attribute("href")
        shown = page.request.get(f"{url}{href}")
        assert shown.status == 200 and shown.headers["content-type"] == "image/jpeg"
        page.screenshot(path=str(ARTIFACTS / "self-reading-history.png"), full_page=True)
        assert problems == []
        phone.close()
        browser.close()
    with app.app_context():
        row = db.session.scalars(sa.select(Reading).where(Reading.period == "2026-12")).one()
        assert row.status is ReadingStatus.ACCEPTED and row.value_kwh == last + 150

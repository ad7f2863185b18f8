"""A resident pays demo bills in Chromium through each sandbox channel and sees them paid."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from payments.sandbox import compose
from portal import demo as demo_data
from portal import payment_channels
from portal.app import create_app
from portal.extensions import db
from portal.kernel.clock import SystemClock, local_today
from tests.conftest import _settings
from tests.payments.conftest import wsgi_server  # noqa: F401  (a fixture)

pytestmark = pytest.mark.browser


@pytest.fixture
def live_url(sqlite_template: Path, tmp_path: Path, wsgi_server,  # noqa: F811
             monkeypatch) -> Iterator[str]:
    """The portal in sandbox mode and the composed sandbox, both on loopback, real time."""
    shutil.copy(sqlite_template, tmp_path / "db.sqlite")
    monkeypatch.setattr(payment_channels, "INSTANCE", tmp_path)
    keys = compose.load_or_create_keys(tmp_path / "sandbox")
    apps: list[Flask] = []

    def portal(portal_url: str) -> Flask:
        sandbox_url = wsgi_server(lambda url: compose.make_app(keys, url, portal_url))
        apps.append(create_app(_settings(f"sqlite:///{tmp_path / 'db.sqlite'}", sandbox=True,
                                         sandbox_url=sandbox_url, public_url=portal_url),
                               clock=SystemClock()))
        return apps[0]

    url = wsgi_server(portal)
    clock = SystemClock()
    with apps[0].app_context():
        demo_data.seed(db.session, clock, local_today(clock, apps[0].extensions[
            "dianfei.settings"].zone))
        db.session.commit()
    yield url
    with apps[0].app_context():
        db.engine.dispose()


def _start(page, live_url: str, channel_label: str, topup: str = "") -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_url}/dashboard")
    page.locator("p.actions a").first.click()  # the account's bills
    page.get_by_role("link", name="缴费或预存").click()
    boxes = page.locator("input[name=bills]")
    for i in range(boxes.count()):  # pay the oldest owed bill only (or just a top-up)
        if i > 0 or topup:
            boxes.nth(i).uncheck()
    if topup:
        page.fill("input[name=topup]", topup)
    page.get_by_label(channel_label).check()
    page.get_by_role("button", name="去支付").click()


def test_pay_demo_bills_through_each_sandbox_channel(page, live_url) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_url}/login")
    page.fill("input[name=phone]", "13800000002")
    page.fill("input[name=password]", "dianfei-demo")
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(re.compile(r".*/dashboard$"))

    _start(page, live_url, "微信支付")
    assert page.locator(".qr svg").count() == 1, page.inner_text("main")
    order_url = page.url
    page.get_by_role("link", name="打开沙箱支付页面").click()
    page.locator("button[name=outcome][value=confirm]").click()
    page.goto(f"{order_url}/return")
    page.wait_for_url(re.compile(r".*/receipt$"))
    assert "已缴清" in page.inner_text("#receipt")

    _start(page, live_url, "支付宝")
    page.get_by_role("link", name="前往支付宝付款").click()
    page.locator("button[name=action][value=confirm]").click()
    page.wait_for_url(re.compile(r".*/receipt$"))

    _start(page, live_url, "银行卡", topup="20")
    page.get_by_role("button", name="支付").click()
    page.locator("button[name=action][value=confirm]").click()
    page.wait_for_url(re.compile(r".*/receipt$"))
    assert "¥20.00" in page.inner_text("#receipt")

    page.get_by_role("link", name="全部账单").first.click()
    assert "未缴" not in page.inner_text("main") and "逾期" not in page.inner_text("main")
    page.get_by_role("link", name="缴费记录").click()
    assert page.locator("td.status", has_text="已缴清").count() == 3

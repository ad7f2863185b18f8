"""The resident's first journey in a real browser: sign up, link, bills, one bill, usage chart."""

import re

import pytest

from tests.browser.conftest import ARTIFACTS

pytestmark = pytest.mark.browser


def test_sign_up_link_see_bills_and_usage_chart(page, live_url) -> None:
    page.goto(f"{live_url}/signup")
    page.get_by_label("手机号").fill("13912345678")
    page.get_by_label("密码", exact=True).fill("a good password")
    page.get_by_label("确认密码").fill("a good password")
    page.get_by_role("button", name="注册").click()
    page.wait_for_url(re.compile(r"/accounts/link$"))

    page.get_by_label("户号").fill("1100000005")
    page.get_by_label("户名").fill("张伟")
    page.get_by_label("电表号后4位").fill("5678")
    page.get_by_role("button", name="绑定").click()
    page.wait_for_url(re.compile(r"/accounts/\d+/bills$"))
    assert page.get_by_text("户号 1100000005 已绑定。").is_visible()
    rows = page.locator("table.bills tbody tr")
    assert rows.count() == 24

    page.get_by_role("link", name="2026-11").click()
    page.wait_for_url(re.compile(r"/bills/\d+$"))
    lines = page.locator("table.lines tbody tr")
    assert lines.count() >= 1
    total = page.locator("table.lines tfoot .total").inner_text()
    assert re.fullmatch(r"¥\d[\d,]*\.\d\d", total)
    page.screenshot(path=str(ARTIFACTS / "journey-bill.png"), full_page=True)

    page.get_by_role("link", name="全部账单").click()
    page.get_by_role("link", name="用电历史").first.click()
    chart = page.locator("#usage-chart[data-rendered='24']")
    chart.wait_for()
    assert chart.locator("canvas").count() >= 1
    bars = page.evaluate(
        "() => echarts.getInstanceByDom(document.getElementById('usage-chart'))"
        ".getOption().series[0].data.length")
    assert bars == 24
    page.screenshot(path=str(ARTIFACTS / "journey-usage.png"), full_page=True)


def test_english_by_choice(page, live_url) -> None:
    page.goto(f"{live_url}/login?lang=en")
    assert page.get_by_role("heading", name="Sign in").is_visible()
    page.get_by_label("Mobile number").fill("13800000003")
    page.get_by_label("Password").fill("dianfei-demo")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/dashboard$"))
    assert page.locator("section.account").count() == 1
    assert page.get_by_text("Amount due").is_visible()


def test_phone_sized_screen(page, live_url) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_url}/login")
    page.get_by_label("手机号").fill("13800000003")
    page.get_by_label("密码").fill("dianfei-demo")
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(re.compile(r"/dashboard$"))
    page.get_by_role("link", name="用电历史").click()
    page.locator("#usage-chart[data-rendered='24']").wait_for()
    # peak and valley registers are stacked for a time-of-use meter
    names = page.evaluate(
        "() => echarts.getInstanceByDom(document.getElementById('usage-chart'))"
        ".getOption().series.map(s => s.name)")
    assert names == ["峰", "谷", "金额（元）"]
    no_sideways_scroll = page.evaluate(
        "() => document.documentElement.scrollWidth <= window.innerWidth")
    assert no_sideways_scroll
    page.screenshot(path=str(ARTIFACTS / "phone-usage.png"), full_page=False)

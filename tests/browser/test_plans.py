"""A business asks for a payment plan in Chromium, a collector of its district sends the terms,
the customer accepts them and pays the first installment through the WeChat Pay sandbox."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from portal.kernel.clock import SystemClock, local_today
from tests.browser.test_payments import live_url  # noqa: F401  (a fixture: portal + sandbox)
from tests.payments.conftest import wsgi_server  # noqa: F401  (a fixture)

pytestmark = pytest.mark.browser


def test_business_plan_is_approved_accepted_and_first_installment_paid(page, live_url) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from zoneinfo import ZoneInfo

    first_due = local_today(SystemClock(), ZoneInfo("Asia/Shanghai")) + timedelta(days=10)
    page.goto(f"{live_url}/login")
    page.fill("input[name=phone]", "13800000004")
    page.fill("input[name=password]", "dianfei-demo")
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(re.compile(r".*/dashboard$"))

    page.get_by_role("link", name="分期缴费").click()
    page.get_by_role("link", name="为户号 3300000009 申请分期").click()
    page.select_option("select[name=installments]", "3")
    page.fill("input[name=first_due_on]", first_due.isoformat())
    page.fill("textarea[name=reason]", "货款回笼慢，申请分三期缴纳")
    page.get_by_role("button", name="提交申请").click()
    page.wait_for_url(re.compile(r".*/plans/\d+$"))
    plan_url = page.url
    assert "已申请，等待工作人员处理" in page.inner_text("#plan")

    staff = page.context.browser.new_context(locale="zh-CN")
    desk = staff.new_page()
    desk.goto(f"{live_url}/staff/login")
    desk.fill("input[name=username]", "hz-collector")
    desk.fill("input[name=password]", "dianfei-demo")
    desk.get_by_role("button", name="登录").click()
    desk.get_by_role("link", name="分期缴费").click()
    desk.locator("tr[data-plan] a").first.click()
    assert "货款回笼慢" in desk.inner_text("main")
    desk.get_by_role("button", name="发送此方案").click()
    assert "方案已发送给客户" in desk.inner_text("main")
    staff.close()

    page.goto(plan_url)
    assert "方案已提出，等待您确认" in page.inner_text("#plan")
    page.get_by_role("button", name="接受方案", exact=True).click()
    assert "执行中" in page.inner_text("#plan")
    assert page.locator("#schedule tbody tr").count() == 3
    page.get_by_label("微信支付").check()
    page.get_by_role("button", name="缴纳本期").click()
    assert page.locator(".qr svg").count() == 1, page.inner_text("main")
    order_url = page.url
    page.get_by_role("link", name="打开沙箱支付页面").click()
    page.locator("button[name=outcome][value=confirm]").click()
    page.goto(f"{order_url}/return")
    page.wait_for_url(re.compile(r".*/receipt$"))
    assert "¥862.82" in page.inner_text("#receipt")  # 2,588.48 in 3: 862.82 + 862.82 + 862.84

    page.goto(plan_url)
    first = page.locator("#schedule tr[data-seq='1'] td.status")
    assert "已缴清" in first.inner_text()
    assert "缴纳第 2 期" in page.inner_text("main")

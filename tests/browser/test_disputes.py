"""A dispute end to end in a real browser: a customer disputes a bill with a photo, a member of
staff resolves it with a credit, and the customer sees the corrected bill and the comparison."""

import io
import re

import pytest
from PIL import Image

from tests.browser.conftest import ARTIFACTS

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _attachments_in_tmp(tmp_path, monkeypatch) -> None:
    # read by Settings() when live_url builds the app: files stay out of instance/
    monkeypatch.setenv("DIANFEI_DISPUTE_ATTACHMENTS_DIR", str(tmp_path / "files"))


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (30, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def _customer_signs_in(page, live_url: str) -> None:
    page.goto(f"{live_url}/login")
    page.get_by_label("手机号").fill("13800000002")
    page.get_by_label("密码").fill("dianfei-demo")
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(re.compile(r"/dashboard$"))


def test_customer_disputes_staff_adjusts_customer_sees_corrected_bill(page, live_url) -> None:
    _customer_signs_in(page, live_url)
    page.get_by_role("link", name="账单", exact=True).first.click()
    page.get_by_role("link", name="2026-11").click()
    page.wait_for_url(re.compile(r"/bills/\d+$"))
    old_total = page.locator("table.lines tfoot .total").inner_text()
    page.get_by_role("link", name="对此账单提出异议").click()
    page.get_by_label("问题类型").select_option("reading")
    page.get_by_label("问题描述").fill("本月读数比实际电表读数高，附电表照片。")
    page.get_by_label("附件").set_input_files(
        [{"name": "电表.png", "mimeType": "image/png", "buffer": _png()}])
    page.get_by_role("button", name="提交异议").click()
    page.wait_for_url(re.compile(r"/disputes/\d+$"))
    dispute_url = page.url
    assert page.get_by_text("已受理").first.is_visible()
    assert page.locator(".sla-due").inner_text() == "2026-12-10"
    assert page.get_by_role("link", name="电表.png").is_visible()
    page.screenshot(path=str(ARTIFACTS / "dispute-opened.png"), full_page=True)
    page.get_by_role("button", name="退出登录").click()

    page.goto(f"{live_url}/staff/login")
    page.get_by_label("用户名").fill("bj-auditor")
    page.get_by_label("密码").fill("dianfei-demo")
    page.get_by_role("button", name="登录").click()
    page.get_by_role("link", name="异议", exact=True).click()
    page.locator("table.disputes a").first.click()
    page.get_by_role("button", name="分派").click()
    assert page.get_by_text("已保存：已分派给工作人员。").is_visible()
    page.get_by_label("减免（客户少缴）").check()
    page.get_by_label("金额（元）").fill("20.00")
    page.get_by_label("调整原因").fill("抄表录入错误，减免 20 元。")
    page.get_by_role("button", name="调整账单").click()
    assert page.get_by_text("已保存：已处理：账单已更正。").is_visible()
    assert page.locator("table.compare .after-total").is_visible()
    page.screenshot(path=str(ARTIFACTS / "dispute-staff-adjusted.png"), full_page=True)
    page.get_by_role("button", name="退出登录").click()

    _customer_signs_in(page, live_url)
    page.goto(dispute_url)
    assert page.get_by_text("抄表录入错误，减免 20 元。").first.is_visible()
    changed = page.locator("table.compare tr.changed")
    assert changed.count() == 1 and "¥-20.00" in changed.inner_text()
    assert page.locator("table.compare .before-total").inner_text() == old_total
    page.get_by_role("link", name="查看更正后的账单").click()
    page.wait_for_url(re.compile(r"/bills/\d+$"))
    assert page.get_by_text("这是根据您的异议更正后的账单（第 2 版）。").is_visible()
    new_total = page.locator("table.lines tfoot .total").inner_text()
    to_fen = lambda s: int(re.sub(r"[^\d]", "", s))  # noqa: E731
    assert to_fen(old_total) - to_fen(new_total) == 2000
    page.screenshot(path=str(ARTIFACTS / "dispute-corrected-bill.png"), full_page=True)

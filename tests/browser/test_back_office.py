"""A supervisor in a real browser: the KPI charts draw under the content policy, and a bill held
for review is approved from the review queue."""

import re

import pyotp
import pytest

from portal.demo import DEMO_PASSWORD, DEMO_TOTP_SECRET
from tests.browser.conftest import ARTIFACTS
from tests.conftest import NOW

pytestmark = pytest.mark.browser


def _sign_in(page, live_url: str, username: str) -> None:
    page.goto(f"{live_url}/staff/login?lang=en")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/staff/login/code"))
    page.get_by_label("6-digit code from your authenticator app").fill(
        pyotp.TOTP(DEMO_TOTP_SECRET).at(NOW))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/staff$"))


def test_kpi_charts_and_approving_a_held_bill(page, live_url) -> None:
    _sign_in(page, live_url, "bj-supervisor")
    page.get_by_role("link", name="KPIs").click()
    for chart in ("collection", "arrears", "payments"):
        page.locator(f"#kpi-{chart}-chart[data-rendered='1'] canvas").first.wait_for()
    assert "bj-dongcheng" in page.evaluate(
        "() => echarts.getInstanceByDom(document.getElementById('kpi-collection-chart'))"
        ".getOption().xAxis[0].data.join(',')")
    page.screenshot(path=str(ARTIFACTS / "back-office-kpis.png"), full_page=True)

    page.get_by_role("link", name="Review", exact=True).click()
    page.get_by_role("link", name="Bills held for review").click()
    page.get_by_role("link", name="1100000001").click()
    page.get_by_label("Why the bill is right as computed").fill("customer confirmed the use")
    page.get_by_role("button", name="Approve and issue the bill").click()
    page.wait_for_url(re.compile(r"/staff/bills/review$"))
    assert page.get_by_text("No bill is held for review.").is_visible()

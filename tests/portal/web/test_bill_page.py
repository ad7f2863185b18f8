"""The bill page and its PDF: every line's derivation, the tier progress, the late fee so far,
and nobody else's bill. Figures are worked by hand in the comments."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from reportlab import rl_config

from billing_adapter.local.pricing import Usage, quote
from billing_adapter.local.tariffs import TariffBook, load_tariffs
from portal.accounts import service as accounts
from portal.accounts.models import AccountLink, CustomerClass, ElectricityAccount
from portal.bills import service as bills
from portal.bills.models import Bill, BillLine, LineKind
from portal.extensions import db
from portal.ledger import service as ledger
from portal.ledger.models import EntryKind
from tests import factories
from tests.helpers import text_of

PASSWORD = "correct horse 1"


def _bill(acct: ElectricityAccount, clock, period: str, kwh: int, prior: int = 0,
          issue: bool = True, due: date | None = None) -> Bill:
    book = TariffBook.from_db(db.session)
    year, month = map(int, period.split("-"))
    start = date(year, month, 1)
    end = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    priced = quote(book, acct.tariff_code, start, end, Usage(Decimal(kwh)), Decimal(prior))
    bill = Bill(account_id=acct.id, period=period, period_start=start, period_end=end,
                kwh=Decimal(kwh), tariff_code=acct.tariff_code, total_fen=priced.total_fen,
                due_date=due or date(year + month // 12, month % 12 + 1, 25),
                created_at=clock.now(),
                lines=[BillLine(seq=i, kind=LineKind(line.kind), tier=line.tier,
                                register=line.register, kwh=line.kwh, unit_price=line.unit_price,
                                amount_fen=line.amount_fen, description=line.description)
                       for i, line in enumerate(priced.lines, 1)])
    db.session.add(bill)
    db.session.flush()
    if issue:
        bills.issue(db.session, clock, bill)
    return bill


def _customer(acct: ElectricityAccount, clock, phone: str) -> None:
    customer = accounts.register(db.session, clock, phone, PASSWORD)
    db.session.add(AccountLink(customer=customer, account=acct, created_at=clock.now()))


@pytest.fixture
def zhejiang(app, clock) -> dict[str, int]:
    """A Zhejiang resident: 2,070 kWh billed Jan-Sep 2026, 240 in October (2,310 so far), 500
    in November (2,810: into tier 2); a December 2025 bill from the previous tier year and a
    held (not issued) December 2026 bill, neither of which counts."""
    with app.app_context():
        load_tariffs(db.session)
        acct = factories.account(db.session, clock)
        acct.tariff_code = "zhejiang-residential"
        _customer(acct, clock, "13911110001")
        _bill(acct, clock, "2025-12", 900, prior=2000)
        ids = {}
        for month in range(1, 10):
            _bill(acct, clock, f"2026-{month:02d}", 230, prior=230 * (month - 1))
        ids["oct"] = _bill(acct, clock, "2026-10", 240, prior=2070).id
        ids["nov"] = _bill(acct, clock, "2026-11", 500, prior=2310).id
        ids["dec"] = _bill(acct, clock, "2026-12", 100, prior=2810, issue=False).id
        db.session.commit()
        return ids


def test_annual_tier_progress_and_line_derivations(web, zhejiang) -> None:
    web.login("13911110001", PASSWORD)
    page = text_of(web.get(f"/bills/{zhejiang['oct']}"))
    assert ("本阶梯年度（2026-01-01至2026-12-31）您已用电 2,310 kWh，第一档电价额度为 2,760 kWh。"
            in page)
    assert "电度电费 240 kWh × 0.538 元/kWh = 129.12 元 ¥129.12" in page  # 240 x 0.538
    english = text_of(web.get(f"/bills/{zhejiang['oct']}?lang=en"))
    assert ("You have used 2,310 of 2,760 kWh at the first-tier price this tier year "
            "(2026-01-01 to 2026-12-31).") in english
    assert "Electricity 240 kWh × 0.538 yuan/kWh = 129.12 yuan" in english


def test_progress_past_a_threshold_and_the_increment_line(web, zhejiang) -> None:
    web.login("13911110001", PASSWORD)
    # 2,310 + 500 = 2,810: 50 kWh above 2,760 at +0.05 = 2.50; 500 x 0.538 = 269.00
    english = text_of(web.get(f"/bills/{zhejiang['nov']}?lang=en"))
    assert ("You have used 2,810 kWh this tier year (2026-01-01 to 2026-12-31), so your latest "
            "kWh are at the tier 2 price; tier 3 starts after 4,800 kWh, 1,990 kWh from now."
            ) in english
    assert ("Tier 2 extra price, kWh above the threshold 50 kWh × 0.05 yuan/kWh = 2.50 yuan"
            in english)
    assert "Total ¥271.50" in english
    chinese = text_of(web.get(f"/bills/{zhejiang['nov']}?lang=zh"))
    assert "新增电量按第2档电价计费；累计超过 4,800 kWh 后进入第3档，还有 1,990 kWh。" in chinese


def test_held_bill_counts_itself_on_top_of_the_issued_ones(web, zhejiang) -> None:
    web.login("13911110001", PASSWORD)
    english = text_of(web.get(f"/bills/{zhejiang['dec']}?lang=en"))
    assert "You have used 2,910 kWh this tier year" in english


@pytest.fixture
def beijing(app, clock) -> dict[str, int]:
    """A Beijing resident with a 300 kWh November bill due 2026-11-25, unpaid; today (the test
    clock) is 2026-12-03, so it is 8 days overdue."""
    with app.app_context():
        load_tariffs(db.session)
        acct = factories.account(db.session, clock)
        _customer(acct, clock, "13911110002")
        other = factories.account(db.session, clock, "9900000002", "别人", "990000005555")
        _customer(other, clock, "13911110003")
        ids = {"overdue": _bill(acct, clock, "2026-10", 300, due=date(2026, 11, 25)).id,
               "top": _bill(acct, clock, "2026-09", 450, due=date(2026, 10, 25)).id,
               "fresh": _bill(acct, clock, "2026-11", 200, due=date(2026, 12, 25)).id,
               "account": acct.id, "other": _bill(other, clock, "2026-11", 100).id}
        top = db.session.get(Bill, ids["top"])
        assert top is not None
        ledger.post(db.session, clock, account_id=acct.id, bill_id=top.id,
                    kind=EntryKind.PAYMENT, amount_fen=-top.total_fen, ref="paid-top",
                    effective_on=date(2026, 10, 20))
        db.session.commit()
        return ids


def test_monthly_position_in_english_and_chinese(web, beijing) -> None:
    web.login("13911110002", PASSWORD)
    english = text_of(web.get(f"/bills/{beijing['overdue']}?lang=en"))
    assert ("This month you used 300 kWh, so your latest kWh were at the tier 2 price; tier 3 "
            "starts after 400 kWh a month.") in english
    chinese = text_of(web.get(f"/bills/{beijing['fresh']}?lang=zh"))
    assert "本月您已用电 200 kWh，每月第一档电价额度为 240 kWh。" in chinese
    top = text_of(web.get(f"/bills/{beijing['top']}?lang=en"))
    assert ("This month you used 450 kWh, more than 400 kWh: the kWh above it were at the "
            "tier 3 price.") in top


def test_overdue_bill_shows_the_late_fee_so_far_and_per_day(web, beijing) -> None:
    web.login("13911110002", PASSWORD)
    # 300 x 0.4883 = 146.49 + 60 x 0.05 = 3.00 -> 149.49 yuan; 8 days x 1 per mille:
    # 14949 x 0.001 x 8 = 119.592 fen -> 1.20 yuan; one day 14.949 fen -> 0.15 yuan
    english = text_of(web.get(f"/bills/{beijing['overdue']}?lang=en"))
    assert ("This bill is 8 days overdue. Late fee so far, if paid today: 1.20 yuan (1‰ of the "
            "149.49 yuan owed for each day overdue, about 0.15 yuan a day; a total under 1 yuan "
            "is charged as 1 yuan).") in english
    chinese = text_of(web.get(f"/bills/{beijing['overdue']}?lang=zh"))
    assert "本账单已逾期 8 天。如今天缴费，违约金为 1.20 元" in chinese
    for not_overdue in ("fresh", "top"):  # not yet due; paid
        assert "overdue" not in text_of(web.get(f"/bills/{beijing[not_overdue]}?lang=en"))


def test_a_waived_account_shows_no_fee(app, web, beijing) -> None:
    with app.app_context():
        acct = db.session.get(ElectricityAccount, beijing["account"])
        assert acct is not None
        acct.late_fee_waived = True
        db.session.commit()
    web.login("13911110002", PASSWORD)
    english = text_of(web.get(f"/bills/{beijing['overdue']}?lang=en"))
    assert "This bill is 8 days overdue. Late fees are waived on this account." in english
    assert "Late fee so far" not in english


def test_business_arrears_accrue_at_two_per_mille(app, web, beijing) -> None:
    with app.app_context():
        acct = db.session.get(ElectricityAccount, beijing["account"])
        assert acct is not None
        acct.customer_class = CustomerClass.BUSINESS
        db.session.commit()
    web.login("13911110002", PASSWORD)
    # 14949 x 0.002 x 8 = 239.184 fen -> 2.39 yuan; one day 29.898 -> 0.30
    english = text_of(web.get(f"/bills/{beijing['overdue']}?lang=en"))
    assert "Late fee so far, if paid today: 2.39 yuan (2‰ of the 149.49 yuan" in english
    assert "about 0.30 yuan a day" in english


def test_the_pdf_downloads_with_the_bill_total(web, beijing, monkeypatch) -> None:
    monkeypatch.setattr(rl_config, "pageCompression", 0)  # so the text is readable in the file
    web.login("13911110002", PASSWORD)
    page = web.get(f"/bills/{beijing['overdue']}").get_data(as_text=True)
    assert f'href="/bills/{beijing["overdue"]}.pdf"' in page
    response = web.get(f"/bills/{beijing['overdue']}.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="dianfei-9900000001-2026-10.pdf"')
    body = response.get_data()
    assert body.startswith(b"%PDF-") and b"/STSong-Light" in body
    assert b"(149.49) Tj" in body  # the total
    assert b"(146.49) Tj" in body and b"(3.00) Tj" in body  # the two lines


def test_another_customers_bill_is_not_found_as_page_or_pdf(web, beijing) -> None:
    web.login("13911110002", PASSWORD)
    for path in (f"/bills/{beijing['other']}", f"/bills/{beijing['other']}.pdf",
                 "/bills/999999.pdf"):
        response = web.get(path)
        assert response.status_code == 404, path
        assert b"%PDF" not in response.get_data()
        assert "9900000002" not in text_of(response)


def test_the_pdf_needs_sign_in(web, beijing) -> None:
    response = web.get(f"/bills/{beijing['overdue']}.pdf")
    assert response.status_code == 302 and response.location.startswith("/login")

"""Failures a person can cause get a page that says what to do; ours say sorry, change nothing."""

from decimal import Decimal

import pytest
import sqlalchemy as sa

from portal.accounts.models import Customer, ElectricityAccount
from portal.bills.models import Bill
from portal.demo import DEMO_PASSWORD
from portal.disputes.models import Dispute
from portal.extensions import db
from portal.templating import format_kwh, format_price
from tests.helpers import FormClient, text_of
from tests.portal.backoffice.staffing import staff_login

PG_ONLY = pytest.mark.parametrize("database_url", [pytest.param("pg", marks=pytest.mark.pg)],
                                  indirect=True)


def test_unexpected_error_is_a_friendly_500_and_rolls_back(app, clock) -> None:
    from portal.accounts import service as accounts

    @app.get("/boom")
    def boom():  # type: ignore[no-untyped-def]
        accounts.register(db.session, clock, "13700000000", "half-written")
        raise RuntimeError("bug")

    response = app.test_client().get("/boom?lang=en")
    assert response.status_code == 500
    assert "Nothing was changed" in text_of(response)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Customer)) == 0


def test_oversized_request_is_413(client) -> None:
    response = client.post("/login?lang=en", data={"phone": "1" * (11 * 1024 * 1024)})
    assert response.status_code == 413
    assert "too large" in text_of(response)


def test_wrong_method_is_405_with_words(client) -> None:
    response = client.put("/login?lang=en")
    assert response.status_code == 405
    assert "cannot be used that way" in text_of(response)


def test_other_http_errors_get_a_generic_page(app) -> None:
    from werkzeug.exceptions import Gone

    @app.get("/gone")
    def gone():  # type: ignore[no-untyped-def]
        raise Gone()

    response = app.test_client().get("/gone?lang=en")
    assert response.status_code == 410
    assert "could not be handled" in text_of(response)


def test_number_formats() -> None:
    assert format_kwh(None) == "-" and format_price(None) == "-"
    assert format_kwh(Decimal("1234.00")) == "1,234"
    assert format_kwh(Decimal("12.5")) == "12.50"
    assert format_price(Decimal("0.48830")) == "0.4883"


def test_billing_unavailable_is_a_friendly_503_in_both_languages(app) -> None:
    from billing_adapter.base import BillingUnavailable

    @app.get("/billing-down")
    def billing_down():  # type: ignore[no-untyped-def]
        raise BillingUnavailable("GET /v1/accounts/{account_no}: HTTP 503")

    english = app.test_client().get("/billing-down?lang=en")
    assert english.status_code == 503 and english.headers["Retry-After"] == "120"
    assert "try again in a few minutes" in text_of(english)
    assert "HTTP 503" not in text_of(english)
    chinese = app.test_client().get("/billing-down?lang=zh")
    assert chinese.status_code == 503
    assert "计费系统" in text_of(chinese)


@PG_ONLY
def test_a_nul_character_is_a_400_with_words_and_writes_nothing(app, web, demo, clock) -> None:
    """PostgreSQL refuses a NUL (\\x00) in any text it is given (a DataError, once a 500):
    whatever a request carries it in, it is refused first, in words, and nothing is written."""
    web.login("13800000002", DEMO_PASSWORD)
    with app.app_context():
        bill_id = db.session.scalar(sa.select(Bill.id).join(ElectricityAccount).where(
            ElectricityAccount.account_no == "1100000002", Bill.period == "2026-11"))
    email = web.submit("/notifications?lang=zh", {"email": "a\x00@b.cc"})
    assert email.status_code == 400 and "空字符" in text_of(email)
    dispute = web.submit(f"/bills/{bill_id}/dispute?lang=en", {
        "category": "reading", "description": "a\x00b", "amount": ""})
    assert dispute.status_code == 400 and "NUL character" in text_of(dispute)
    for path in ("/pay/a%00b", "/pay/a%00b/receipt", "/pay/a%00b/return"):
        response = web.get(path)
        assert response.status_code == 400 and "NUL character" in text_of(response), path
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Dispute)) == 0
        assert db.session.scalar(sa.select(Customer.email).where(
            Customer.phone == "13800000002")) is None

    staff = FormClient(app.test_client())
    refused = staff.submit("/staff/login?lang=en", {"username": "a\x00b", "password": "x"})
    assert refused.status_code == 400 and "NUL character" in text_of(refused)
    assert staff_login(staff, clock, "bj-reader").status_code == 302
    search = staff.get("/staff/accounts?q=a%00b&lang=en")
    assert search.status_code == 400 and "NUL character" in text_of(search)

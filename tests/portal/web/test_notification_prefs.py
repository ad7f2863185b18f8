"""The notification settings page: defaults shown, choices per event saved (and used by the
notify handler), an email address kept, bad input refused with a message."""

from __future__ import annotations

import sqlalchemy as sa

from notifications.models import NotificationPreference
from portal.accounts.models import Customer
from portal.extensions import db
from tests.helpers import text_of


def _prefs(app) -> dict[str, str]:
    with app.app_context():
        return dict(db.session.execute(sa.select(NotificationPreference.event,
                                                 NotificationPreference.channels)).all())


def test_defaults_then_saved_choices(app, web) -> None:
    web.signup("13912345678")
    page = web.get("/notifications?lang=en")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # the final notice goes by SMS first by default; receipts by WeChat then SMS then email
    assert 'name="ch-reminder_final_notice" value="sms" aria-label="Final notice before ' \
        'disconnection: SMS" checked' in html
    assert 'value="email" aria-label="Payment received: Email" checked' in html
    response = web.submit("/notifications", {"ch-payment_succeeded": ["email", "sms"],
                                             "ch-bill_issued": ["wechat"],
                                             "email": "li@example.cn"})
    assert response.status_code == 302
    prefs = _prefs(app)
    assert prefs["payment_succeeded"] == "sms,email" and prefs["bill_issued"] == "wechat"
    assert prefs["refund_succeeded"] == ""  # nothing ticked: not told
    with app.app_context():
        assert db.session.scalar(sa.select(Customer.email)) == "li@example.cn"
        from portal.kernel.audit import AuditEntry
        (entry,) = db.session.scalars(sa.select(AuditEntry)).all()
        assert entry.action == "notifications.preferences"
        assert entry.details["payment_succeeded"] == ["email", "sms"]
    again = web.get("/notifications?lang=en").get_data(as_text=True)
    assert 'value="wechat" aria-label="Refund completed: WeChat">' in again


def test_bad_input_is_refused_with_a_message(app, web) -> None:
    web.signup("13912345678")
    bad_email = web.submit("/notifications?lang=en", {"email": "not-an-address"})
    assert bad_email.status_code == 400
    assert "like name@example.com" in text_of(bad_email)
    bad_channel = web.submit("/notifications", {"ch-bill_issued": ["fax"]})
    assert bad_channel.status_code == 400
    assert "Choose among WeChat, SMS and email." in text_of(bad_channel)
    assert _prefs(app) == {}


def test_the_page_needs_a_signed_in_customer(client) -> None:
    assert client.get("/notifications").status_code == 302

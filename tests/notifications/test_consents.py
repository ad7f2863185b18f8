"""Subscribe-message consents: one consent, one message; counted per customer and event."""

from __future__ import annotations

import pytest

from notifications.consents import UnknownEvent, record_consents, remaining, take_consent
from portal.accounts import service as accounts


@pytest.fixture
def customer_id(session, clock) -> int:
    customer = accounts.register(session, clock, "13900000001", "correct horse 1")
    session.commit()
    return customer.id


def test_each_consent_allows_one_message(session, clock, customer_id):
    assert record_consents(session, clock, customer_id,
                           ["bill_issued", "bill_issued", "payment_received"]) == {
        "bill_issued": 2, "payment_received": 1}
    session.commit()
    assert take_consent(session, customer_id, "bill_issued")
    assert take_consent(session, customer_id, "bill_issued")
    assert not take_consent(session, customer_id, "bill_issued")
    assert not take_consent(session, customer_id, "payment_reminder")  # never consented
    session.commit()
    assert remaining(session, customer_id)["bill_issued"] == 0
    assert remaining(session, customer_id)["payment_received"] == 1


def test_unknown_events_write_nothing(session, clock, customer_id):
    with pytest.raises(UnknownEvent):
        record_consents(session, clock, customer_id, ["bill_issued", "lottery_win"])
    assert remaining(session, customer_id)["bill_issued"] == 0


def test_consents_belong_to_their_customer(session, clock, customer_id):
    other = accounts.register(session, clock, "13900000002", "correct horse 1").id
    record_consents(session, clock, customer_id, ["reading_result"])
    session.commit()
    assert not take_consent(session, other, "reading_result")
    assert take_consent(session, customer_id, "reading_result")

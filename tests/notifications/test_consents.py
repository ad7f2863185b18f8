"""One consent, one message: counts add up per event and are never taken below zero."""

from notifications import consents
from portal.accounts.models import Customer


def _customer(session, clock) -> Customer:
    customer = Customer(phone="13900000009", password_hash="x", created_at=clock.now())
    session.add(customer)
    session.flush()
    return customer


def test_each_consent_allows_exactly_one_message(session, clock) -> None:
    customer = _customer(session, clock)
    consents.record_consents(session, clock, customer.id, ["bill_issued", "bill_issued"])
    consents.record_consents(session, clock, customer.id, ["bill_issued", "reminder_overdue"])
    session.commit()
    assert consents.remaining(session, customer.id, "bill_issued") == 2
    assert [consents.take_consent(session, customer.id, "bill_issued") for _ in range(3)] == [
        True, True, False]
    assert consents.take_consent(session, customer.id, "reminder_overdue") is True
    assert consents.take_consent(session, customer.id, "payment_succeeded") is False
    session.commit()
    assert consents.remaining(session, customer.id, "bill_issued") == 0

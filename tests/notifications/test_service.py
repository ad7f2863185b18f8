"""The notify handlers: channels per preference, consent-gated WeChat with fallback, retries of
transient failures with the outbox's backoff, permanent failures on record, staff by email."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from notifications import consents
from notifications.channels.base import DeliveryResult
from notifications.models import NotificationPreference
from portal.backoffice.models import StaffMember, StaffRole
from portal.kernel import outbox
from portal.kernel.outbox import OutboxMessage, OutboxStatus
from tests.notifications.conftest import attempts, dispatch

PAID = {"account_no": "9900000001", "amount_yuan": "170.48", "order_no": "P202612030001"}


def _notify(session, clock, customer_id, event="payment_succeeded", params=PAID, key="k1"):
    outbox.enqueue(session, clock, "notify", {"customer_id": customer_id, "account_id": None,
                                              "event": event, "params": params},
                   dedup_key=f"notify:{event}:test:{key}")
    session.commit()


def _statuses(session) -> dict[str, OutboxStatus]:
    return dict(session.execute(sa.select(OutboxMessage.dedup_key, OutboxMessage.status)).all())


def test_wechat_is_used_while_a_consent_is_left(app, session, clock, household,
                                                notifiers) -> None:
    customer, _account, _bill = household
    consents.record_consents(session, clock, customer.id, ["payment_succeeded"])
    _notify(session, clock, customer.id, key="1")
    _notify(session, clock, customer.id, key="2")
    dispatch(app, session, clock)
    assert [m.address for m in notifiers["wechat"].sent] == ["o-openid-1"]
    assert notifiers["wechat"].sent[0].fields == {"character_string1": "9900000001",
                                                  "amount2": "170.48",
                                                  "character_string3": "P202612030001"}
    # the second message found no consent left and went by email instead
    assert [m.address for m in notifiers["email"].sent] == ["li@example.cn"]
    assert consents.remaining(session, customer.id, "payment_succeeded") == 0


def test_the_customer_chooses_channels_per_event(app, session, clock, household,
                                                 notifiers) -> None:
    customer, _account, _bill = household
    session.add(NotificationPreference(customer_id=customer.id, event="payment_succeeded",
                                       channels="email", updated_at=clock.now()))
    session.add(NotificationPreference(customer_id=customer.id, event="refund_succeeded",
                                       channels="", updated_at=clock.now()))
    session.commit()
    _notify(session, clock, customer.id)
    _notify(session, clock, customer.id, event="refund_succeeded")
    dispatch(app, session, clock)
    assert [(m.channel, m.event) for r in notifiers.values() for m in r.sent] == [
        ("email", "payment_succeeded")]
    assert "We received" not in notifiers["email"].sent[0].body  # zh_Hans_CN
    assert notifiers["email"].sent[0].subject == "缴费成功"


def test_english_customers_get_english(app, session, clock, household, notifiers) -> None:
    customer, _account, _bill = household
    customer.locale = "en"
    session.commit()
    _notify(session, clock, customer.id)
    dispatch(app, session, clock)
    assert notifiers["sms"].sent[0].body == (
        "Account 9900000001: we received 170.48 yuan (order P202612030001). Thank you.")


def test_transient_failure_is_retried_with_backoff_then_sent(app, session, clock, household,
                                                             notifiers) -> None:
    customer, _account, _bill = household
    session.add(NotificationPreference(customer_id=customer.id, event="payment_succeeded",
                                       channels="sms", updated_at=clock.now()))
    session.commit()
    notifiers["sms"].script.extend([DeliveryResult.transient("HTTP 503"),
                                    DeliveryResult.transient("LimitExceeded")])
    _notify(session, clock, customer.id)
    dispatch(app, session, clock)
    assert notifiers["sms"].sent == []
    row = session.scalar(sa.select(OutboxMessage).where(OutboxMessage.topic == "notify.deliver"))
    assert row.status is OutboxStatus.PENDING
    assert row.available_at == clock.now() + outbox.backoff(1)
    clock.advance(timedelta(seconds=30))
    dispatch(app, session, clock)
    clock.advance(timedelta(minutes=1))
    dispatch(app, session, clock)
    assert len(notifiers["sms"].sent) == 1
    assert [a[2] for a in attempts(session)] == ["transient", "transient", "sent"]
    clock.advance(timedelta(hours=2))
    assert dispatch(app, session, clock) == 0  # never sent twice


def test_permanent_failure_is_recorded_and_not_retried(app, session, clock, household,
                                                       notifiers) -> None:
    customer, _account, _bill = household
    session.add(NotificationPreference(customer_id=customer.id, event="payment_succeeded",
                                       channels="sms", updated_at=clock.now()))
    customer.email = None
    session.commit()
    notifiers["sms"].script.append(
        DeliveryResult.permanent("InvalidParameterValue.IncorrectPhoneNumber"))
    _notify(session, clock, customer.id)
    dispatch(app, session, clock)
    # sms refused for good; its fallbacks: wechat (no consent) and email (no address)
    assert attempts(session) == [("payment_succeeded", "sms", "permanent"),
                                 ("payment_succeeded", "wechat", "skipped"),
                                 ("payment_succeeded", "email", "skipped")]
    statuses = _statuses(session)
    deliver = next(k for k in statuses if k.startswith("deliver:"))
    assert statuses[deliver] is OutboxStatus.DEAD
    clock.advance(timedelta(days=1))
    dispatch(app, session, clock)
    assert len(attempts(session)) == 3


def test_every_customer_linked_to_the_account_is_told(app, session, clock, household,
                                                      notifiers) -> None:
    from portal.accounts.models import AccountLink, Customer

    _customer, account, _bill = household
    other = Customer(phone="13900000002", password_hash="x", created_at=clock.now())
    session.add(other)
    session.flush()
    session.add(AccountLink(customer_id=other.id, account_id=account.id, created_at=clock.now()))
    outbox.enqueue(session, clock, "notify", {"customer_id": None, "account_id": account.id,
                                              "event": "payment_succeeded", "params": PAID},
                   dedup_key="notify:payment_succeeded:order:P1")
    session.commit()
    dispatch(app, session, clock)
    assert sorted(m.address for m in notifiers["sms"].sent) == ["13900000001", "13900000002"]


def test_staff_are_told_by_email_when_they_have_an_address(app, session, clock,
                                                           notifiers) -> None:
    staff = StaffMember(username="collector", display_name="王催收", password_hash="x",
                        role=StaffRole.COLLECTOR, created_at=clock.now(),
                        email="wang@utility.example")
    session.add(staff)
    session.commit()
    outbox.enqueue(session, clock, "notify_staff", {
        "staff_id": staff.id, "event": "plan_defaulted",
        "params": {"plan_id": 7, "account_no": "9900000001", "total_yuan": "1,200.00"}},
        dedup_key="notify_staff:plan_defaulted:plan:7")
    session.commit()
    dispatch(app, session, clock)
    (mail,) = notifiers["email"].sent
    assert mail.address == "wang@utility.example" and "分期方案7" in mail.body


def test_a_transient_wechat_failure_gives_the_consent_back(app, session, clock, household,
                                                           notifiers) -> None:
    customer, _account, _bill = household
    session.add(NotificationPreference(customer_id=customer.id, event="payment_succeeded",
                                       channels="wechat", updated_at=clock.now()))
    consents.record_consents(session, clock, customer.id, ["payment_succeeded"])
    session.commit()
    notifiers["wechat"].script.append(DeliveryResult.transient("errcode -1: system busy"))
    _notify(session, clock, customer.id)
    dispatch(app, session, clock)
    assert consents.remaining(session, customer.id, "payment_succeeded") == 1
    clock.advance(timedelta(minutes=1))
    dispatch(app, session, clock)
    assert [m.address for m in notifiers["wechat"].sent] == ["o-openid-1"]
    assert consents.remaining(session, customer.id, "payment_succeeded") == 0
    assert notifiers["email"].sent == [] and notifiers["sms"].sent == []

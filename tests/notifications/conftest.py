"""A customer linked to an account with an issued bill, and notifiers that record what they are
asked to send (scripted results: transient, permanent, sent)."""

from __future__ import annotations

from collections import deque
from datetime import date

import pytest
import sqlalchemy as sa

from notifications.channels.base import DeliveryResult, Message
from notifications.models import DeliveryAttempt
from portal.accounts.models import AccountLink, Customer
from portal.bills import service as bills
from portal.kernel import outbox
from portal.notifying import NOTIFIERS_KEY
from portal.tasks import OUTBOX_HANDLERS_KEY
from tests import factories


class Recorder:
    """A notifier for one channel: ``script`` holds results to give before plain successes."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.sent: list[Message] = []
        self.script: deque[DeliveryResult] = deque()

    def send(self, message: Message) -> DeliveryResult:
        result = self.script.popleft() if self.script else DeliveryResult.sent("ok")
        if result.status.value == "sent":
            self.sent.append(message)
        return result


@pytest.fixture
def notifiers(app) -> dict[str, Recorder]:
    recorders = {name: Recorder(name) for name in ("wechat", "sms", "email", "console")}
    app.extensions[NOTIFIERS_KEY] = recorders
    return recorders


@pytest.fixture
def household(session, clock):
    """(customer, account, issued bill of 170.48 yuan due 2026-12-25)."""
    account = factories.account(session, clock)
    customer = Customer(phone="13900000001", password_hash="x", created_at=clock.now(),
                        wechat_openid="o-openid-1", email="li@example.cn", locale="zh_Hans_CN")
    session.add(customer)
    session.flush()
    session.add(AccountLink(customer_id=customer.id, account_id=account.id,
                            created_at=clock.now()))
    bill = factories.bill(session, clock, account, due=date(2026, 12, 25))
    bills.issue(session, clock, bill)
    session.commit()
    return customer, account, bill


def dispatch(app, session, clock) -> int:
    return outbox.dispatch(session, clock, app.extensions[OUTBOX_HANDLERS_KEY])


def attempts(session) -> list[tuple[str, str, str]]:
    return [(a.event, a.channel, a.outcome.value) for a in session.scalars(
        sa.select(DeliveryAttempt).order_by(DeliveryAttempt.id))]

"""The notify endpoints, with notifications signed the way each channel signs them (the sandbox
modules' helpers): a valid one is credited once; every broken one is answered with the channel's
status and changes nothing. The channels' own suites test each verification rule in depth."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from payments import service
from payments.channels.base import Scene
from payments.models import PaymentEvent, PaymentOrder
from payments.sandbox import alipay as alipay_sandbox
from payments.sandbox import stripe as stripe_sandbox
from payments.sandbox import wechat as wechat_sandbox
from payments.states import OrderStatus
from portal.bills import service as bills
from portal.bills.models import Bill
from portal.kernel.clock import FrozenClock
from portal.kernel.outbox import OutboxMessage
from portal.ledger import service as ledger
from portal.ledger.models import EntryKind, LedgerEntry
from tests import factories
from tests.payments.conftest import wsgi_server  # noqa: F401  (a fixture)

ACCEPTED = {"wechat": 204, "alipay": 200, "stripe": 200}
N_ORDERS = 200
NOWHERE = "http://127.0.0.1:9"  # parse_notification needs no gateway; nothing listens here


@dataclass(frozen=True)
class Keys:
    wechat: wechat_sandbox.WechatSandboxKeys
    alipay: alipay_sandbox.AlipaySandboxKeys
    stripe: stripe_sandbox.StripeSandboxKeys


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(wechat_sandbox.generate_keys(), alipay_sandbox.generate_keys(),
                stripe_sandbox.generate_keys())


@pytest.fixture(scope="module")
def other_keys() -> Keys:
    """Someone else's keys: a forger's."""
    return Keys(wechat_sandbox.generate_keys(), alipay_sandbox.generate_keys(),
                stripe_sandbox.generate_keys())


@pytest.fixture
def settings_overrides(keys: Keys) -> dict[str, object]:
    return {
        "wechatpay": wechat_sandbox.channel_settings(keys.wechat, f"{NOWHERE}/wechat"),
        "alipay": alipay_sandbox.channel_settings(keys.alipay, f"{NOWHERE}/alipay/gateway.do"),
        "stripe": stripe_sandbox.channel_settings(keys.stripe, f"{NOWHERE}/stripe"),
        "sandbox": True,
    }


def signed(channel: str, keys: Keys, clock: FrozenClock, order_no: str, amount_fen: int,
           **broken: Any) -> tuple[dict[str, str], bytes]:
    """A notification of a successful payment, as the channel would send it now."""
    if channel == "wechat":
        broken.setdefault("timestamp", int(clock.now().timestamp()))
        return wechat_sandbox.signed_notification(
            keys.wechat, out_trade_no=order_no, amount_fen=amount_fen, **broken)
    if channel == "alipay":
        broken.setdefault("notify_time", clock.now())
        return alipay_sandbox.signed_notification(keys.alipay, out_trade_no=order_no,
                                                  amount_fen=amount_fen, **broken)
    return stripe_sandbox.signed_event(keys.stripe, event_type="payment_intent.succeeded",
                                       order_no=order_no, amount_fen=amount_fen, **broken)


@pytest.fixture
def account_id(session: Session, clock: FrozenClock) -> int:
    acct = factories.account(session, clock)
    bill = factories.bill(session, clock, acct, amounts=(8000,), due=date(2026, 12, 25))
    bills.issue(session, clock, bill)
    session.commit()
    return acct.id


def new_order(session: Session, clock: FrozenClock, account_id: int, channel: str,
              topup_fen: int = 0) -> PaymentOrder:
    order = service.create_order(session, clock, account_id=account_id, customer_id=None,
                                 channel=channel, scene=Scene.DESKTOP, bill_ids=None,
                                 topup_fen=topup_fen, lifetime=timedelta(minutes=30),
                                 first_query_after=timedelta(minutes=1))
    session.commit()
    return order


def snapshot(session: Session) -> tuple[list[str], int, int, int]:
    session.expire_all()
    return (list(session.scalars(sa.select(PaymentOrder.status).order_by(PaymentOrder.id))),
            session.scalar(sa.select(sa.func.count(PaymentEvent.id))) or 0,
            session.scalar(sa.select(sa.func.count(LedgerEntry.id))) or 0,
            session.scalar(sa.select(sa.func.count(OutboxMessage.id))) or 0)


def post(client: Any, channel: str, note: tuple[dict[str, str], bytes]) -> Any:
    headers, body = note
    return client.post(f"/notify/{channel}", data=body, headers=headers)


@pytest.mark.parametrize("channel", ["wechat", "alipay", "stripe"])
def test_a_valid_notification_is_credited_once(client, session, clock, keys, account_id, channel):
    order = new_order(session, clock, account_id, channel)
    note = signed(channel, keys, clock, order.order_no, 8000)
    first, again = post(client, channel, note), post(client, channel, note)
    assert first.status_code == again.status_code == ACCEPTED[channel]
    if channel == "alipay":
        assert first.get_data() == b"success"
    session.refresh(order)
    assert order.status == OrderStatus.SUCCEEDED
    assert ledger.owed_by_account(session, [account_id]) == {account_id: 0}
    [event] = session.scalars(sa.select(PaymentEvent)).all()
    assert (event.channel, event.order_no, event.outcome) == (channel, order.order_no, "applied")
    # the same payment told again under a new event id changes nothing either
    assert post(client, channel, signed(channel, keys, clock, order.order_no, 8000)).status_code \
        == ACCEPTED[channel]
    assert len(session.scalars(sa.select(LedgerEntry).where(
        LedgerEntry.kind == EntryKind.PAYMENT)).all()) == 1


def _tamper(note: tuple[dict[str, str], bytes]) -> tuple[dict[str, str], bytes]:
    headers, body = note
    return headers, body.replace(b"8000", b"8001") if b"8000" in body else body + b" "


REJECTED: list[tuple[str, str, Callable[..., tuple[dict[str, str], bytes]], int]] = [
    ("wechat", "forged", lambda s, k, o: s(signing_key_pem=o.wechat.platform_private_key_pem),
     401),
    ("wechat", "tampered", lambda s, k, o: _tamper(s()), 401),
    ("wechat", "wrong APIv3 key", lambda s, k, o: s(apiv3_key=o.wechat.apiv3_key), 500),
    ("wechat", "stale", lambda s, k, o: s(timestamp=s.stamp - 301), 401),
    ("wechat", "wrong app id", lambda s, k, o: s(appid=o.wechat.appid), 400),
    ("wechat", "wrong merchant", lambda s, k, o: s(mchid=o.wechat.mchid), 400),
    ("wechat", "wrong currency", lambda s, k, o: s(currency="USD"), 400),
    ("alipay", "forged", lambda s, k, o: s(signing_key=o.alipay.alipay_private_key), 400),
    ("alipay", "tampered", lambda s, k, o: s(tamper={"total_amount": "0.01"}), 400),
    ("alipay", "stale", lambda s, k, o: s(notify_time=s.now - timedelta(hours=27)), 400),
    ("alipay", "wrong app id", lambda s, k, o: s(app_id=o.alipay.app_id), 400),
    ("alipay", "wrong seller", lambda s, k, o: s(seller_id=o.alipay.seller_id), 400),
    ("alipay", "RSA1 not RSA2", lambda s, k, o: s(sign_type="RSA", digest="SHA-1"), 400),
    ("stripe", "forged", lambda s, k, o: s(secret=o.stripe.webhook_secret), 400),
    ("stripe", "tampered", lambda s, k, o: _tamper(s()), 400),
    ("stripe", "stale", lambda s, k, o: s(timestamp=int(time.time()) - 400), 400),
    ("stripe", "live event for a test key", lambda s, k, o: s(livemode=True), 400),
    ("stripe", "wrong currency", lambda s, k, o: s(currency="usd"), 400),
]


@pytest.mark.parametrize(("channel", "case", "make", "status"), REJECTED,
                         ids=[f"{c}-{case}" for c, case, _m, _s in REJECTED])
def test_a_broken_notification_is_refused_and_changes_nothing(client, session, clock, keys,
                                                               other_keys, account_id, channel,
                                                               case, make, status):
    order = new_order(session, clock, account_id, channel)

    def build(**broken: Any) -> tuple[dict[str, str], bytes]:
        return signed(channel, keys, clock, order.order_no, 8000, **broken)

    build.stamp = int(clock.now().timestamp())  # type: ignore[attr-defined]
    build.now = clock.now()  # type: ignore[attr-defined]
    before = snapshot(session)
    response = post(client, channel, make(build, keys, other_keys))
    assert response.status_code == status, case
    assert snapshot(session) == before


@pytest.mark.parametrize("channel", ["wechat", "alipay", "stripe"])
def test_a_wrong_amount_is_accepted_but_held_for_review(client, session, clock, keys,
                                                        account_id, channel):
    order = new_order(session, clock, account_id, channel)
    response = post(client, channel, signed(channel, keys, clock, order.order_no, 7999))
    assert response.status_code == ACCEPTED[channel]
    session.refresh(order)
    assert order.status == OrderStatus.REVIEW and "amount_mismatch" in (order.review_reason or "")
    assert ledger.owed_by_account(session, [account_id]) == {account_id: 8000}


@pytest.mark.parametrize("channel", ["wechat", "alipay", "stripe"])
def test_an_unknown_order_is_recorded_and_acknowledged(client, session, clock, keys, channel):
    response = post(client, channel, signed(channel, keys, clock, "DF20261203000000deadbeef00",
                                            8000))
    assert response.status_code == ACCEPTED[channel]
    [event] = session.scalars(sa.select(PaymentEvent)).all()
    assert (event.order_no, event.outcome) == ("DF20261203000000deadbeef00", "unknown_order")
    assert session.scalar(sa.select(sa.func.count(LedgerEntry.id))) == 0


def test_only_the_notify_endpoints_skip_csrf(app, client, keys, clock):
    app.config["WTF_CSRF_ENABLED"] = True
    assert client.post("/login", data={"phone": "13800000000", "password": "x"}).status_code \
        == 400
    assert client.post("/notify/wechat", data=b"{}", headers={
        "Content-Type": "application/json"}).status_code == 401  # verified, not CSRF-refused
    assert client.post("/notify/paypal", data=b"{}").status_code == 404


def test_a_disabled_channel_has_no_endpoint(app, client, session):
    del app.extensions["dianfei.payment_channels"]["stripe"]
    assert client.post("/notify/stripe", data=b"{}").status_code == 404


def test_the_wechat_sandbox_pay_page_notifies_us_end_to_end(app, session, clock, keys,
                                                            account_id, wsgi_server):  # noqa: F811
    """The customer confirms on the sandbox's page; the sandbox POSTs the signed notification to
    our notify URL over real HTTP; the bill is paid."""
    import requests

    from portal.payment_channels import channels, notify_url

    portal_url = wsgi_server(lambda _url: app)
    gateway = wsgi_server(lambda url: wechat_sandbox.make_gateway(keys.wechat, url, clock=clock))
    channel = type(channels()["wechat"])(wechat_sandbox.channel_settings(keys.wechat, gateway),
                                         clock)
    order = new_order(session, clock, account_id, "wechat")
    settings = app.extensions["dianfei.settings"].model_copy(update={"public_url": portal_url})
    checkout = service.start_checkout(session, clock, channel, order, description="电费",
                                      notify_url=notify_url(settings, "wechat"),
                                      return_url=f"{portal_url}/pay/return")
    assert checkout.code_url and checkout.code_url.startswith(gateway)
    order_no = order.order_no
    session.commit()  # no transaction of ours holds SQLite's write lock while the portal answers
    reply = requests.post(f"{gateway}/sandbox/pay/{order_no}", params={"outcome": "confirm"},
                          timeout=10).json()
    assert reply["notifications"] == [204]
    session.refresh(order)
    assert order.status == OrderStatus.SUCCEEDED
    assert ledger.owed_by_account(session, [account_id]) == {account_id: 0}


@pytest.mark.parametrize("database_url", [pytest.param("pg", marks=pytest.mark.pg)],
                         indirect=True)
def test_ten_copies_of_each_notification_concurrently_credit_each_order_once(
        app: Flask, session: Session, clock: FrozenClock, keys: Keys) -> None:
    """200 orders over the three channels, 10 copies of each notification, shuffled, sent from
    8 threads at once: every order is credited exactly once and the ledger adds up."""
    accounts = [factories.account(session, clock, account_no=f"99000001{i:02d}",
                                  meter_no=f"9900000012{i:02d}") for i in range(10)]
    for acct in accounts:
        bills.issue(session, clock, factories.bill(session, clock, acct, amounts=(5000,),
                                                   due=date(2026, 12, 25)))
    session.commit()
    channels = ["wechat", "alipay", "stripe"]
    orders = [new_order(session, clock, accounts[i % 10].id, channels[i % 3], topup_fen=100 + i)
              for i in range(N_ORDERS)]
    notes = [(o.channel, signed(o.channel, keys, clock, o.order_no, o.amount_fen))
             for o in orders]
    deliveries = [note for note in notes for _ in range(10)]
    random.Random(4).shuffle(deliveries)  # noqa: S311  (an order of arrival, not a secret)
    session.rollback()

    def deliver(item: tuple[str, tuple[dict[str, str], bytes]]) -> int:
        channel, note = item
        return int(post(app.test_client(), channel, note).status_code)

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(deliver, deliveries))
    assert sorted(set(statuses)) == [200, 204]
    session.expire_all()
    assert set(session.scalars(sa.select(PaymentOrder.status))) == {OrderStatus.SUCCEEDED}
    paid = sum(o.amount_fen for o in orders)
    payments = session.scalars(sa.select(LedgerEntry).where(
        LedgerEntry.kind == EntryKind.PAYMENT)).all()
    assert -sum(p.amount_fen for p in payments) == paid
    per_order: dict[str, int] = {}
    for p in payments:
        order_no = p.ref.split(":")[1]
        per_order[order_no] = per_order.get(order_no, 0) - p.amount_fen
    assert per_order == {o.order_no: o.amount_fen for o in orders}
    # every order covered its account's bill: the bill is paid once, exactly, and the rest of
    # what the account's orders paid is its prepaid balance
    bill_ids = session.scalars(sa.select(Bill.id)).all()
    assert set(ledger.owed_by_bill(session, bill_ids).values()) == {0}
    assert {a.id: ledger.prepaid_balance(session, a.id) for a in accounts} == {
        a.id: sum(o.amount_fen for o in orders if o.account_id == a.id) - 5000
        for a in accounts}
    assert session.scalar(sa.select(sa.func.count(OutboxMessage.id))) == N_ORDERS
    assert session.scalar(sa.select(sa.func.count(PaymentEvent.id))) == N_ORDERS


@pytest.mark.parametrize("database_url", [pytest.param("pg", marks=pytest.mark.pg)],
                         indirect=True)
def test_a_nul_character_in_a_notification_is_for_the_channel_to_judge(client, session, clock,
                                                                       keys, account_id):
    """The app-wide refusal of NUL characters (portal.security) leaves the notify endpoints
    alone: it would read the body as a form before the channel verifies it. Here the NUL was
    put in after signing, so the channel itself refuses it, in its own words."""
    order = new_order(session, clock, account_id, "alipay")
    before = snapshot(session)
    note = signed("alipay", keys, clock, order.order_no, 8000, tamper={"subject": "电\x00费"})
    response = post(client, "alipay", note)
    assert response.status_code == 400 and response.get_data() == b"fail"  # Alipay's answer
    assert snapshot(session) == before

"""Refunds in the back office over HTTP: a collector finds a paid order on the account page and
requests a refund, a supervisor approves it, it goes to the WeChat Pay sandbox over real HTTP on
loopback, and the ledger is debited once. The requester cannot approve; an amount over what is
left is refused with a message; nothing of another district is visible."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from payments import janitor
from payments import service as payments
from payments.channels.base import Scene
from payments.models import PaymentOrder, Refund
from payments.sandbox import wechat as wechat_sandbox
from payments.states import OrderStatus, RefundStatus
from portal.accounts.models import ElectricityAccount
from portal.extensions import db
from portal.kernel.clock import FrozenClock
from portal.ledger.models import EntryKind, LedgerEntry
from portal.payment_channels import CHANNELS_KEY
from tests.helpers import FormClient, text_of
from tests.payments.conftest import wsgi_server  # noqa: F401  (a fixture)

from .staffing import paid_order, requested_refund, staff_login

NOWHERE = "http://127.0.0.1:9"  # the sandbox's payment notification goes nowhere; we query


@pytest.fixture(scope="module")
def keys() -> wechat_sandbox.WechatSandboxKeys:
    return wechat_sandbox.generate_keys()


@pytest.fixture
def gateway(wsgi_server: Callable[..., str], keys: wechat_sandbox.WechatSandboxKeys,  # noqa: F811
            clock: FrozenClock) -> tuple[str, wechat_sandbox.WechatSandbox]:
    made: list[wechat_sandbox.WechatSandbox] = []

    def build(url: str) -> wechat_sandbox.WechatSandbox:
        made.append(wechat_sandbox.make_gateway(keys, url, clock))
        return made[0]

    url = wsgi_server(build)
    return url, made[0]


@pytest.fixture
def settings_overrides(keys: wechat_sandbox.WechatSandboxKeys,
                       gateway: tuple[str, wechat_sandbox.WechatSandbox]) -> dict[str, object]:
    return {"wechatpay": wechat_sandbox.channel_settings(keys, gateway[0])}


def paid_at_the_sandbox(app: Flask, clock: FrozenClock,
                        sandbox: wechat_sandbox.WechatSandbox) -> tuple[int, str]:
    """A resident of 1100000001 pays an 80-yuan top-up through the sandbox; the portal learns
    of it by querying (the return page's way). (account id, order number)"""
    with app.app_context():
        account_id = db.session.scalar(sa.select(ElectricityAccount.id).where(
            ElectricityAccount.account_no == "1100000001"))
        channel = app.extensions[CHANNELS_KEY]["wechat"]
        order = payments.create_order(db.session, clock, account_id=account_id, customer_id=None,
                                      channel="wechat", scene=Scene.DESKTOP,
                                      bill_ids=[], topup_fen=8000,
                                      lifetime=timedelta(minutes=30),
                                      first_query_after=timedelta(minutes=1))
        payments.start_checkout(db.session, clock, channel, order, description="电费充值",
                                notify_url=f"{NOWHERE}/notify/wechat",
                                return_url=f"{NOWHERE}/return")
        sandbox.pay(order.order_no)
        assert payments.refresh_from_channel(db.session, clock, channel, order) == \
            payments.Outcome.APPLIED
        return account_id, order.order_no


def request_form(web: FormClient, page: str, amount: str, reason: str = "搬家，预存退回") -> Any:
    return web.submit(page, {"amount": amount, "reason": reason})


def refund_row(app: Flask, refund_no: str | None = None) -> Refund:
    with app.app_context():
        query = sa.select(Refund).order_by(Refund.id.desc())
        if refund_no:
            query = query.where(Refund.refund_no == refund_no)
        refund = db.session.scalars(query).first()
        assert refund is not None
        db.session.expunge(refund)
        return refund


def test_request_then_a_supervisor_approves_and_the_channel_refunds_once(
        app, web, clock, demo, gateway) -> None:
    _url, sandbox = gateway
    account_id, order_no = paid_at_the_sandbox(app, clock, sandbox)

    # the collector finds the paid order on the account page, with what is refundable
    assert staff_login(web, clock, "bj-collector").status_code == 302
    page = web.get(f"/staff/accounts/{account_id}?lang=en").get_data(as_text=True)
    row = re.search(rf'<tr data-order="{order_no}">(.*?)</tr>', page, re.S).group(1)
    assert "Paid" in row and row.count("¥80.00") == 2
    link = re.search(r'href="(/staff/orders/\d+/refund)"', row).group(1)

    # an amount over what is refundable is refused with a message, and nothing is written
    too_much = request_form(web, link + "?lang=en", "80.01")
    assert too_much.status_code == 409
    assert "larger than what is left to refund" in text_of(too_much)
    for bad in ("abc", "1.234", "0", "-5"):
        response = request_form(web, link + "?lang=en", bad)
        assert response.status_code == 400, bad
    assert "yuan" in text_of(response)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Refund.id))) == 0

    requested = request_form(web, link, "30.00")
    assert requested.status_code == 302
    refund = refund_row(app)
    assert requested.location == f"/staff/refunds/{refund.id}"
    assert (refund.status, refund.amount_fen) == (RefundStatus.REQUESTED, 3000)
    assert refund.requested_at == clock.now() and refund.approved_by_id is None
    # a collector may not approve at all
    assert web.submit(f"/staff/refunds/{refund.id}/approve", {},
                      page=requested.location).status_code == 403
    web.submit("/staff/logout", {}, page="/staff")

    # the supervisor sees it waiting, approves, and it is sent to the channel
    staff_login(web, clock, "bj-supervisor")
    waiting = web.get("/staff/refunds?lang=en").get_data(as_text=True)
    assert f'data-refund="{refund.refund_no}"' in waiting and "东城收费员" in waiting
    approved = web.submit(f"/staff/refunds/{refund.id}/approve", {},
                          page=f"/staff/refunds/{refund.id}")
    assert approved.status_code == 302
    refund = refund_row(app)
    assert refund.status == RefundStatus.PENDING and refund.approved_at == clock.now()
    assert sandbox.refunds[refund.refund_no].amount_fen == 3000
    page = text_of(web.get(f"/staff/refunds/{refund.id}?lang=en"))
    assert "Sent, waiting for the channel" in page and "东城主管" in page

    # the janitor asks the channel, which has settled it: the ledger is debited once
    settings = app.extensions["dianfei.settings"]
    for _ in range(2):
        clock.advance(timedelta(seconds=settings.payments.refund_retry_seconds + 1))
        with app.app_context():
            janitor.run(db.session, clock, app.extensions[CHANNELS_KEY], settings.payments,
                        settings.zone)
    refund = refund_row(app)
    assert refund.status == RefundStatus.SUCCEEDED and sandbox.refund_calls == 1
    with app.app_context():
        entries = db.session.execute(sa.select(LedgerEntry.amount_fen, LedgerEntry.ref).where(
            LedgerEntry.kind == EntryKind.REFUND)).all()
        assert [amount for amount, _ref in entries] == [3000]
        assert entries[0].ref.startswith(f"refund:{refund.refund_no}")
        assert db.session.scalar(sa.select(PaymentOrder.status).where(
            PaymentOrder.order_no == order_no)) == OrderStatus.SUCCEEDED
    assert "Refunded" in text_of(web.get(f"/staff/refunds/{refund.id}?lang=en"))
    listed = web.get("/staff/refunds").get_data(as_text=True)
    assert f'data-refund="{refund.refund_no}" data-status="succeeded"' in listed
    account_page = web.get(f"/staff/accounts/{account_id}?lang=en").get_data(as_text=True)
    assert "¥50.00" in re.search(rf'<tr data-order="{order_no}">(.*?)</tr>', account_page,
                                 re.S).group(1)


def test_the_requester_cannot_approve_their_own_refund(app, web, clock, demo, gateway) -> None:
    with app.app_context():
        order = paid_order(db.session, clock, "1100000001")
        refund = requested_refund(db.session, clock, order, "bj-supervisor")
    staff_login(web, clock, "bj-supervisor")
    page = text_of(web.get(f"/staff/refunds/{refund.id}?lang=en"))
    assert "a second member of staff must approve it" in page
    refused = web.submit(f"/staff/refunds/{refund.id}/approve?lang=en", {},
                         page=f"/staff/refunds/{refund.id}")
    assert refused.status_code == 409
    assert "approved by a second staff member, not by the person who requested it" in \
        text_of(refused)
    again = refund_row(app, refund.refund_no)
    assert (again.status, again.approved_by_id, again.approved_at) == \
        (RefundStatus.REQUESTED, None, None)
    _url, sandbox = gateway
    assert sandbox.refund_calls == 0
    # the admin is a second person: approved; the sandbox does not know this made-up order
    web.submit("/staff/logout", {}, page="/staff")
    staff_login(web, clock, "admin")
    assert web.submit(f"/staff/refunds/{refund.id}/approve", {},
                      page=f"/staff/refunds/{refund.id}").status_code == 302
    done = refund_row(app, refund.refund_no)
    assert done.approved_by_id not in (None, done.requested_by_id)
    assert done.status == RefundStatus.FAILED and sandbox.refund_calls == 1


def test_a_refund_is_approved_once(app, web, clock, demo, gateway) -> None:
    with app.app_context():
        order = paid_order(db.session, clock, "1100000001")
        refund = requested_refund(db.session, clock, order, "bj-collector")
        refund_id = refund.id
        payments.approve_refund(db.session, clock, refund,
                                approved_by=db.session.scalar(sa.text(
                                    "SELECT id FROM staff_members WHERE username = 'admin'")))
        db.session.commit()
    staff_login(web, clock, "bj-supervisor")
    late = web.submit(f"/staff/refunds/{refund_id}/approve?lang=en", {},
                      page=f"/staff/refunds/{refund_id}")
    assert late.status_code == 409 and "Reload the page" in text_of(late)


def test_a_refund_of_a_disabled_channel_is_not_approved(app, web, clock, demo) -> None:
    """No channel is enabled in this app: approving would leave a refund nobody can send."""
    with app.app_context():
        order = paid_order(db.session, clock, "1100000001", channel="alipay")
        refund = requested_refund(db.session, clock, order, "bj-collector")
    staff_login(web, clock, "bj-supervisor")
    refused = web.submit(f"/staff/refunds/{refund.id}/approve?lang=en", {},
                         page=f"/staff/refunds/{refund.id}")
    assert refused.status_code == 409 and "not enabled" in text_of(refused)
    assert refund_row(app, refund.refund_no).status == RefundStatus.REQUESTED


def test_an_unpaid_order_cannot_be_refunded(app, web, clock, demo) -> None:
    with app.app_context():
        order_id = paid_order(db.session, clock, "1100000001").id
        db.session.execute(sa.update(PaymentOrder).where(PaymentOrder.id == order_id)
                           .values(status=OrderStatus.REVIEW))
        db.session.commit()
    staff_login(web, clock, "bj-collector")
    page = f"/staff/orders/{order_id}/refund?lang=en"
    assert "Nothing is left to refund" in text_of(web.get(page))
    refused = web.submit(page, {"amount": "1", "reason": "x"}, page=page)
    assert refused.status_code == 409 and "Only a paid order" in text_of(refused)


def test_lists_stay_in_the_district(app, web, clock, demo) -> None:
    with app.app_context():
        ours = requested_refund(db.session, clock, paid_order(db.session, clock, "3300000001"),
                                "hz-collector").refund_no
        theirs = requested_refund(db.session, clock,
                                  paid_order(db.session, clock, "1100000001"), "bj-collector")
    staff_login(web, clock, "hz-collector")
    listed = web.get("/staff/refunds").get_data(as_text=True)
    assert ours in listed and theirs.refund_no not in listed
    assert web.get(f"/staff/refunds/{theirs.id}").status_code == 404


def test_a_declined_refund_sends_nothing_and_frees_the_amount(app, web, clock, demo,
                                                               gateway) -> None:
    _url, sandbox = gateway
    with app.app_context():
        order = paid_order(db.session, clock, "1100000001")
        order_id = order.id
        refund = requested_refund(db.session, clock, order, "bj-collector", amount_fen=8000)
    staff_login(web, clock, "bj-supervisor")
    detail = f"/staff/refunds/{refund.id}"
    no_reason = web.submit(f"{detail}/decline?lang=en", {"reason": " "}, page=detail)
    assert no_reason.status_code == 400 and "Say why the refund is declined" in \
        text_of(no_reason)
    assert refund_row(app, refund.refund_no).status == RefundStatus.REQUESTED
    declined = web.submit(f"{detail}/decline", {"reason": "客户已改为抵扣下月电费"}, page=detail)
    assert declined.status_code == 302 and declined.location == detail
    done = refund_row(app, refund.refund_no)
    assert (done.status, done.declined_at, done.failure_reason) == \
        (RefundStatus.DECLINED, clock.now(), "客户已改为抵扣下月电费")
    with app.app_context():
        assert done.declined_by_id == db.session.scalar(sa.text(
            "SELECT id FROM staff_members WHERE username = 'bj-supervisor'"))
        assert payments.refundable_fen(db.session, db.session.get(PaymentOrder, order_id)) \
            == 8000
    page = text_of(web.get(f"{detail}?lang=en"))
    assert "Declined" in page and "东城主管" in page and "客户已改为抵扣下月电费" in page
    late = web.submit(f"{detail}/approve?lang=en", {}, page="/staff/refunds")
    assert late.status_code == 409 and sandbox.refund_calls == 0
    again = web.submit(f"{detail}/decline?lang=en", {"reason": "x"}, page="/staff/refunds")
    assert again.status_code == 409
    # the whole amount can be requested again
    assert "¥80.00" in text_of(web.get(f"/staff/orders/{order_id}/refund"))

"""The demo composition: one sandbox process serving the three gateways under prefixes, the
portal in sandbox mode building its channels from the same keys file, and a resident paying a
bill through each channel over real HTTP with the notification arriving on its own."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from werkzeug.datastructures import MultiDict

from payments.models import PaymentOrder
from payments.sandbox import compose
from payments.states import OrderStatus
from portal import payment_channels
from portal.accounts.models import ElectricityAccount
from portal.app import create_app
from portal.extensions import db
from portal.kernel.clock import SystemClock, local_today
from portal.ledger import service as ledger
from tests.conftest import _settings
from tests.helpers import FormClient, csrf_token


def test_keys_are_made_once_and_shared(tmp_path: Path) -> None:
    first = compose.load_or_create_keys(tmp_path)
    again = compose.load_or_create_keys(tmp_path)
    assert again == first and (tmp_path / "keys.json").stat().st_mode & 0o077 == 0
    assert list(tmp_path.iterdir()) == [tmp_path / "keys.json"]
    settings = compose.channel_settings(first, "http://127.0.0.1:5100/")
    assert settings["alipay"].gateway_url == "http://127.0.0.1:5100/alipay/gateway.do"
    assert settings["stripe"].api_base == "http://127.0.0.1:5100/stripe"


def test_a_lost_race_for_the_keys_file_reads_the_winners(tmp_path: Path, monkeypatch) -> None:
    winner = compose.load_or_create_keys(tmp_path / "a")
    real_link = compose.os.link

    def late(source: Any, target: Any) -> None:  # another process got there first
        shutil.copy(tmp_path / "a" / "keys.json", target)
        real_link(source, target)

    monkeypatch.setattr(compose.os, "link", late)
    assert compose.load_or_create_keys(tmp_path / "b") == winner


@pytest.fixture
def demo_db(tmp_path: Path, sqlite_template: Path) -> str:
    target = tmp_path / "demo.sqlite"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


def test_pay_a_demo_bill_through_each_sandbox_channel(tmp_path, demo_db, wsgi_server,
                                                      monkeypatch) -> None:
    from portal import demo

    monkeypatch.setattr(payment_channels, "INSTANCE", tmp_path)
    keys = compose.load_or_create_keys(tmp_path / "sandbox")
    urls: dict[str, str] = {}
    apps: list[Flask] = []

    def portal(portal_url: str) -> Flask:
        urls["sandbox"] = wsgi_server(lambda url: compose.make_app(keys, url, portal_url))
        apps.append(create_app(_settings(demo_db, sandbox=True, sandbox_url=urls["sandbox"],
                                         public_url=portal_url), clock=SystemClock()))
        return apps[0]

    served = wsgi_server(portal)
    app, clock = apps[0], SystemClock()
    with app.app_context():
        demo.seed(db.session, clock, local_today(clock, app.extensions["dianfei.settings"].zone))
        db.session.commit()
        account_id = db.session.scalar(sa.select(ElectricityAccount.id).where(
            ElectricityAccount.account_no == "1100000002"))
    assert requests.get(urls["sandbox"], timeout=5).ok
    web = FormClient(app.test_client())
    assert web.login("13800000002", "dianfei-demo").status_code == 302

    def pay(channel: str, topup: str = "") -> str:
        html = web.get(f"/accounts/{account_id}/pay").get_data(as_text=True)
        bills = re.findall(r'name="bills" value="(\d+)"', html)[:1]
        response = web.client.post(f"/accounts/{account_id}/pay", data=MultiDict(
            [("csrf_token", csrf_token(html)), ("channel", channel), ("topup", topup)]
            + [("bills", b) for b in bills]))
        assert response.status_code == 302, response.get_data(as_text=True)
        return str(response.location.rsplit("/", 1)[-1])

    def status(order_no: str) -> OrderStatus:
        with app.app_context():
            return db.session.scalar(sa.select(PaymentOrder.status).where(
                PaymentOrder.order_no == order_no))

    wechat = pay("wechat")
    sandbox = f"{urls['sandbox']}/wechat"
    reply = requests.post(f"{sandbox}/sandbox/pay/{wechat}", params={"outcome": "confirm"},
                          timeout=10).json()
    assert reply["notifications"] == [204] and status(wechat) == OrderStatus.SUCCEEDED

    alipay = pay("alipay")
    page = web.get(f"/pay/{alipay}").get_data(as_text=True)
    redirect_url = re.search(r'id="continue" href="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    requests.get(redirect_url.replace("&amp;", "&"), allow_redirects=False, timeout=10)
    reply = requests.post(f"{urls['sandbox']}/alipay/sandbox/pay/{alipay}", timeout=10).json()
    assert status(alipay) == OrderStatus.SUCCEEDED, reply

    card = pay("stripe", topup="10")
    page = web.get(f"/pay/{card}").get_data(as_text=True)
    secret = re.search(r'data-client-secret="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    pi_id = secret.split("_secret_")[0]
    done = requests.post(f"{urls['sandbox']}/stripe/pay/{pi_id}", data={
        "action": "confirm", "client_secret": secret,
        "return_url": f"{served}/pay/{card}/return"}, allow_redirects=False, timeout=10)
    assert done.status_code == 303 and status(card) == OrderStatus.SUCCEEDED
    with app.app_context():
        assert ledger.owed_by_account(db.session, [account_id])[account_id] == -1000

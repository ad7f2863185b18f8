"""SMS (Tencent Cloud SendSms, signed by its SDK) and WeChat subscribe messages (wechatpy)
against the notification sandbox over HTTP; transient and permanent refusals told apart."""

from __future__ import annotations

import pytest

from notifications.channels.base import Message, Status
from notifications.channels.console import ConsoleNotifier
from notifications.channels.sms import SmsNotifier, SmsSettings
from notifications.channels.wechat_subscribe import (
    WechatSubscribeNotifier,
    WechatSubscribeSettings,
)
from notifications.sandbox import NotificationSandbox, serving

FIELDS = {"character_string1": "9900000001", "amount2": "170.48", "date3": "2026-12-25"}


@pytest.fixture
def sandbox():
    box = NotificationSandbox()
    with serving(box) as url:
        yield box, url


def _sms(url: str) -> SmsNotifier:
    host = url.removeprefix("http://")
    return SmsNotifier(SmsSettings(secret_id="AKIDsandbox", secret_key="sandbox-key",
                                   sdk_app_id="1400000000", endpoint=host, scheme="http",
                                   templates={"reminder_overdue": "1234567"}))


def _wechat(url: str) -> WechatSubscribeNotifier:
    return WechatSubscribeNotifier(WechatSubscribeSettings(
        appid="wx0000000000sandbox", secret="s", access_token="sandbox-token",
        api_base_url=url, templates={"reminder_overdue": "tmpl-overdue"}))


def test_sms_is_sent_with_the_event_template(sandbox) -> None:
    box, url = sandbox
    result = _sms(url).send(Message("sms", "13900000001", "reminder_overdue", "电费已逾期",
                                    "户号…", fields={"body": "户号9900000001：…"}))
    assert result.status is Status.SENT and result.provider_ref == "sandbox-1"
    assert box.sent == [{"channel": "sms", "to": "+8613900000001", "template_id": "1234567",
                         "params": ["户号9900000001：…"]}]


@pytest.mark.parametrize(("failure", "status"), [
    ("LimitExceeded.PhoneNumberDailyLimit", Status.TRANSIENT),
    ("InternalError.Timeout", Status.TRANSIENT),
    (502, Status.TRANSIENT),
    ("InvalidParameterValue.IncorrectPhoneNumber", Status.PERMANENT),
    ("FailedOperation.TemplateIncorrectOrUnapproved", Status.PERMANENT),
])
def test_sms_refusals(sandbox, failure, status) -> None:
    box, url = sandbox
    box.fail_next("sms", failure)
    result = _sms(url).send(Message("sms", "+8613900000001", "bill_issued", "", "",
                                    fields={"body": "x"}))
    assert result.status is status and box.sent == []


def test_wechat_subscribe_message_is_sent(sandbox) -> None:
    box, url = sandbox
    result = _wechat(url).send(Message("wechat", "o-openid-1", "reminder_overdue", "电费已逾期",
                                       "", fields=FIELDS))
    assert result.status is Status.SENT and result.provider_ref == "1"
    assert box.sent == [{"channel": "wechat", "to": "o-openid-1", "template_id": "tmpl-overdue",
                         "data": {k: {"value": v} for k, v in FIELDS.items()}}]


@pytest.mark.parametrize(("failure", "status"), [
    (-1, Status.TRANSIENT), (45009, Status.TRANSIENT), (503, Status.TRANSIENT),
    (43101, Status.PERMANENT), (40003, Status.PERMANENT), (47003, Status.PERMANENT),
])
def test_wechat_refusals(sandbox, failure, status) -> None:
    box, url = sandbox
    box.fail_next("wechat", failure)
    result = _wechat(url).send(Message("wechat", "o-openid-1", "bill_issued", "", "",
                                       fields=FIELDS))
    assert result.status is status and box.sent == []


def test_console_writes_and_keeps_each_message(capsys) -> None:
    console = ConsoleNotifier()
    result = console.send(Message("sms", "13900000001", "bill_issued", "账单", "正文"))
    assert result.status is Status.SENT
    assert "[sms -> 13900000001] 账单\n正文" in capsys.readouterr().out


def test_the_sandbox_refuses_what_the_real_apis_refuse(sandbox) -> None:
    import requests

    _box, url = sandbox
    no_token = requests.post(f"{url}/cgi-bin/message/subscribe/send", json={}, timeout=5)
    assert no_token.json()["errcode"] == 41001
    unsigned = requests.post(url, json={}, headers={"X-TC-Action": "SendSms"}, timeout=5)
    assert unsigned.json()["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert requests.get(f"{url}/elsewhere", timeout=5).status_code == 404

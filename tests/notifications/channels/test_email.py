"""Email through a real SMTP conversation with a local aiosmtpd sink."""

from __future__ import annotations

import socket
from email import message_from_bytes
from email.header import decode_header, make_header

import pytest
from aiosmtpd.controller import Controller

from notifications.channels.base import Message, Status
from notifications.channels.email import EmailNotifier, EmailSettings

MESSAGE = Message("email", "li@example.cn", "bill_issued", "您2026-11的电费账单",
                  "户号9900000001：2026-11电费170.48元，请于2026-12-25前缴纳。")


class Sink:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.reply: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reply:
            return self.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp():
    sink = Sink()
    port = _free_port()  # aiosmtpd's controller probes the port it was given: not 0
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, EmailSettings(host="127.0.0.1", port=port, sender="noreply@dianfei.example")
    finally:
        controller.stop()


def test_a_message_arrives_with_its_chinese_subject_and_body(smtp) -> None:
    sink, settings = smtp
    result = EmailNotifier(settings).send(MESSAGE)
    assert result.status is Status.SENT and result.provider_ref.endswith("@dianfei.example>")
    ((sender, to, content),) = sink.received
    mail = message_from_bytes(content)
    assert (sender, to) == ("noreply@dianfei.example", ["li@example.cn"])
    assert str(make_header(decode_header(mail["Subject"]))) == MESSAGE.subject
    assert mail.get_payload(decode=True).decode().strip() == MESSAGE.body


def test_a_4xx_reply_is_transient_and_a_5xx_permanent(smtp) -> None:
    sink, settings = smtp
    sink.reply = "451 4.3.0 try again later"
    assert EmailNotifier(settings).send(MESSAGE).status is Status.TRANSIENT
    sink.reply = "550 5.1.1 no such mailbox"
    result = EmailNotifier(settings).send(MESSAGE)
    assert result.status is Status.PERMANENT and "550" in result.error
    assert sink.received == []


def test_no_server_is_transient() -> None:
    result = EmailNotifier(EmailSettings(port=_free_port(), timeout_seconds=2)).send(MESSAGE)
    assert result.status is Status.TRANSIENT

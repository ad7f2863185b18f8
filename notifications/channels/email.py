"""Email over SMTP (``smtplib``): STARTTLS and login when configured.

A 4xx reply, a dropped connection or a timeout is transient; a 5xx reply (unknown mailbox,
refused sender) is permanent.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import make_msgid

from pydantic import BaseModel, Field, SecretStr

from notifications.channels.base import DeliveryResult, Message


class EmailSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = "noreply@dianfei.example"
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)


class EmailNotifier:
    channel = "email"

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings

    def send(self, message: Message) -> DeliveryResult:
        s = self.settings
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = s.sender, message.address, message.subject
        mail["Message-ID"] = make_msgid(domain=s.sender.rpartition("@")[2] or None)
        mail.set_content(message.body)
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds) as smtp:
                if s.starttls:
                    smtp.starttls()
                if s.username and s.password:
                    smtp.login(s.username, s.password.get_secret_value())
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            return _by_code(min(code for code, _ in exc.recipients.values()), str(exc))
        except smtplib.SMTPResponseException as exc:
            return _by_code(exc.smtp_code, f"{exc.smtp_code} {exc.smtp_error!r}")
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            return DeliveryResult.transient(f"{type(exc).__name__}: {exc}")
        return DeliveryResult.sent(mail["Message-ID"])


def _by_code(code: int, error: str) -> DeliveryResult:
    if 400 <= code < 500:
        return DeliveryResult.transient(error)
    return DeliveryResult.permanent(error)

"""The ``Notifier`` interface every channel implements, and what a delivery comes to.

A notifier never raises for a refused or failed send: it says whether retrying can help.
``TRANSIENT`` (a timeout, a 5xx, a rate limit) is retried by the outbox with backoff;
``PERMANENT`` (a bad address, a refused template, no subscription) is recorded and not retried.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class Status(enum.StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Message:
    """One rendered message for one address on one channel.

    ``fields``: the keyed values of a WeChat subscribe message (``thing1``, ``amount2`` ...) or
    the template parameters of an SMS; ``template_id`` names the provider's template."""

    channel: str
    address: str
    event: str
    subject: str
    body: str
    template_id: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    page: str | None = None


@dataclass(frozen=True)
class DeliveryResult:
    status: Status
    provider_ref: str | None = None
    error: str | None = None

    @classmethod
    def sent(cls, provider_ref: str | None = None) -> DeliveryResult:
        return cls(Status.SENT, provider_ref)

    @classmethod
    def transient(cls, error: str) -> DeliveryResult:
        return cls(Status.TRANSIENT, error=error[:500])

    @classmethod
    def permanent(cls, error: str) -> DeliveryResult:
        return cls(Status.PERMANENT, error=error[:500])


class Notifier(Protocol):
    channel: str

    def send(self, message: Message) -> DeliveryResult: ...

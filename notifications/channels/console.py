"""The demo's notifier: writes each message to a stream (stdout by default) and keeps it."""

from __future__ import annotations

import sys
from typing import TextIO

from notifications.channels.base import DeliveryResult, Message


class ConsoleNotifier:
    channel = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.sent: list[Message] = []

    def send(self, message: Message) -> DeliveryResult:
        stream = self.stream or sys.stdout
        stream.write(f"[{message.channel} -> {message.address}] {message.subject}\n"
                     f"{message.body}\n")
        stream.flush()
        self.sent.append(message)
        return DeliveryResult.sent(f"console:{len(self.sent)}")

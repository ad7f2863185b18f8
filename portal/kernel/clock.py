"""An injectable clock: code asks it for the time instead of calling ``datetime.now``.

Timestamps are timezone-aware UTC; business dates (due dates, bill periods, quiet hours) are in
the utility's zone, which the caller passes in.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock for tests and replays: it stands still until told to move."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware datetime")
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._at

    def advance(self, delta: timedelta) -> None:
        self._at += delta

    def set(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware datetime")
        self._at = at.astimezone(UTC)


def local_today(clock: Clock, zone: tzinfo) -> date:
    """Today's date in the utility's zone (a due date passes at local midnight, not UTC's)."""
    return clock.now().astimezone(zone).date()

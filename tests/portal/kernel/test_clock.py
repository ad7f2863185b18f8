from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.kernel.clock import FrozenClock, SystemClock, local_today


def test_frozen_clock_moves_only_when_told() -> None:
    clock = FrozenClock(datetime(2026, 1, 31, 15, 59, tzinfo=UTC))
    assert clock.now() == datetime(2026, 1, 31, 15, 59, tzinfo=UTC)
    clock.advance(timedelta(minutes=2))
    assert clock.now().minute == 1


def test_local_today_uses_the_utility_zone() -> None:
    # 16:01 UTC on Jan 31 is already Feb 1 in Beijing: a due date of Jan 31 has passed there.
    clock = FrozenClock(datetime(2026, 1, 31, 16, 1, tzinfo=UTC))
    assert local_today(clock, ZoneInfo("Asia/Shanghai")).isoformat() == "2026-02-01"
    assert local_today(clock, ZoneInfo("UTC")).isoformat() == "2026-01-31"


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        FrozenClock(datetime(2026, 1, 1))  # noqa: DTZ001
    clock = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError):
        clock.set(datetime(2026, 1, 2))  # noqa: DTZ001


def test_system_clock_is_aware() -> None:
    assert SystemClock().now().tzinfo is UTC

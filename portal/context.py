"""What request handlers, CLI commands and tasks get from the current app: settings and clock."""

from __future__ import annotations

from datetime import date

from flask import current_app

from portal.kernel.clock import Clock, local_today
from portal.settings import Settings

SETTINGS_KEY = "dianfei.settings"
CLOCK_KEY = "dianfei.clock"


def settings() -> Settings:
    return current_app.extensions[SETTINGS_KEY]  # type: ignore[no-any-return]


def clock() -> Clock:
    return current_app.extensions[CLOCK_KEY]  # type: ignore[no-any-return]


def today() -> date:
    return local_today(clock(), settings().zone)

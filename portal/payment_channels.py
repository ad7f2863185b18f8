"""The enabled payment channels of this app, built once from settings in ``create_app``."""

from __future__ import annotations

from flask import Flask, current_app

from payments.channels.base import PaymentChannel
from payments.registry import build_channels
from portal.kernel.clock import Clock
from portal.settings import INSTANCE, Settings

CHANNELS_KEY = "dianfei.payment_channels"


def init_app(app: Flask, settings: Settings, clock: Clock) -> None:
    """Channels from their settings; in sandbox mode (the demo) a channel without settings
    talks to the local sandbox, with the keys in instance/sandbox/ (made on first use)."""
    configured = {"wechatpay": settings.wechatpay, "alipay": settings.alipay,
                  "stripe": settings.stripe}
    if settings.sandbox and not all(configured.values()):
        from payments.sandbox import compose

        keys = compose.load_or_create_keys(INSTANCE / "sandbox")
        defaults = compose.channel_settings(keys, settings.sandbox_url)
        configured = {name: value or defaults[name] for name, value in configured.items()}
    app.extensions[CHANNELS_KEY] = build_channels(clock, **configured)


def channels() -> dict[str, PaymentChannel]:
    return current_app.extensions[CHANNELS_KEY]  # type: ignore[no-any-return]


def notify_url(settings: Settings, channel_name: str) -> str:
    return f"{settings.public_url.rstrip('/')}/notify/{channel_name}"

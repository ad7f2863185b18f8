"""The enabled payment channels of this app, built once from settings in ``create_app``."""

from __future__ import annotations

from flask import Flask, current_app

from payments.channels.base import PaymentChannel
from payments.registry import build_channels
from portal.kernel.clock import Clock
from portal.settings import Settings

CHANNELS_KEY = "dianfei.payment_channels"


def init_app(app: Flask, settings: Settings, clock: Clock) -> None:
    app.extensions[CHANNELS_KEY] = build_channels(
        clock, wechatpay=settings.wechatpay, alipay=settings.alipay, stripe=settings.stripe)


def channels() -> dict[str, PaymentChannel]:
    return current_app.extensions[CHANNELS_KEY]  # type: ignore[no-any-return]


def notify_url(settings: Settings, channel_name: str) -> str:
    return f"{settings.public_url.rstrip('/')}/notify/{channel_name}"

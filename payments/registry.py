"""The enabled channels, built from their settings: a channel is enabled exactly when its settings
exist. Channel modules are imported only when enabled (Alipay's SDK is large)."""

from __future__ import annotations

from typing import Any

from payments.channels.base import PaymentChannel
from portal.kernel.clock import Clock

CHANNEL_NAMES = ("wechat", "alipay", "stripe")


def build_channels(clock: Clock, *, wechatpay: Any = None, alipay: Any = None,
                   stripe: Any = None) -> dict[str, PaymentChannel]:
    """``{name: channel}`` for each channel whose settings are given, in display order. The
    clock is the one notification timestamps are checked against (Stripe checks its own)."""
    channels: dict[str, PaymentChannel] = {}
    if wechatpay is not None:
        from payments.channels.wechat import WechatPayChannel

        channels["wechat"] = WechatPayChannel(wechatpay, clock)
    if alipay is not None:
        from payments.channels.alipay import AlipayChannel

        channels["alipay"] = AlipayChannel(alipay, clock=clock)
    if stripe is not None:
        from payments.channels.stripe import StripeChannel

        channels["stripe"] = StripeChannel(stripe)
    return channels

"""The enabled channels, built from their settings: a channel is enabled exactly when its settings
exist. Channel modules are imported only when enabled (Alipay's SDK is large)."""

from __future__ import annotations

from typing import Any

from payments.channels.base import PaymentChannel

CHANNEL_NAMES = ("wechat", "alipay", "stripe")


def build_channels(*, wechatpay: Any = None, alipay: Any = None,
                   stripe: Any = None) -> dict[str, PaymentChannel]:
    """``{name: channel}`` for each channel whose settings are given, in display order."""
    channels: dict[str, PaymentChannel] = {}
    if wechatpay is not None:
        from payments.channels.wechat import WechatPayChannel

        channels["wechat"] = WechatPayChannel(wechatpay)
    if alipay is not None:
        from payments.channels.alipay import AlipayChannel

        channels["alipay"] = AlipayChannel(alipay)
    if stripe is not None:
        from payments.channels.stripe import StripeChannel

        channels["stripe"] = StripeChannel(stripe)
    return channels

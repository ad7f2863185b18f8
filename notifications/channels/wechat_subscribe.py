"""WeChat mini-program subscribe messages (订阅消息) through wechatpy
(``client.wxa.send_subscribe_message``, ``POST cgi-bin/message/subscribe/send``).

The caller takes a consent first (``notifications.consents.take_consent``): one consent, one
message. Point ``api_base_url`` at ``notifications.sandbox`` for the demo and tests.

errcode -1 (system busy), 45009 (rate limit), 42001/40001 (token) and network errors are
transient; 43101 (the user has not subscribed), 40003 (bad openid), 40037 / 47003 (template or
data refused) and the rest are permanent.
"""

from __future__ import annotations

from pydantic import BaseModel, SecretStr
from requests import RequestException
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from notifications.channels.base import DeliveryResult, Message

TRANSIENT_ERRCODES = frozenset({-1, 40001, 42001, 45009, 45011})


class WechatSubscribeSettings(BaseModel):
    appid: str
    secret: SecretStr
    api_base_url: str = "https://api.weixin.qq.com/"
    access_token: SecretStr | None = None  # a fixed token (sandbox); otherwise wechatpy fetches
    page: str = "pages/bills/index"
    # event -> the template id picked in the mini-program's console; events not listed use
    # "<event>"
    templates: dict[str, str] = {}


class WechatSubscribeNotifier:
    channel = "wechat"

    def __init__(self, settings: WechatSubscribeSettings) -> None:
        self.settings = settings
        token = settings.access_token.get_secret_value() if settings.access_token else None
        self.client = WeChatClient(settings.appid, settings.secret.get_secret_value(),
                                   access_token=token)
        base = settings.api_base_url.rstrip("/") + "/"
        self.client.API_BASE_URL = base + "cgi-bin/"
        self.client.wxa.API_BASE_URL = base

    def send(self, message: Message) -> DeliveryResult:
        data = {key: {"value": value} for key, value in message.fields.items()}
        template = self.settings.templates.get(message.event, message.event)
        try:
            result = self.client.wxa.send_subscribe_message(
                message.address, template, data, page=message.page or self.settings.page)
        except WeChatClientException as exc:
            error = f"errcode {exc.errcode}: {exc.errmsg}"
            if exc.errcode is None or exc.errcode in TRANSIENT_ERRCODES:  # None: HTTP error
                return DeliveryResult.transient(error)
            return DeliveryResult.permanent(error)
        except RequestException as exc:
            return DeliveryResult.transient(f"{type(exc).__name__}: {exc}")
        return DeliveryResult.sent(str(result.get("msgid", "")) or None)

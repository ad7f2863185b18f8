"""Mini-program sign-in: exchange a ``wx.login`` code for the user's openid with wechatpy's
``code_to_session`` (code2Session). The ``session_key`` it also returns is dropped here: nothing
after this module ever sees it."""

from __future__ import annotations

from dataclasses import dataclass

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

PRODUCTION_API = "https://api.weixin.qq.com/"
# code2Session's answers about the code itself (not about us or WeChat being down): invalid code,
# code already used, user refused as high-risk.
CODE_ERRORS = frozenset({40029, 40163, 40226})


class MiniProgramSettings(BaseModel):
    """The mini-program's credentials (DIANFEI_MINIPROGRAM__APPID, __SECRET, __API_BASE_URL).
    Its app id must be the one WeChat Pay JSAPI orders are made for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    appid: str = Field(min_length=1)
    secret: SecretStr
    api_base_url: str = PRODUCTION_API  # the sandbox in the demo and in tests
    timeout_seconds: float = Field(default=5.0, gt=0, le=30)


@dataclass(frozen=True)
class WxIdentity:
    openid: str
    unionid: str | None


class CodeRejected(Exception):
    """WeChat refused the code (invalid, used, risky): the mini-program must call wx.login again."""


class LoginUnavailable(Exception):
    """WeChat did not answer, or refused our credentials: nothing the user can fix."""


def code_to_session(settings: MiniProgramSettings, code: str) -> WxIdentity:
    base = settings.api_base_url.rstrip("/") + "/"
    # code2Session needs no access token; one given here keeps wechatpy from fetching one first.
    client = WeChatClient(settings.appid, settings.secret.get_secret_value(),
                          access_token="unused-by-code2session",  # noqa: S106
                          timeout=settings.timeout_seconds, auto_retry=False)
    # wechatpy builds URLs from class attributes; both the client's and the wxa API's matter.
    client.API_BASE_URL = base + "cgi-bin/"
    client.wxa.API_BASE_URL = base
    try:
        data = client.wxa.code_to_session(code)
    except WeChatClientException as exc:
        if exc.errcode in CODE_ERRORS:
            raise CodeRejected(str(exc.errcode)) from exc
        raise LoginUnavailable(f"code2Session: {exc.errcode} {exc.errmsg}") from exc
    except requests.RequestException as exc:
        raise LoginUnavailable(f"code2Session: {type(exc).__name__}") from exc
    openid = data.get("openid") if isinstance(data, dict) else None
    if not isinstance(openid, str) or not 1 <= len(openid) <= 64:
        raise LoginUnavailable("code2Session answered without an openid")
    unionid = data.get("unionid")
    return WxIdentity(openid, unionid if isinstance(unionid, str) and unionid else None)

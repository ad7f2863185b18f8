"""A local stand-in for WeChat's mini-program login API (``sns/jscode2session``), so the real
wechatpy client code runs in the demo and in tests. In memory, never for production.

A sandbox ``wx.login`` code is ``<user>.<anything>`` (``[A-Za-z0-9_-]``, at most 64 characters):
every code of one ``<user>`` gives the same openid, as one WeChat user always gets the same
openid from one mini-program; each code works once, as on WeChat (errcode 40163 the second time).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import Iterable
from typing import Any

from werkzeug.wrappers import Request, Response

from payments.sandbox.wechat import WechatSandboxKeys

CODE_RE = re.compile(r"([A-Za-z0-9_-]{1,32})\.[A-Za-z0-9_-]{1,31}")


def app_secret(keys: WechatSandboxKeys) -> str:
    """The mini-program's AppSecret, derived from the sandbox keys (one keys file serves all)."""
    return hmac.new(keys.apiv3_key.encode(), b"miniprogram-app-secret", hashlib.sha256
                    ).hexdigest()[:32]


def openid_for(keys: WechatSandboxKeys, user: str) -> str:
    """The openid the sandbox gives ``user`` (28 characters, like WeChat's)."""
    return "oSbx" + hashlib.sha256(f"{keys.appid}:{user}".encode()).hexdigest()[:24]


def code_for(user: str) -> str:
    """A fresh ``wx.login`` code for ``user``, as the mini-program would get one."""
    return f"{user}.{secrets.token_hex(8)}"


class WxaGateway:
    def __init__(self, keys: WechatSandboxKeys) -> None:
        self.keys = keys
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        if request.path.rstrip("/") != "/sns/jscode2session":
            data: dict[str, Any] = {"errcode": 404, "errmsg": "not found"}
        else:
            data = self.code_to_session(request.args.to_dict())
        body = json.dumps(data).encode()
        return Response(body, mimetype="application/json")(environ, start_response)

    def code_to_session(self, args: dict[str, str]) -> dict[str, Any]:
        if args.get("appid") != self.keys.appid:
            return {"errcode": 40013, "errmsg": "invalid appid"}
        if not hmac.compare_digest(args.get("secret", ""), app_secret(self.keys)):
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        if args.get("grant_type") != "authorization_code":
            return {"errcode": 40002, "errmsg": "invalid grant_type"}
        code = args.get("js_code", "")
        match = CODE_RE.fullmatch(code)
        if match is None:
            return {"errcode": 40029, "errmsg": "invalid code"}
        with self._lock:
            if code in self._used:
                return {"errcode": 40163, "errmsg": "code been used"}
            self._used.add(code)
        return {"openid": openid_for(self.keys, match.group(1)),
                "session_key": secrets.token_urlsafe(16)}


def make_gateway(keys: WechatSandboxKeys) -> WxaGateway:
    return WxaGateway(keys)

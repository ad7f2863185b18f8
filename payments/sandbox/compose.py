"""All sandbox gateways in one WSGI app (``/wechat``, ``/alipay``, ``/stripe``), with keys made
once and kept in ``instance/sandbox/keys.json`` (never committed), and the channel settings that
point the portal at them. ``python -m payments.sandbox`` serves it; the portal with
``DIANFEI_SANDBOX=1`` builds its channels from the same keys file (demo only: production
settings refuse the sandbox)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Response

from payments.sandbox import alipay, stripe, wechat, wxa

KEYS_FILE = "keys.json"


@dataclass(frozen=True)
class SandboxKeys:
    wechat: wechat.WechatSandboxKeys
    alipay: alipay.AlipaySandboxKeys
    stripe: stripe.StripeSandboxKeys

    def to_json(self) -> str:
        return json.dumps({"wechat": asdict(self.wechat), "alipay": self.alipay.model_dump(),
                           "stripe": asdict(self.stripe)})

    @classmethod
    def from_json(cls, text: str) -> SandboxKeys:
        data = json.loads(text)
        return cls(wechat.WechatSandboxKeys(**data["wechat"]),
                   alipay.AlipaySandboxKeys.model_validate(data["alipay"]),
                   stripe.StripeSandboxKeys(**data["stripe"]))


def load_or_create_keys(directory: Path) -> SandboxKeys:
    """The keys in ``directory``, made on first use. Several processes may start at once (web,
    worker, sandbox): the file is created exclusively, so all of them end up with one set."""
    path = directory / KEYS_FILE
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        keys = SandboxKeys(wechat.generate_keys(), alipay.generate_keys(), stripe.generate_keys())
        temporary = directory / f".{KEYS_FILE}.{os.getpid()}"
        temporary.write_text(keys.to_json(), encoding="utf-8")
        temporary.chmod(0o600)
        try:
            os.link(temporary, path)  # atomic, fails if another process was first
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return SandboxKeys.from_json(path.read_text(encoding="utf-8"))


def channel_settings(keys: SandboxKeys, sandbox_url: str) -> dict[str, Any]:
    """``Settings`` fields (wechatpay, alipay, stripe) for the sandbox at ``sandbox_url``."""
    base = sandbox_url.rstrip("/")
    return {"wechatpay": wechat.channel_settings(keys.wechat, f"{base}/wechat"),
            "alipay": alipay.channel_settings(keys.alipay, f"{base}/alipay/gateway.do"),
            "stripe": stripe.channel_settings(keys.stripe, f"{base}/stripe")}


def miniprogram_settings(keys: SandboxKeys, sandbox_url: str) -> dict[str, str]:
    """``Settings.miniprogram`` fields for the sandbox's mini-program login at ``sandbox_url``
    (the same app id as the sandbox WeChat Pay merchant, as JSAPI payments require)."""
    return {"appid": keys.wechat.appid, "secret": wxa.app_secret(keys.wechat),
            "api_base_url": f"{sandbox_url.rstrip('/')}/wxa/"}


def make_app(keys: SandboxKeys, sandbox_url: str, portal_url: str) -> DispatcherMiddleware:
    """One WSGI app serving the three gateways under their prefixes."""
    base = sandbox_url.rstrip("/")
    portal = portal_url.rstrip("/")
    index = Response("Dianfei payment sandbox: /wechat /alipay /stripe /wxa\n",
                     mimetype="text/plain")
    return DispatcherMiddleware(index, {
        "/wechat": wechat.make_gateway(keys.wechat, f"{base}/wechat"),
        "/alipay": alipay.make_gateway(keys.alipay, f"{base}/alipay"),
        "/stripe": stripe.make_gateway(keys.stripe, f"{base}/stripe",
                                       webhook_url=f"{portal}/notify/stripe"),
        "/wxa": wxa.make_gateway(keys.wechat),  # mini-program login (code2Session)
    })

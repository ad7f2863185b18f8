"""Typed settings, built once from ``DIANFEI_*`` environment variables.

``DIANFEI_ENV=production`` refuses to start without a real secret key and a server database, and
says what is missing. Nothing here is read at import time: ``Settings()`` reads the environment
when ``create_app`` (or a test) builds it.
"""

from __future__ import annotations

import ipaddress
from decimal import Decimal
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from payments.channels.alipay import AlipaySettings
from payments.channels.stripe import StripeSettings
from payments.channels.wechat import WechatPaySettings
from payments.janitor import JanitorPolicy
from portal.plans.policy import PlanPolicy

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"
MIN_SECRET_LENGTH = 32


def is_sandbox_url(url: str) -> bool:
    """A gateway production must not talk to: plain HTTP, loopback, or a sandbox host."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost" or host.endswith(".localhost")
    return (parts.scheme != "https" or loopback or "sandbox" in host
            or host.endswith("alipaydev.com"))


class SettingsError(RuntimeError):
    """The settings cannot run the portal; the message lists what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIANFEI_", extra="ignore", frozen=True,
                                      env_nested_delimiter="__")

    env: Literal["development", "production", "test"] = "development"
    secret_key: SecretStr | None = None
    database_url: str = f"sqlite:///{INSTANCE / 'dianfei.sqlite'}"
    broker_url: str = f"sqla+sqlite:///{INSTANCE / 'celery-broker.sqlite'}"
    ratelimit_storage_url: str = "memory://"
    login_rate_limit: str = "10 per minute;50 per hour"
    link_rate_limit: str = "20 per hour"
    timezone: str = "Asia/Shanghai"
    default_locale: Literal["zh_Hans_CN", "en"] = "zh_Hans_CN"
    session_cookie_secure: bool | None = None  # default: on in production
    session_minutes: int = Field(default=120, ge=5, le=24 * 60)
    trusted_proxy_hops: int = Field(default=0, ge=0, le=5)  # reverse proxies in front of us
    staff_idle_minutes: int = Field(default=30, ge=1, le=240)  # staff signed out when idle
    staff_session_hours: int = Field(default=10, ge=1, le=24)  # and after this, whatever happens
    # The bill run: a period's bill is due on this day of the following month.
    bill_due_day: int = Field(default=25, ge=1, le=28)
    # Bill verification (核): hold a bill whose kWh fall below / rise above these multiples of the
    # trailing 6-month average, once the account has this many billed months among those six.
    review_low_ratio: Decimal = Field(default=Decimal("0.3"), ge=0)
    review_high_ratio: Decimal = Field(default=Decimal("3"), gt=1)
    review_min_history_months: int = Field(default=3, ge=1, le=6)
    # The billing system: the embedded engine, or an external one over docs/billing-api.md when
    # a URL is set (a token must come with it).
    billing_url: str | None = None
    billing_token: SecretStr | None = None
    billing_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    billing_retries: int = Field(default=2, ge=0, le=10)

    @model_validator(mode="after")
    def _billing_is_complete(self) -> Settings:
        if self.billing_url and not self.billing_token:
            raise SettingsError("DIANFEI_BILLING_URL is set without DIANFEI_BILLING_TOKEN; set "
                                "both to use an external billing system, or neither")
        if self.billing_url and self.env == "production" and \
                not self.billing_url.startswith("https://"):
            raise SettingsError("production refuses DIANFEI_BILLING_URL without https://")
        return self
    # Payments: a channel is enabled exactly when its settings exist (DIANFEI_WECHATPAY__MCHID=..)
    wechatpay: WechatPaySettings | None = None
    alipay: AlipaySettings | None = None
    stripe: StripeSettings | None = None
    payments: JanitorPolicy = JanitorPolicy()  # order lifetime, queries: DIANFEI_PAYMENTS__*
    public_url: str = "http://127.0.0.1:5000"  # how channels reach us: notify and return URLs
    sandbox: bool = False  # demo: channels without settings point at payments.sandbox gateways
    sandbox_url: str = "http://127.0.0.1:5100"  # where ``python -m payments.sandbox`` serves
    plans: PlanPolicy = PlanPolicy()  # payment plan rules: DIANFEI_PLANS__* (plans/policy.py)

    @property
    def plan_attachment_dir(self) -> Path:
        return self.plans.attachment_dir or INSTANCE / "attachments" / "plans"

    # Disputes: the SLA in Chinese working days (holidays skipped, adjusted weekends counted),
    # and the customer's attachments (images or PDF), kept outside the web root
    dispute_sla_working_days: int = Field(default=5, ge=1, le=60)
    dispute_attachment_max_bytes: int = Field(default=3 * 1024 * 1024, ge=1024,
                                              le=3 * 1024 * 1024)
    dispute_attachments_dir: Path = INSTANCE / "attachments" / "disputes"

    @model_validator(mode="after")
    def _production_is_complete(self) -> Settings:
        if self.env != "production":
            return self
        missing = []
        key = self.secret_key.get_secret_value() if self.secret_key else ""
        if len(key) < MIN_SECRET_LENGTH:
            missing.append(f"DIANFEI_SECRET_KEY (a random string of at least "
                           f"{MIN_SECRET_LENGTH} characters)")
        if self.database_url.startswith("sqlite"):
            missing.append("DIANFEI_DATABASE_URL (a PostgreSQL URL, not SQLite)")
        if self.broker_url.startswith("sqla+"):
            missing.append("DIANFEI_BROKER_URL (a Redis URL, not the embedded SQLite broker)")
        if self.ratelimit_storage_url.startswith("memory"):
            missing.append("DIANFEI_RATELIMIT_STORAGE_URL (Redis, shared by every web process)")
        if self.sandbox:
            missing.append("DIANFEI_SANDBOX=0 (the payment sandbox is for the demo only)")
        gateways = {"DIANFEI_WECHATPAY__GATEWAY_URL": self.wechatpay and self.wechatpay.gateway_url,
                    "DIANFEI_ALIPAY__GATEWAY_URL": self.alipay and self.alipay.gateway_url,
                    "DIANFEI_STRIPE__API_BASE": self.stripe and self.stripe.api_base,
                    "DIANFEI_STRIPE__JS_URL": self.stripe and self.stripe.js_url}
        missing += [f"{name} (a real HTTPS gateway, not a sandbox or loopback one)"
                    for name, url in gateways.items() if url and is_sandbox_url(url)]
        if self.wechatpay is not None and self.wechatpay.sandbox:
            missing.append("DIANFEI_WECHATPAY__SANDBOX=0")
        if self.stripe is not None and not (
                self.stripe.livemode and self.stripe.publishable_key.startswith("pk_live_")):
            missing.append("DIANFEI_STRIPE__SECRET_KEY and __PUBLISHABLE_KEY (live keys, not "
                           "test keys)")
        if (self.wechatpay or self.alipay or self.stripe) and not self.public_url.startswith(
                "https://"):
            missing.append("DIANFEI_PUBLIC_URL (the portal's public https:// address, for "
                           "payment notifications)")
        if missing:
            raise SettingsError("production mode refuses to start; set " + "; ".join(missing))
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def cookie_secure(self) -> bool:
        if self.session_cookie_secure is not None:
            return self.session_cookie_secure
        return self.env == "production"

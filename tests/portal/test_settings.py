import pytest

from portal.settings import Settings, SettingsError


def test_production_refuses_missing_secrets(monkeypatch) -> None:
    monkeypatch.setenv("DIANFEI_ENV", "production")
    with pytest.raises(SettingsError) as info:
        Settings()
    message = str(info.value)
    assert "DIANFEI_SECRET_KEY" in message
    assert "DIANFEI_DATABASE_URL" in message
    assert "DIANFEI_BROKER_URL" in message


def test_production_refuses_a_short_key(monkeypatch) -> None:
    monkeypatch.setenv("DIANFEI_ENV", "production")
    monkeypatch.setenv("DIANFEI_SECRET_KEY", "short")
    monkeypatch.setenv("DIANFEI_DATABASE_URL", "postgresql+psycopg://db/dianfei")
    monkeypatch.setenv("DIANFEI_BROKER_URL", "redis://cache:6379/0")
    monkeypatch.setenv("DIANFEI_RATELIMIT_STORAGE_URL", "redis://cache:6379/1")
    with pytest.raises(SettingsError, match="at least 32 characters"):
        Settings()
    monkeypatch.setenv("DIANFEI_SECRET_KEY", "x" * 40)
    settings = Settings()
    assert settings.cookie_secure is True


def test_environment_is_typed(monkeypatch) -> None:
    monkeypatch.setenv("DIANFEI_SESSION_MINUTES", "30")
    monkeypatch.setenv("DIANFEI_DATABASE_URL", "sqlite:////tmp/x.sqlite")
    settings = Settings()
    assert settings.session_minutes == 30
    assert settings.database_url == "sqlite:////tmp/x.sqlite"
    assert settings.cookie_secure is False
    assert str(settings.zone) == "Asia/Shanghai"
    monkeypatch.setenv("DIANFEI_SESSION_MINUTES", "many")
    with pytest.raises(ValueError, match="session_minutes"):
        Settings()


def test_an_external_billing_system_needs_its_token() -> None:
    with pytest.raises(SettingsError, match="DIANFEI_BILLING_TOKEN"):
        Settings(billing_url="https://billing.example.com")
    assert Settings(billing_url="http://127.0.0.1:9", billing_token="t").billing_retries == 2


def test_production_talks_to_billing_over_https_only() -> None:
    with pytest.raises(SettingsError, match="https"):
        Settings(env="production", billing_url="http://billing.example.com", billing_token="t")
def _production(monkeypatch) -> None:
    monkeypatch.setenv("DIANFEI_ENV", "production")
    monkeypatch.setenv("DIANFEI_SECRET_KEY", "x" * 40)
    monkeypatch.setenv("DIANFEI_DATABASE_URL", "postgresql+psycopg://db/dianfei")
    monkeypatch.setenv("DIANFEI_BROKER_URL", "redis://cache:6379/0")
    monkeypatch.setenv("DIANFEI_RATELIMIT_STORAGE_URL", "redis://cache:6379/1")


def test_payment_channels_come_from_nested_environment_variables(monkeypatch) -> None:
    from payments.sandbox import stripe as stripe_sandbox

    keys = stripe_sandbox.generate_keys()
    monkeypatch.setenv("DIANFEI_STRIPE__SECRET_KEY", keys.secret_key)
    monkeypatch.setenv("DIANFEI_STRIPE__PUBLISHABLE_KEY", keys.publishable_key)
    monkeypatch.setenv("DIANFEI_STRIPE__WEBHOOK_SECRET", keys.webhook_secret)
    monkeypatch.setenv("DIANFEI_PAYMENTS__QUERY_BACKOFF_SECONDS", "[30, 90]")
    settings = Settings()
    assert settings.stripe is not None and settings.stripe.webhook_secret == keys.webhook_secret
    assert settings.wechatpay is None and settings.alipay is None  # not enabled
    assert settings.payments.query_backoff_seconds == (30, 90)


def test_production_refuses_the_payment_sandbox(monkeypatch) -> None:
    from payments.sandbox import alipay as alipay_sandbox
    from payments.sandbox import stripe as stripe_sandbox
    from payments.sandbox import wechat as wechat_sandbox

    _production(monkeypatch)
    stripe_keys, alipay_keys = stripe_sandbox.generate_keys(), alipay_sandbox.generate_keys()
    wechat = wechat_sandbox.channel_settings(wechat_sandbox.generate_keys(),
                                             "http://127.0.0.1:5100/wechat")
    with pytest.raises(SettingsError) as info:
        Settings(sandbox=True, wechatpay=wechat,
                 alipay=alipay_sandbox.channel_settings(alipay_keys,
                                                        "https://openapi.alipaydev.com/gateway.do"),
                 stripe=stripe_sandbox.channel_settings(stripe_keys, "https://localhost:5100"))
    message = str(info.value)
    for name in ("DIANFEI_SANDBOX", "DIANFEI_WECHATPAY__GATEWAY_URL", "DIANFEI_WECHATPAY__SANDBOX",
                 "DIANFEI_ALIPAY__GATEWAY_URL", "DIANFEI_STRIPE__API_BASE",
                 "DIANFEI_STRIPE__JS_URL", "DIANFEI_STRIPE__SECRET_KEY", "DIANFEI_PUBLIC_URL"):
        assert name in message
    live = stripe_sandbox.StripeSandboxKeys(secret_key="sk_live_abc", publishable_key="pk_live_abc",
                                            webhook_secret="whsec_abc")
    settings = Settings(public_url="https://dianfei.example",
                        stripe=stripe_sandbox.channel_settings(live, "https://api.stripe.com")
                        .model_copy(update={"js_url": "https://js.stripe.com/v3/"}))
    assert settings.stripe is not None and settings.stripe.livemode

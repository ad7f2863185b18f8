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

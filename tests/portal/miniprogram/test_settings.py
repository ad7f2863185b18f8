"""Production refuses a sandbox mini-program login API, as it refuses sandbox payment gateways."""

from __future__ import annotations

import pytest

from portal.settings import Settings, SettingsError

PRODUCTION = {"env": "production", "secret_key": "x" * 40,
              "database_url": "postgresql+psycopg://db/dianfei", "broker_url": "redis://r/0",
              "ratelimit_storage_url": "redis://r/1"}


@pytest.mark.parametrize("url", ["http://127.0.0.1:5100/wxa/", "https://sandbox.example/"])
def test_production_refuses_a_sandbox_login_api(url):
    with pytest.raises(SettingsError, match="DIANFEI_MINIPROGRAM__API_BASE_URL"):
        Settings(**PRODUCTION, miniprogram={"appid": "wx1", "secret": "s",
                                            "api_base_url": url})


def test_production_accepts_wechats_api():
    settings = Settings(**PRODUCTION, miniprogram={"appid": "wx1", "secret": "s"})
    assert settings.miniprogram is not None
    assert settings.miniprogram.api_base_url == "https://api.weixin.qq.com/"

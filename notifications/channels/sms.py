"""SMS through Tencent Cloud SMS (``SendSms``, API 2021-01-11) with its SDK, which signs requests
(TC3-HMAC-SHA256). Point ``endpoint`` at ``notifications.sandbox`` for the demo and tests.

Each event has a template registered with the provider; its parameters are the message's
``fields`` in order. Error codes starting ``InternalError``/``LimitExceeded``/
``RequestLimitExceeded`` and network errors are transient; everything else the provider refuses
(a bad number, an unapproved template, a blacklisted phone) is permanent.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models, sms_client

from notifications.channels.base import DeliveryResult, Message

TRANSIENT_PREFIXES = ("InternalError", "LimitExceeded", "RequestLimitExceeded",
                      "ClientNetworkError", "ServerNetworkError")


class SmsSettings(BaseModel):
    secret_id: str
    secret_key: SecretStr
    sdk_app_id: str
    sign_name: str = "电费"
    region: str = "ap-guangzhou"
    endpoint: str = "sms.tencentcloudapi.com"
    scheme: str = "https"
    timeout_seconds: int = Field(default=10, ge=1, le=60)
    # event -> the provider's template id; events not listed use "<event>"
    templates: dict[str, str] = {}


class SmsNotifier:
    channel = "sms"

    def __init__(self, settings: SmsSettings) -> None:
        self.settings = settings
        http = HttpProfile(protocol=settings.scheme, endpoint=settings.endpoint,
                           reqTimeout=settings.timeout_seconds)
        self.client = sms_client.SmsClient(
            credential.Credential(settings.secret_id, settings.secret_key.get_secret_value()),
            settings.region, ClientProfile(httpProfile=http))

    def send(self, message: Message) -> DeliveryResult:
        request = models.SendSmsRequest()
        request.PhoneNumberSet = [_e164(message.address)]
        request.SmsSdkAppId = self.settings.sdk_app_id
        request.SignName = self.settings.sign_name
        request.TemplateId = self.settings.templates.get(message.event, message.event)
        request.TemplateParamSet = list(message.fields.values())
        try:
            response = self.client.SendSms(request)
        except TencentCloudSDKException as exc:
            return _by_code(exc.get_code() or "", f"{exc.get_code()}: {exc.get_message()}")
        except OSError as exc:
            return DeliveryResult.transient(f"{type(exc).__name__}: {exc}")
        status = response.SendStatusSet[0]
        if status.Code == "Ok":
            return DeliveryResult.sent(status.SerialNo)
        return _by_code(status.Code, f"{status.Code}: {status.Message}")


def _e164(phone: str) -> str:
    return phone if phone.startswith("+") else f"+86{phone}"


def _by_code(code: str, error: str) -> DeliveryResult:
    if code.startswith(TRANSIENT_PREFIXES):
        return DeliveryResult.transient(error)
    return DeliveryResult.permanent(error)

"""Typed settings of notifications and reminders (``DIANFEI_NOTIFICATIONS__*``,
``DIANFEI_REMINDERS__*``), kept free of models so ``portal.settings`` can import them."""

from __future__ import annotations

from datetime import datetime, time, timedelta, tzinfo

from pydantic import BaseModel, Field, model_validator

from notifications.channels.email import EmailSettings
from notifications.channels.sms import SmsSettings
from notifications.channels.wechat_subscribe import WechatSubscribeSettings


class NotificationSettings(BaseModel):
    """A channel is enabled when its settings exist; ``console`` (the demo) stands in for every
    channel that has none. ``default_channels``: the order for events without a reminder step,
    and the fallbacks when a customer's first channel cannot be used."""

    default_channels: tuple[str, ...] = ("wechat", "sms", "email")
    console: bool = False
    wechat: WechatSubscribeSettings | None = None
    sms: SmsSettings | None = None
    email: EmailSettings | None = None


BILL_ISSUED = "bill_issued"
REMINDER_EVENTS = ("reminder_due_soon", "reminder_due_today", "reminder_overdue",
                   "reminder_final_notice")
FINAL_NOTICE = "reminder_final_notice"


class LadderStep(BaseModel):
    event: str
    days: int = 0  # relative to the due date (bill_issued: to the issue day)
    channels: tuple[str, ...] = ("wechat", "sms")


DEFAULT_LADDER = (
    LadderStep(event=BILL_ISSUED, days=0),
    LadderStep(event="reminder_due_soon", days=-3),
    LadderStep(event="reminder_due_today", days=0),
    LadderStep(event="reminder_overdue", days=7),
    LadderStep(event=FINAL_NOTICE, days=15, channels=("sms", "wechat", "email")),
)


class ReminderPolicy(BaseModel):
    """``DIANFEI_REMINDERS__*``: the ladder (a JSON list of steps), quiet hours in the utility's
    zone, and the warning a final notice gives before disconnection."""

    ladder: tuple[LadderStep, ...] = DEFAULT_LADDER
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    final_notice_warning_days: int = Field(default=7, ge=7)
    catch_up_days: int = Field(default=7, ge=1)  # how late the last steps may still be sent
    # payment and refund receipts: successes this recent are looked at by each sweep
    receipt_lookback_hours: int = Field(default=24, ge=1, le=24 * 7)

    @model_validator(mode="after")
    def _ordered(self) -> ReminderPolicy:
        steps = [s for s in self.ladder if s.event != BILL_ISSUED]
        if [s.days for s in steps] != sorted({s.days for s in steps}):
            raise ValueError("reminder steps must be in order of days, one step per day")
        unknown = {s.event for s in self.ladder} - {BILL_ISSUED, *REMINDER_EVENTS}
        if unknown:
            raise ValueError(f"unknown reminder events: {', '.join(sorted(unknown))}")
        return self

    def step(self, event: str) -> LadderStep | None:
        return next((s for s in self.ladder if s.event == event), None)

    def in_quiet_hours(self, at: datetime, zone: tzinfo) -> bool:
        local = at.astimezone(zone).time()
        if self.quiet_start > self.quiet_end:  # across midnight
            return local >= self.quiet_start or local < self.quiet_end
        return self.quiet_start <= local < self.quiet_end

    def not_before(self, at: datetime, zone: tzinfo) -> datetime:
        """``at``, or the end of the quiet hours it falls in (a message due at 22:00 waits till
        08:00 the next morning)."""
        if not self.in_quiet_hours(at, zone):
            return at
        local = at.astimezone(zone)
        morning = datetime.combine(local.date(), self.quiet_end, zone)
        if morning <= local:
            morning = datetime.combine(local.date() + timedelta(days=1), self.quiet_end, zone)
        return morning.astimezone(at.tzinfo)



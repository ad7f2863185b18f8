"""Delivering the ``notify`` and ``notify_staff`` topics (``notifications/contract.md``).

Two outbox steps, both retried by ``portal.kernel.outbox`` (no second retry engine):

1. ``notify`` / ``notify_staff`` (``fan_out``): who is told (the customer, or every customer
   linked to the account), on which channels (their preference for the event, else the reminder
   step's channels, else the default order), then one ``notify.deliver`` row per recipient and
   channel, each with its own dedup key, in the same transaction that marks the message sent.
2. ``notify.deliver`` (``deliver``): holds a reminder till the quiet hours end (a retry too:
   ``outbox.Deferred``), re-checks a reminder's bill still owes, picks the address,
   takes a WeChat consent, renders the template in the recipient's language, sends, and records
   the attempt. A channel that cannot be used (no address, no consent left) or refuses for good
   falls back to the next channel of the row's fallback list; a transient failure raises, so the
   outbox retries the row with backoff; when nothing is left, the row goes dead
   (``PermanentFailure``) with every attempt on record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from notifications import consents
from notifications.channels.base import DeliveryResult, Message, Notifier, Status
from notifications.config import FINAL_NOTICE, NotificationSettings, ReminderPolicy
from notifications.models import DeliveryAttempt, NotificationPreference, Outcome
from notifications.policy import owed_beyond_holds
from notifications.render import render
from portal.accounts.models import AccountLink, Customer, ElectricityAccount
from portal.backoffice.models import StaffMember
from portal.bills.models import Bill, BillStatus
from portal.kernel import outbox
from portal.kernel.clock import Clock
from portal.kernel.money import format_yuan

TOPIC = "notify"
STAFF_TOPIC = "notify_staff"
DELIVER_TOPIC = "notify.deliver"
CHANNELS = ("wechat", "sms", "email", "console")
EVENTS = ("bill_issued", "reminder_due_soon", "reminder_due_today", "reminder_overdue",
          "reminder_final_notice", "payment_succeeded", "refund_succeeded", "reading_accepted",
          "reading_rejected", "dispute_info_requested", "dispute_message", "dispute_resolved",
          "plan_proposed", "plan_approved", "plan_declined", "plan_installment_due",
          "plan_defaulted")


class TransientDelivery(Exception):
    """A channel failed in a way that may pass: the outbox retries the row with backoff."""


class Notifications:
    """What the two handlers need: the session, clock, settings and one notifier per channel."""

    def __init__(self, session: Session, clock: Clock, settings: NotificationSettings,
                 policy: ReminderPolicy, zone: tzinfo, default_locale: str,
                 notifiers: Mapping[str, Notifier],
                 receipt_params: Callable[[Session, dict[str, Any]], dict[str, Any]]) -> None:
        self.session, self.clock, self.settings = session, clock, settings
        self.policy, self.zone, self.default_locale = policy, zone, default_locale
        # a receipt's params from its order or refund: the portal's, which knows the payments
        self.notifiers, self.receipt_params = notifiers, receipt_params

    # --- step 1 --------------------------------------------------------------------------------
    def fan_out(self, payload: dict[str, Any]) -> int:
        """``notify``: one ``notify.deliver`` row per customer and channel; how many."""
        event = payload["event"]
        params = dict(payload.get("params") or {})
        bill_id = payload.get("bill_id")
        if bill_id is not None:
            filled = self._bill_params(int(bill_id), event)
            if filled is None:
                self._record(_key(payload), event, "none", Outcome.CANCELLED,
                             customer_id=payload.get("customer_id"),
                             error="the bill no longer owes anything beyond its holds")
                return 0
            params = {**filled, **params}
        elif payload.get("order_id") is not None or payload.get("refund_id") is not None:
            params = {**self.receipt_params(self.session, payload), **params}
        if payload.get("customer_id") is not None:
            customers = [int(payload["customer_id"])]
        else:
            customers = list(self.session.scalars(
                sa.select(AccountLink.customer_id)
                .where(AccountLink.account_id == payload["account_id"])
                .order_by(AccountLink.customer_id)))
        chosen = self._preferences(customers, event)
        step = self.policy.step(event)
        default = step.channels if step is not None else self.settings.default_channels
        written = 0
        for customer_id in customers:
            channels = chosen.get(customer_id, default)
            written += self._enqueue(payload, event, params, channels, bill_id,
                                     customer_id=customer_id)
        return written

    def fan_out_staff(self, payload: dict[str, Any]) -> int:
        """``notify_staff``: email to the staff member when they have an address."""
        return self._enqueue(payload, payload["event"], dict(payload.get("params") or {}),
                             ("email",), None, staff_id=int(payload["staff_id"]))

    def _enqueue(self, payload: dict[str, Any], event: str, params: dict[str, Any],
                 channels: Sequence[str], bill_id: Any, *, customer_id: int | None = None,
                 staff_id: int | None = None) -> int:
        parent = _key(payload)
        who = f"c{customer_id}" if customer_id is not None else f"s{staff_id}"
        fallback = [c for c in self.settings.default_channels if c not in channels]
        written = 0
        for n, channel in enumerate(channels):
            key = f"deliver:{parent}:{who}:{channel}"
            row = {"key": key, "event": event, "params": params, "channel": channel,
                   "fallback": fallback if n == 0 else [], "bill_id": bill_id,
                   "customer_id": customer_id, "staff_id": staff_id}
            written += outbox.enqueue(self.session, self.clock, DELIVER_TOPIC, row, key[:200])
        return written

    def _preferences(self, customers: list[int], event: str) -> dict[int, tuple[str, ...]]:
        rows = self.session.execute(
            sa.select(NotificationPreference.customer_id, NotificationPreference.channels)
            .where(NotificationPreference.customer_id.in_(customers),
                   NotificationPreference.event == event))
        return {cid: tuple(c for c in channels.split(",") if c) for cid, channels in rows}

    def _bill_params(self, bill_id: int, event: str) -> dict[str, Any] | None:
        """A reminder's params from the bill as it is now; None when it no longer owes
        anything beyond what holds cover (paid, or covered by a dispute or plan)."""
        owed = owed_beyond_holds(sa.select(sa.literal(bill_id)).scalar_subquery())
        row = self.session.execute(
            sa.select(ElectricityAccount.account_no, Bill.period, Bill.due_date, owed.c.owed_fen)
            .join(Bill, Bill.account_id == ElectricityAccount.id)
            .join(owed, owed.c.bill_id == Bill.id)
            .where(Bill.id == bill_id, Bill.status == BillStatus.ISSUED)).first()
        if row is None:
            return None
        params = {"account_no": row.account_no, "period": row.period,
                  "amount_yuan": format_yuan(int(row.owed_fen)),
                  "due_date": row.due_date.isoformat()}
        if event == FINAL_NOTICE:
            today = self.clock.now().astimezone(self.zone).date()
            params["disconnect_after"] = (
                today + timedelta(days=self.policy.final_notice_warning_days)).isoformat()
        return params

    # --- step 2 --------------------------------------------------------------------------------
    def deliver(self, payload: dict[str, Any]) -> None:
        """``notify.deliver``: send on the row's channel or its fallbacks; see the module."""
        key, event = payload["key"], payload["event"]
        if self.policy.step(event) is not None:  # a reminder (or its retry) due at night
            now = self.clock.now()
            morning = self.policy.not_before(now, self.zone)
            if morning > now:
                raise outbox.Deferred(morning)
        customer_id: int | None = payload.get("customer_id")
        staff_id: int | None = payload.get("staff_id")
        params = payload["params"]
        if payload.get("bill_id") is not None:
            current = self._bill_params(int(payload["bill_id"]), event)
            if current is None:
                self._record(key, event, payload["channel"], Outcome.CANCELLED,
                             customer_id=customer_id, staff_id=staff_id,
                             error="the bill no longer owes anything beyond its holds")
                return
            params = {**params, "amount_yuan": current["amount_yuan"]}
        recipient: Customer | StaffMember | None = (
            self.session.get(Customer, customer_id) if customer_id is not None
            else self.session.get(StaffMember, staff_id))
        if recipient is None:
            raise outbox.PermanentFailure(f"{key}: recipient not found")
        locale = getattr(recipient, "locale", None) or self.default_locale
        for channel in [payload["channel"], *payload.get("fallback", [])]:
            notifier = self.notifiers.get(channel)
            address = _address(recipient, channel)
            if notifier is None or not address:
                why = "channel not configured" if notifier is None else "no address"
                self._record(key, event, channel, Outcome.SKIPPED, customer_id=customer_id,
                             staff_id=staff_id, error=why)
                continue
            consent_of = customer_id if channel == "wechat" else None
            if consent_of is not None and not consents.take_consent(self.session, consent_of,
                                                                    event):
                self._record(key, event, channel, Outcome.SKIPPED, customer_id=customer_id,
                             staff_id=staff_id, address=address,
                             error="no subscribe-message consent left")
                continue
            text = render(event, channel, locale, params)
            result = notifier.send(Message(channel, address, event, text.subject, text.body,
                                           fields=text.fields))
            self._record(key, event, channel, Outcome(result.status.value),
                         customer_id=customer_id, staff_id=staff_id, address=address,
                         result=result)
            if result.status is Status.SENT:
                return
            if result.status is Status.TRANSIENT:
                if consent_of is not None:  # the consent was not used: give it back
                    consents.record_consents(self.session, self.clock, consent_of, [event])
                raise TransientDelivery(f"{channel}: {result.error}")
        raise outbox.PermanentFailure(f"{key}: not delivered on any channel")

    def _record(self, key: str, event: str, channel: str, outcome: Outcome, *,
                customer_id: int | None = None, staff_id: int | None = None,
                address: str | None = None, result: DeliveryResult | None = None,
                error: str | None = None) -> None:
        self.session.add(DeliveryAttempt(
            dedup_key=key[:200], event=event, channel=channel, customer_id=customer_id,
            staff_id=staff_id, address=address, outcome=outcome,
            provider_ref=result.provider_ref if result else None,
            error=(result.error if result else error), at=self.clock.now()))


def _address(recipient: Customer | StaffMember, channel: str) -> str | None:
    if channel == "email":
        return recipient.email
    if isinstance(recipient, StaffMember):
        return None
    if channel == "wechat":
        return recipient.wechat_openid
    return recipient.phone  # sms, console


def _key(payload: dict[str, Any]) -> str:
    """A stable key for a ``notify`` payload (the handler does not see the row's dedup key):
    the same message fans out to the same delivery keys however often it is handled."""
    for ref in ("bill_id", "order_id", "refund_id"):
        if payload.get(ref) is not None:
            return f"{payload['event']}:{ref.removesuffix('_id')}:{payload[ref]}"
    digest = hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode(),
                          usedforsecurity=False).hexdigest()[:16]
    return f"{payload['event']}:{digest}"

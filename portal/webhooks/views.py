"""Payment notifications: POST /notify/wechat, /notify/alipay, /notify/stripe.

The only CSRF-exempt routes (the channel signs the body instead) and not behind the sign-in
rate limits. Each request: the channel verifies the raw body and headers (an
``InvalidNotification`` is answered with the status it carries and changes nothing); the verified
event is recorded and its trade applied once, all or nothing, and committed BEFORE we answer (see
``payments.service.handle_notification``); then the channel's own acknowledgement is returned.
A database error answers 500, so the channel retries.

A verified notification for an order we do not have is recorded (outcome ``unknown_order``) and
acknowledged on every channel: our orders are committed before any channel hears of them, so a
retry cannot make the order appear; the recorded event is what reconciliation (长款 -> 补单 or
refund) works from, while retries would only hide it in noise for 24 hours (WeChat, Alipay) or
3 days (Stripe).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, request

from payments import service
from payments.channels.base import InvalidNotification
from portal import context
from portal.extensions import csrf, db, limiter
from portal.payment_channels import channels

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__)
csrf.exempt(bp)
limiter.exempt(bp)  # no limit applies here; a throttled channel would only retry later


@bp.post("/notify/<any(wechat, alipay, stripe):channel_name>")
def notify(channel_name: str) -> Response:
    channel = channels().get(channel_name)
    if channel is None:
        abort(404)
    body = request.get_data(cache=False)
    try:
        notification = channel.parse_notification(dict(request.headers), body)
    except InvalidNotification as exc:
        log.warning("%s notification rejected (%s): %s", channel_name, exc.status, exc.reason)
        status, headers, reply = channel.ack(False)
        return Response(reply, status=exc.status, headers=dict(headers))
    outcome = service.handle_notification(db.session, context.clock(), channel_name,
                                          notification, context.settings().zone)
    db.session.commit()
    log.info("%s notification %s: %s", channel_name, notification.event_id, outcome.value)
    status, headers, reply = channel.ack(True)
    return Response(reply, status=status, headers=dict(headers))

"""Web push for player access (issue 7): subscriptions, VAPID keys, sending, the page's push API and
the `addip-push` workflow's steps (addip_push.py, loaded through chalicelib/registry.py)."""

from __future__ import annotations

from chalicelib.push.api import MAX_PUSH_BODY_BYTES, PushApi
from chalicelib.push.models import PushRecord
from chalicelib.push.sender import Outcome, Sent, WebPushSender
from chalicelib.push.service import FLOW_ID, Delivery, PushService
from chalicelib.push.store import MAX_DEVICES, Preference, PushStore, Subscription, Waiting, device_id
from chalicelib.push.subscription import SubscriptionRules, parse_subscription
from chalicelib.push.vapid import VapidKeys, VapidSource

__all__ = [
    "FLOW_ID",
    "MAX_DEVICES",
    "MAX_PUSH_BODY_BYTES",
    "Delivery",
    "Outcome",
    "Preference",
    "PushApi",
    "PushRecord",
    "PushService",
    "PushStore",
    "Sent",
    "Subscription",
    "SubscriptionRules",
    "VapidKeys",
    "VapidSource",
    "Waiting",
    "WebPushSender",
    "device_id",
    "parse_subscription",
]

"""Sending one web push: pywebpush encrypts the payload (aes128gcm, RFC 8291) and signs VAPID (RFC 8292).

pywebpush (with aiohttp, requests and py_vapid) is imported inside `send`, never at module import: only
the steps Lambda sends, and the interaction path must not pay its ~230 ms import (feasibility.md §5, §10).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from chalicelib.push.store import Subscription
from chalicelib.push.vapid import VapidKeys

__all__ = ["Outcome", "Sent", "WebPushSender"]

log = logging.getLogger(__name__)

# The push service says the subscription no longer exists (RFC 8030 §7.3; 404 from some services).
_GONE: Final = frozenset({404, 410})


class Outcome(StrEnum):
    SENT = "sent"
    GONE = "gone"  # delete the subscription
    FAILED = "failed"  # the push service refused or was unreachable; keep the subscription


@dataclass(frozen=True)
class Sent:
    outcome: Outcome
    status: int | None = None


class WebPushSender:
    """Encrypts and posts pushes; `timeout` bounds each push service request."""

    def __init__(self, *, subject: str, timeout: float = 5.0) -> None:
        self._subject = subject
        self._timeout = timeout

    def send(self, sub: Subscription, payload: bytes, keys: VapidKeys, *, ttl: int, urgency: str) -> Sent:
        from py_vapid import Vapid  # type: ignore[import-untyped]  # no stubs or py.typed
        from pywebpush import WebPushException, webpush  # type: ignore[import-untyped]

        try:
            resp = webpush(
                sub.info(),
                data=payload,
                vapid_private_key=Vapid.from_raw(keys.private.encode()),
                vapid_claims={"sub": self._subject},  # pywebpush adds aud (the endpoint's origin) and exp
                content_encoding="aes128gcm",
                ttl=ttl,
                headers={"Urgency": urgency},
                timeout=self._timeout,
            )
        except WebPushException as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in _GONE:
                return Sent(Outcome.GONE, status)
            log.warning("push to device %s failed: %s", sub.device, status or exc)
            return Sent(Outcome.FAILED, status)
        except Exception as exc:  # requests' connection errors, a key the encryption rejects
            log.warning("push to device %s failed: %s", sub.device, type(exc).__name__)
            return Sent(Outcome.FAILED)
        return Sent(Outcome.SENT, getattr(resp, "status_code", None))

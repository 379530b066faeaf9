"""The web-push REST API the IPAuth page uses, independent of any web framework (like access/api.py):
`GET /push/key`, `POST /push/subscribe`, `DELETE /push/subscribe` and their CORS preflight.

The same conventions as the IPAuth API: CORS for the site's origin only (other origins are refused
before anything is read), `Cache-Control: no-store`, JSON errors `{"error": {"code", "message"}}`,
4 KiB bodies, and a per-address rate limit counted in DynamoDB.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from chalicelib.access import Limit, RateLimiter
from chalicelib.access.site import SiteResponder
from chalicelib.errors import (
    BadRequest,
    BotError,
    PayloadTooLarge,
)
from chalicelib.http import HttpReply
from chalicelib.push.service import PushService

__all__ = ["MAX_PUSH_BODY_BYTES", "PushApi"]

log = logging.getLogger(__name__)

MAX_PUSH_BODY_BYTES: Final = 4096
SUBSCRIBE_PER_ADDRESS: Final = Limit("push-addr", 20, 600)


class PushApi:
    """Answers the page's push requests."""

    def __init__(
        self,
        service: Callable[[], PushService],
        limiter: RateLimiter,
        *,
        site_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._service = service  # built on first use: the preflight needs none of it
        self._limiter = limiter
        self._site = SiteResponder(site_url, "push api")
        self._clock = clock

    def preflight(self, headers: Mapping[str, str]) -> HttpReply:
        """CORS preflight: allowed for the site's origin only."""
        return self._site.preflight(headers, "GET, POST, DELETE, OPTIONS")

    def key(self, headers: Mapping[str, str]) -> HttpReply:
        """The deployment's VAPID public key (the page's applicationServerKey)."""
        try:
            self._site.check_origin(headers)
            public = self._service().public_key()
        except BotError as exc:
            return self._site.error(exc, headers)
        return self._site.ok({"public_key": public}, headers)

    def subscribe(self, body: bytes | str | None, headers: Mapping[str, str], source_ip: str) -> HttpReply:
        """`{"token", "subscription", "preference"}`: store this browser for the link's member."""
        try:
            data = self._body(body, headers, source_ip, {"token", "subscription", "preference"})
            token = data["token"]
            if not isinstance(token, str) or not 1 <= len(token) <= 2048:
                raise BadRequest("token must be the link's token")
            sub = self._service().subscribe(
                token, data["subscription"], data["preference"], int(self._clock())
            )
        except BotError as exc:
            return self._site.error(exc, headers)
        answer = {
            "subscribed": True,
            "preference": sub.preference.value,
            "tenant": sub.tenant_id,
            "confirmed": sub.confirmed,  # false: the member confirms it with /addip's button in Discord
        }
        return self._site.ok(answer, headers)

    def unsubscribe(self, body: bytes | str | None, headers: Mapping[str, str], source_ip: str) -> HttpReply:
        """`{"endpoint", "auth"}`: forget this browser everywhere."""
        try:
            data = self._body(body, headers, source_ip, {"endpoint", "auth"})
            deleted = self._service().unsubscribe(data["endpoint"], data["auth"])
        except BotError as exc:
            return self._site.error(exc, headers)
        return self._site.ok({"deleted": deleted}, headers)

    # -- helpers ---------------------------------------------------------------------------------

    def _body(
        self, body: bytes | str | None, headers: Mapping[str, str], source_ip: str, fields: set[str]
    ) -> dict[str, Any]:
        self._site.check_origin(headers)
        raw = body.encode() if isinstance(body, str) else (body or b"")
        if len(raw) > MAX_PUSH_BODY_BYTES:
            raise PayloadTooLarge(f"the body is larger than {MAX_PUSH_BODY_BYTES} bytes")
        self._limiter.hit_address(SUBSCRIBE_PER_ADDRESS, source_ip or "-", int(self._clock()))
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest("the body must be JSON") from exc
        if not isinstance(data, dict) or set(data) != fields:
            raise BadRequest(f"the body must have exactly: {', '.join(sorted(fields))}")
        return data

"""The IPAuth REST API behind the page, independent of any web framework (like the interactions
endpoint, lesson L3): `POST /ipauth/authorize`, `GET /ipauth/check`, and their CORS preflight.

The address is the source IP API Gateway saw (`requestContext.identity.sourceIp`), passed in by the
route; headers such as X-Forwarded-For are never read. Only the site's origin gets CORS headers, every
answer is `no-store`, and every error is JSON `{"error": {"code", "message"}}`, rendered in `_error`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from chalicelib.access.ratelimit import Limit, RateLimiter
from chalicelib.access.service import AccessService, Authorized
from chalicelib.access.site import SiteResponder
from chalicelib.access.tokens import MAX_TOKEN_CHARS
from chalicelib.errors import (
    BadRequest,
    BotError,
    PayloadTooLarge,
)
from chalicelib.http import HttpReply

__all__ = ["MAX_API_BODY_BYTES", "IpAuthApi"]

log = logging.getLogger(__name__)

MAX_API_BODY_BYTES: Final = 4096
# Per address: the page makes one authorize and one check per visit. Per link: a person retrying.
AUTHORIZE_PER_ADDRESS: Final = Limit("ipauth-addr", 20, 600)
AUTHORIZE_PER_TOKEN: Final = Limit("ipauth-token", 10, 600)
CHECK_PER_ADDRESS: Final = Limit("ipauth-check", 60, 600)


class IpAuthApi:
    """Answers the page's requests; `source_ip` always comes from the gateway's request context."""

    def __init__(
        self,
        service: AccessService,
        limiter: RateLimiter,
        *,
        site_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._service = service
        self._limiter = limiter
        self._site = SiteResponder(site_url, "ipauth")
        self._clock = clock

    # -- routes ----------------------------------------------------------------------------------

    def preflight(self, headers: Mapping[str, str]) -> HttpReply:
        """CORS preflight: allowed for the site's origin only."""
        return self._site.preflight(headers, "GET, POST, OPTIONS")

    def authorize(self, body: bytes | str | None, headers: Mapping[str, str], source_ip: str) -> HttpReply:
        """Use the link in `body` (`{"token": "..."}`) to let `source_ip` in."""
        try:
            self._site.check_origin(headers)
            now = int(self._clock())
            raw = body.encode() if isinstance(body, str) else (body or b"")
            if len(raw) > MAX_API_BODY_BYTES:
                raise PayloadTooLarge(f"the body is larger than {MAX_API_BODY_BYTES} bytes")
            self._limiter.hit_address(AUTHORIZE_PER_ADDRESS, source_ip, now)
            token = _token_of(raw)
            self._limiter.hit(AUTHORIZE_PER_TOKEN, hashlib.sha256(token.encode()).hexdigest()[:32], now)
            done = self._service.authorize(token, source_ip, now)
        except BotError as exc:
            return self._site.error(exc, headers)
        return self._site.ok(_authorized(done), headers)

    def check(self, headers: Mapping[str, str], source_ip: str) -> HttpReply:
        """Is the caller's address let in, until when, and by which communities (tenants)?"""
        try:
            self._site.check_origin(headers)
            now = int(self._clock())
            self._limiter.hit_address(CHECK_PER_ADDRESS, source_ip, now)
            address, grants = self._service.check(source_ip, now)
        except BotError as exc:
            return self._site.error(exc, headers)
        body = {
            "address": address,
            "authorised": bool(grants),
            "grants": [
                {"tenant": g.tenant_id, "kind": g.kind.value, "expires_at": g.expires_at} for g in grants
            ],
        }
        return self._site.ok(body, headers)


def _token_of(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest('the body must be JSON: {"token": "…"}') from exc
    if not isinstance(data, dict) or set(data) != {"token"}:
        raise BadRequest('the body must be exactly {"token": "…"}')
    token = data["token"]
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise BadRequest("token must be a non-empty string from the link")
    return token


def _authorized(done: Authorized) -> dict[str, Any]:
    g = done.grant
    return {
        "status": done.status,
        "address": g.address,
        "kind": g.kind.value,
        "tenant": g.tenant_id,
        "granted_at": g.granted_at,
        "expires_at": g.expires_at,
        "games": list(done.games),
        "running": list(done.running),
        "replaced": list(done.replaced),
    }

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
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from chalicelib.access.ratelimit import Limit, RateLimiter
from chalicelib.access.service import AccessService, Authorized
from chalicelib.access.tokens import MAX_TOKEN_CHARS
from chalicelib.errors import (
    BadRequest,
    BotError,
    LinkRejected,
    PayloadTooLarge,
    RequestError,
    TooManyRequests,
)

__all__ = ["MAX_API_BODY_BYTES", "ApiReply", "IpAuthApi"]

log = logging.getLogger(__name__)

MAX_API_BODY_BYTES: Final = 4096
# Per address: the page makes one authorize and one check per visit. Per link: a person retrying.
AUTHORIZE_PER_ADDRESS: Final = Limit("ipauth-addr", 20, 600)
AUTHORIZE_PER_TOKEN: Final = Limit("ipauth-token", 10, 600)
CHECK_PER_ADDRESS: Final = Limit("ipauth-check", 60, 600)
_BASE_HEADERS: Final = {
    "Content-Type": "application/json",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Vary": "Origin",
}


@dataclass(frozen=True)
class ApiReply:
    """What the web adapter sends back."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> str:
        return json.dumps(self.body, separators=(",", ":"))


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL ("" for an empty one)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _code(exc: RequestError) -> str:
    if isinstance(exc, LinkRejected):
        return exc.code
    return {400: "bad_request", 403: "forbidden", 413: "too_large", 429: "rate_limited"}.get(
        exc.STATUS, "bad_request"
    )


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
        self._origin = origin_of(site_url)
        self._clock = clock

    # -- routes ----------------------------------------------------------------------------------

    def preflight(self, headers: Mapping[str, str]) -> ApiReply:
        """CORS preflight: allowed for the site's origin only."""
        cors = self._cors(headers)
        if not cors:
            return self._error(RequestError("origin not allowed"), headers, status=403, code="forbidden")
        return ApiReply(
            204,
            {},
            {
                **_BASE_HEADERS,
                **cors,
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "600",
            },
        )

    def authorize(self, body: bytes | str | None, headers: Mapping[str, str], source_ip: str) -> ApiReply:
        """Use the link in `body` (`{"token": "..."}`) to let `source_ip` in."""
        try:
            self._check_origin(headers)
            now = int(self._clock())
            raw = body.encode() if isinstance(body, str) else (body or b"")
            if len(raw) > MAX_API_BODY_BYTES:
                raise PayloadTooLarge(f"the body is larger than {MAX_API_BODY_BYTES} bytes")
            self._limiter.hit(AUTHORIZE_PER_ADDRESS, source_ip, now)
            token = _token_of(raw)
            self._limiter.hit(AUTHORIZE_PER_TOKEN, hashlib.sha256(token.encode()).hexdigest()[:32], now)
            done = self._service.authorize(token, source_ip, now)
        except BotError as exc:
            return self._error(exc, headers)
        return ApiReply(200, _authorized(done), {**_BASE_HEADERS, **self._cors(headers)})

    def check(self, headers: Mapping[str, str], source_ip: str) -> ApiReply:
        """Is the caller's address let in, until when, and by which communities (tenants)?"""
        try:
            self._check_origin(headers)
            now = int(self._clock())
            self._limiter.hit(CHECK_PER_ADDRESS, source_ip, now)
            address, grants = self._service.check(source_ip, now)
        except BotError as exc:
            return self._error(exc, headers)
        body = {
            "address": address,
            "authorised": bool(grants),
            "grants": [
                {"tenant": g.tenant_id, "kind": g.kind.value, "expires_at": g.expires_at} for g in grants
            ],
        }
        return ApiReply(200, body, {**_BASE_HEADERS, **self._cors(headers)})

    # -- helpers ---------------------------------------------------------------------------------

    def _cors(self, headers: Mapping[str, str]) -> dict[str, str]:
        origin = _header(headers, "origin")
        if self._origin and origin == self._origin:
            # Retry-After is not a CORS-safelisted header: the page needs it exposed to read it.
            return {
                "Access-Control-Allow-Origin": self._origin,
                "Access-Control-Expose-Headers": "Retry-After",
            }
        return {}

    def _check_origin(self, headers: Mapping[str, str]) -> None:
        """A browser request from another site is refused before anything is read or written."""
        origin = _header(headers, "origin")
        if origin is not None and origin != self._origin:
            raise RequestError("requests from this origin are not accepted")

    def _error(
        self, exc: BotError, headers: Mapping[str, str], *, status: int | None = None, code: str = ""
    ) -> ApiReply:
        """The one place an API error becomes a status and JSON."""
        out = {**_BASE_HEADERS, **self._cors(headers)}
        if isinstance(exc, RequestError):
            if status is None and type(exc) is RequestError:
                status, code = 403, "forbidden"
            if isinstance(exc, TooManyRequests):
                out["Retry-After"] = str(max(1, exc.retry_after))
            return ApiReply(
                status or exc.STATUS, {"error": {"code": code or _code(exc), "message": exc.message}}, out
            )
        log.error("ipauth failed: %s", exc.message, exc_info=exc)
        message = (
            "Sorry, something went wrong on our side. Nothing was changed; please try again in a minute."
        )
        return ApiReply(500, {"error": {"code": "unavailable", "message": message}}, out)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


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

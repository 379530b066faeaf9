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
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Final

from chalicelib.access import ApiReply, Limit, RateLimiter
from chalicelib.errors import (
    BadRequest,
    BotError,
    LinkRejected,
    PayloadTooLarge,
    RequestError,
    TooManyRequests,
)
from chalicelib.push.service import PushService

__all__ = ["MAX_PUSH_BODY_BYTES", "PushApi"]

log = logging.getLogger(__name__)

MAX_PUSH_BODY_BYTES: Final = 4096
SUBSCRIBE_PER_ADDRESS: Final = Limit("push-addr", 20, 600)
_BASE_HEADERS: Final = {
    "Content-Type": "application/json",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Vary": "Origin",
}
_CODES: Final = {400: "bad_request", 403: "forbidden", 413: "too_large", 429: "rate_limited"}


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


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
        self._origin = _origin(site_url)
        self._clock = clock

    def preflight(self, headers: Mapping[str, str]) -> ApiReply:
        cors = self._cors(headers)
        if not cors:
            return self._error(RequestError("origin not allowed"), headers)
        return ApiReply(
            204,
            {},
            {
                **_BASE_HEADERS,
                **cors,
                "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "600",
            },
        )

    def key(self, headers: Mapping[str, str]) -> ApiReply:
        """The deployment's VAPID public key (the page's applicationServerKey)."""
        try:
            self._check_origin(headers)
            public = self._service().public_key()
        except BotError as exc:
            return self._error(exc, headers)
        return self._ok({"public_key": public}, headers)

    def subscribe(self, body: bytes | str | None, headers: Mapping[str, str], source_ip: str) -> ApiReply:
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
            return self._error(exc, headers)
        return self._ok(
            {"subscribed": True, "preference": sub.preference.value, "tenant": sub.tenant_id}, headers
        )

    def unsubscribe(self, body: bytes | str | None, headers: Mapping[str, str], source_ip: str) -> ApiReply:
        """`{"endpoint", "auth"}`: forget this browser everywhere."""
        try:
            data = self._body(body, headers, source_ip, {"endpoint", "auth"})
            deleted = self._service().unsubscribe(data["endpoint"], data["auth"])
        except BotError as exc:
            return self._error(exc, headers)
        return self._ok({"deleted": deleted}, headers)

    # -- helpers ---------------------------------------------------------------------------------

    def _body(
        self, body: bytes | str | None, headers: Mapping[str, str], source_ip: str, fields: set[str]
    ) -> dict[str, Any]:
        self._check_origin(headers)
        raw = body.encode() if isinstance(body, str) else (body or b"")
        if len(raw) > MAX_PUSH_BODY_BYTES:
            raise PayloadTooLarge(f"the body is larger than {MAX_PUSH_BODY_BYTES} bytes")
        self._limiter.hit(SUBSCRIBE_PER_ADDRESS, source_ip or "-", int(self._clock()))
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest("the body must be JSON") from exc
        if not isinstance(data, dict) or set(data) != fields:
            raise BadRequest(f"the body must have exactly: {', '.join(sorted(fields))}")
        return data

    def _ok(self, body: Mapping[str, Any], headers: Mapping[str, str]) -> ApiReply:
        return ApiReply(200, body, {**_BASE_HEADERS, **self._cors(headers)})

    def _cors(self, headers: Mapping[str, str]) -> dict[str, str]:
        if self._origin and _header(headers, "origin") == self._origin:
            return {
                "Access-Control-Allow-Origin": self._origin,
                "Access-Control-Expose-Headers": "Retry-After",
            }
        return {}

    def _check_origin(self, headers: Mapping[str, str]) -> None:
        origin = _header(headers, "origin")
        if origin is not None and origin != self._origin:
            raise RequestError("requests from this origin are not accepted")

    def _error(self, exc: BotError, headers: Mapping[str, str]) -> ApiReply:
        """The one place a push API error becomes a status and JSON."""
        out = {**_BASE_HEADERS, **self._cors(headers)}
        if isinstance(exc, RequestError):
            status, code = exc.STATUS, _CODES.get(exc.STATUS, "bad_request")
            if type(exc) is RequestError:
                status, code = 403, "forbidden"
            if isinstance(exc, LinkRejected):
                code = exc.code
            if isinstance(exc, TooManyRequests):
                out["Retry-After"] = str(max(1, exc.retry_after))
            return ApiReply(status, {"error": {"code": code, "message": exc.message}}, out)
        log.error("push api failed: %s", exc.message, exc_info=exc)
        message = (
            "Sorry, something went wrong on our side. Nothing was changed; please try again in a minute."
        )
        return ApiReply(500, {"error": {"code": "unavailable", "message": message}}, out)

"""What every API the site's page calls shares: CORS for the site's origin only,
`no-store`, and the one place an error becomes a status and JSON (IPAuth and web push both use it)."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

from chalicelib.discord.replies import GENERIC_APOLOGY
from chalicelib.errors import BotError, LinkRejected, RequestError, TooManyRequests
from chalicelib.http import HttpReply

__all__ = ["BASE_HEADERS", "SiteResponder", "header", "origin_of"]

BASE_HEADERS: Final = {
    "Content-Type": "application/json",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Vary": "Origin",
}
_CODES: Final = {400: "bad_request", 403: "forbidden", 413: "too_large", 429: "rate_limited"}

log = logging.getLogger(__name__)


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL ("" for an empty one)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A request header by its lower-case name, whatever case the gateway delivered."""
    return next((v for k, v in headers.items() if k.lower() == name), None)


class SiteResponder:
    """Replies for one API of the site at `site_url`; `name` goes into the logs."""

    def __init__(self, site_url: str, name: str) -> None:
        self.origin = origin_of(site_url)
        self._name = name

    def cors(self, headers: Mapping[str, str]) -> dict[str, str]:
        if self.origin and header(headers, "origin") == self.origin:
            # Retry-After is not a CORS-safelisted header: the page needs it exposed to read it.
            return {
                "Access-Control-Allow-Origin": self.origin,
                "Access-Control-Expose-Headers": "Retry-After",
            }
        return {}

    def check_origin(self, headers: Mapping[str, str]) -> None:
        """A browser request from another site is refused before anything is read or written."""
        origin = header(headers, "origin")
        if origin is not None and origin != self.origin:
            raise RequestError("requests from this origin are not accepted")

    def ok(self, body: Mapping[str, Any], headers: Mapping[str, str]) -> HttpReply:
        return HttpReply.json(200, body, {**BASE_HEADERS, **self.cors(headers)})

    def preflight(self, headers: Mapping[str, str], methods: str) -> HttpReply:
        """CORS preflight: allowed for the site's origin only."""
        cors = self.cors(headers)
        if not cors:
            return self.error(RequestError("origin not allowed"), headers, status=403, code="forbidden")
        return HttpReply.json(
            204,
            None,
            {
                **BASE_HEADERS,
                **cors,
                "Access-Control-Allow-Methods": methods,
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "600",
            },
        )

    def error(
        self, exc: BotError, headers: Mapping[str, str], *, status: int | None = None, code: str = ""
    ) -> HttpReply:
        """The one place an API error becomes a status and JSON."""
        out = {**BASE_HEADERS, **self.cors(headers)}
        if isinstance(exc, RequestError):
            if status is None and type(exc) is RequestError:
                status, code = 403, "forbidden"
            if isinstance(exc, TooManyRequests):
                out["Retry-After"] = str(max(1, exc.retry_after))
            if not code:
                code = exc.code if isinstance(exc, LinkRejected) else _CODES.get(exc.STATUS, "bad_request")
            body = {"error": {"code": code, "message": exc.message}}
            return HttpReply.json(status or exc.STATUS, body, out)
        log.error("%s failed: %s", self._name, exc.message, exc_info=exc)
        return HttpReply.json(500, {"error": {"code": "unavailable", "message": GENERIC_APOLOGY}}, out)

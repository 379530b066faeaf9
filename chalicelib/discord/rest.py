"""A small Discord REST client: webhook edits and follow-ups, channel messages, command registration.

It honours 429 `retry_after` and the X-RateLimit headers (discord-protocol.md §4), sends no
Authorization header to webhook routes (the token in the path is the credential), sends the bot token
only to routes that need it, and never logs a token. The transport is injectable; the default is
urllib, so the jobs Lambda needs no HTTP library.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import quote

from chalicelib.errors import DiscordApiError

__all__ = ["DiscordRest", "HttpResult", "Transport", "describe_errors", "urllib_transport"]

log = logging.getLogger(__name__)

USER_AGENT: Final = "DiscordBot (https://github.com/gangway/gangway, 0.1)"
_TOKEN_IN_PATH: Final = re.compile(r"(/webhooks/\d+/)[^/?]+")


@dataclass(frozen=True)
class HttpResult:
    """A raw HTTP answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Send one HTTP request."""

    def __call__(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> HttpResult: ...


def urllib_transport(method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> HttpResult:
    """Stdlib HTTP with a 10 s timeout; error statuses are results, not exceptions."""
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers))  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - base URL comes from Settings
            return HttpResult(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as err:
        return HttpResult(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


def redact(path: str) -> str:
    """The path with any interaction token replaced, for logs."""
    return _TOKEN_IN_PATH.sub(r"\1<token>", path)


class DiscordRest:
    """Calls Discord's REST API with rate-limit handling."""

    def __init__(
        self,
        base_url: str,
        bot_token: Callable[[], str | None],
        *,
        transport: Transport = urllib_transport,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_attempts: int = 5,
        max_wait: float = 30.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._bot_token = bot_token
        self._transport = transport
        self._sleep = sleep
        self._clock = clock
        self._max_attempts = max_attempts
        self._max_wait = max_wait
        self._blocked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- the calls gangway makes -------------------------------------------------------------------

    def edit_original(self, application_id: str, token: str, message: Mapping[str, Any]) -> Any:
        """Finish a deferred reply (or edit an inline one)."""
        return self.request("PATCH", f"/webhooks/{application_id}/{token}/messages/@original", message)

    def followup(self, application_id: str, token: str, message: Mapping[str, Any]) -> Any:
        """Post an additional message for an interaction."""
        return self.request("POST", f"/webhooks/{application_id}/{token}", message)

    def create_message(self, channel_id: str, message: Mapping[str, Any]) -> Any:
        """Post to a channel with the bot token (for replies whose interaction token expired)."""
        return self.request("POST", f"/channels/{channel_id}/messages", message, bot=True)

    def put_commands(self, application_id: str, commands: list[Any], guild_id: str | None = None) -> Any:
        """Bulk-overwrite the global or one guild's command list (discord-protocol.md §5)."""
        scope = f"/guilds/{guild_id}" if guild_id else ""
        return self.request("PUT", f"/applications/{application_id}{scope}/commands", commands, bot=True)

    def guild_roles(self, guild_id: str) -> list[dict[str, Any]]:
        """The server's roles with their permissions (what /join checks before handing one out)."""
        roles = self.request("GET", f"/guilds/{guild_id}/roles", bot=True)
        return [r for r in roles if isinstance(r, dict)] if isinstance(roles, list) else []

    def add_member_role(self, guild_id: str, user_id: str, role_id: str, *, reason: str) -> None:
        """Give a member a role (/join); the reason shows in the server's audit log."""
        path = f"/guilds/{guild_id}/members/{user_id}/roles/{role_id}"
        self.request("PUT", path, bot=True, reason=reason)

    def remove_member_role(self, guild_id: str, user_id: str, role_id: str, *, reason: str) -> None:
        """Take a role from a member (/leave)."""
        path = f"/guilds/{guild_id}/members/{user_id}/roles/{role_id}"
        self.request("DELETE", path, bot=True, reason=reason)

    # -- the machinery -------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, payload: Any = None, *, bot: bool = False, reason: str | None = None
    ) -> Any:
        """Send a request, waiting out rate limits; return the decoded JSON body (None if empty).

        Raises:
            DiscordApiError: an error status, or still rate limited after the allowed attempts/wait.
        """
        headers = {"User-Agent": USER_AGENT}
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        if bot:
            token = self._bot_token()
            if not token:
                raise DiscordApiError(401, None, "no bot token configured")
            headers["Authorization"] = f"Bot {token}"
        if reason:
            headers["X-Audit-Log-Reason"] = quote(reason[:512], safe=" /@#:")
        route = f"{method} {path}"
        waited = 0.0
        for _attempt in range(self._max_attempts):
            waited += self._wait_for(route)
            result = self._transport(method, self._base + path, body, headers)
            self._note_limits(route, result.headers)
            if result.status != 429:
                return self._decode(method, path, result)
            retry_after = _retry_after(result)
            waited += retry_after
            if waited > self._max_wait:
                break
            log.warning("429 on %s %s; retrying in %.2fs", method, redact(path), retry_after)
            self._sleep(retry_after)
        raise DiscordApiError(429, None, f"still rate limited on {method} {redact(path)}")

    def _wait_for(self, route: str) -> float:
        with self._lock:
            until = self._blocked_until.pop(route, 0.0)
        delay = until - self._clock()
        if delay > 0:
            self._sleep(delay)
            return delay
        return 0.0

    def _note_limits(self, route: str, headers: Mapping[str, str]) -> None:
        """Remember an exhausted bucket so the next call waits instead of earning a 429."""
        if headers.get("x-ratelimit-remaining") == "0":
            try:
                reset_after = float(headers.get("x-ratelimit-reset-after", "0"))
            except ValueError:
                return
            with self._lock:
                self._blocked_until[route] = self._clock() + min(reset_after, self._max_wait)

    @staticmethod
    def _decode(method: str, path: str, result: HttpResult) -> Any:
        data: Any = None
        if result.body:
            try:
                data = json.loads(result.body)
            except ValueError:
                data = None
        if result.status >= 400:
            code = data.get("code") if isinstance(data, dict) else None
            # A proxy's HTML page or a truncated body is not JSON; its first bytes still say what happened.
            message = (
                data.get("message", "")
                if isinstance(data, dict)
                else result.body[:200].decode("utf-8", errors="replace")
            )
            if isinstance(data, dict) and isinstance(data.get("errors"), dict):
                # 50035 names the offending fields only in `errors`; without them the log says nothing.
                message = f"{message} ({describe_errors(data['errors'])})"
            log.warning("Discord %s on %s %s: %s", result.status, method, redact(path), message)
            raise DiscordApiError(result.status, code if isinstance(code, int) else None, str(message))
        return data


def describe_errors(errors: Mapping[str, Any], limit: int = 5) -> str:
    """Discord's nested `errors` as `data.components.0.options: Must be 25 or fewer in length.; …`.

    A 50035 answer's message is only "Invalid Form Body"; the field and the reason are in the nesting.
    """
    found: list[str] = []

    def walk(node: Mapping[str, Any], trail: list[str]) -> None:
        for key, value in node.items():
            if key == "_errors" and isinstance(value, list):
                where = ".".join(trail) or "body"
                found.extend(f"{where}: {e.get('message', e)}" for e in value if isinstance(e, dict))
            elif isinstance(value, Mapping):
                walk(value, [*trail, str(key)])

    walk(errors, [])
    more = f"; and {len(found) - limit} more" if len(found) > limit else ""
    return "; ".join(found[:limit]) + more


def _retry_after(result: HttpResult) -> float:
    try:
        data = json.loads(result.body)
        if isinstance(data, dict) and isinstance(data.get("retry_after"), int | float):
            return max(0.0, float(data["retry_after"]))
    except ValueError:
        pass
    try:
        return max(0.0, float(result.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0

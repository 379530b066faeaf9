"""A stand-in for Discord's REST API: records every call and answers like Discord does.

`GET /_calls` lists `{method, path, json, time, auth, reason, status}` (plus `errors` on a 50035);
`DELETE /_calls` clears it.
`POST /_faults` queues injected answers: `{"method": "PATCH", "path_contains": "@original",
"status": 429, "times": 1, "retry_after": 0.2}` or `{"status": 404, "code": 10015}` (a dead token), or
`{"status": 502, "raw": "<html>Bad Gateway</html>"}` (a body that is not JSON, as a proxy in front answers).
Webhook routes refuse an Authorization header's absence-of-need silently but record it, so tests can
check that none was sent; bot routes answer 401 without `Authorization: Bot …`, and with any other
token than the one the stand-in was given (when given one; the local stack gives its own).

Like Discord, it keeps what was registered: a PUT of an application's (or one guild's) commands
replaces the list a later GET answers. `GET /users/@me` answers the bot user and `GET /applications/@me`
the application, with the interactions endpoint URL it was given (`application(...)` changes it, as the
Developer Portal does), so `gangway doctor` can check a token, an endpoint and the registered commands.

Every request body is validated against Discord's published schema for its route (`discord_schemas`,
vendored from Discord's OpenAPI file); one that does not validate gets Discord's own refusal, 400
`{"code": 50035, "message": "Invalid Form Body", "errors": {...}}`, and is recorded with that status,
so a payload Discord would refuse fails here too instead of in a user's evening. A body that is not
JSON gets 400 with code 50109, as on Discord. Injected faults still take precedence.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from devstack.discord_schemas import INVALID_FORM_BODY, refusal, schemas

__all__ = ["DiscordStandIn"]

_WEBHOOK: Final = re.compile(r"^/webhooks/(\d+)/([^/]+)(/messages/(@original|\d+))?$")
_CHANNEL_MESSAGES: Final = re.compile(r"^/channels/(\d+)/messages$")
_COMMANDS: Final = re.compile(r"^/applications/(\d+)(/guilds/(\d+))?/commands$")
_GUILD_ROLES: Final = re.compile(r"^/guilds/(\d+)/roles$")
_MEMBER_ROLE: Final = re.compile(r"^/guilds/(\d+)/members/(\d+)/roles/(\d+)$")
_UNAUTHORIZED: Final[tuple[int, Any, dict[str, str]]] = (401, {"message": "401: Unauthorized", "code": 0}, {})
_MAX_BODY: Final = 1 << 20
_INVALID_JSON: Final = {"code": 50109, "message": "The request body contains invalid JSON."}


class _NotJson(str):
    """A body that did not parse as JSON (kept as text for the record)."""


@dataclass(frozen=True)
class _Raw:
    """An answer body sent as is, not as JSON (an injected proxy page)."""

    data: bytes


class _State:
    def __init__(self, bot_token: str | None, application: dict[str, Any]) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.next_id = 900000000000000000
        self.bot_token = bot_token
        self.application = application
        # Registered commands by (application id, guild id or "" for global), as Discord keeps them.
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # Each server's roles (`GET /guilds/{id}/roles`), as tests declare them; a server with none
        # declared is one the bot is not in (Discord's 404 Unknown Guild).
        self.roles: dict[str, list[dict[str, Any]]] = {}

    def new_id(self) -> str:
        with self.lock:
            self.next_id += 1
            return str(self.next_id)


class DiscordStandIn:
    """The stand-in server; `start()` serves it on a thread, `url` is its base."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        bot_token: str | None = None,
        application_id: str = "",
        interactions_endpoint_url: str | None = None,
    ) -> None:
        application = {
            "id": application_id or "900000000000000000",
            "name": "gangway",
            "description": "",
            "bot_public": False,
            "bot_require_code_grant": False,
            "verify_key": "",
            "flags": 0,
            "interactions_endpoint_url": interactions_endpoint_url,
        }
        self.state = _State(bot_token, application)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="discord-standin", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> DiscordStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.calls)

    def application(self, **fields: Any) -> dict[str, Any]:
        """Change the application as its owner does in the Developer Portal (e.g. its
        `interactions_endpoint_url`); returns it. Discord would PING a new endpoint first; the
        stand-in does not, so this is for tests that need a wrong one."""
        with self.state.lock:
            self.state.application.update(fields)
            return dict(self.state.application)

    def guild_roles(self, guild_id: str, roles: dict[str, int]) -> None:
        """Declare a server's roles by id with their permission bits (plus its @everyone role)."""
        listed = [{"id": guild_id, "name": "@everyone", "permissions": "1024", "position": 0}]
        listed += [
            {"id": rid, "name": f"role-{rid[-4:]}", "permissions": str(bits), "position": n + 1}
            for n, (rid, bits) in enumerate(roles.items())
        ]
        with self.state.lock:
            self.state.roles[guild_id] = listed

    def fault(self, **fault: Any) -> None:
        """Queue an injected answer, as `POST /_faults` does (for callers in this process)."""
        with self.state.lock:
            self.state.faults.append({"times": 1, **fault})


class _Handler(BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        if self.path == "/_calls":
            with self.state.lock:
                self._send(200, list(self.state.calls))
            return
        self._handle("GET")

    def do_DELETE(self) -> None:
        if self.path == "/_calls":
            with self.state.lock:
                self.state.calls.clear()
                self.state.faults.clear()
            self._send(204, None)
            return
        self._handle("DELETE")

    def do_POST(self) -> None:
        if self.path == "/_faults":
            fault = self._body()
            if not isinstance(fault, dict):
                self._send(400, {"message": "a fault is an object"})
                return
            with self.state.lock:
                self.state.faults.append({"times": 1, **fault})
            self._send(204, None)
            return
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_PUT(self) -> None:
        self._handle("PUT")

    # -- Discord's behaviour ----------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        payload = self._body()
        auth = self.headers.get("Authorization")
        call = {
            "method": method,
            "path": path,
            "json": payload,
            "time": time.time(),
            "auth": auth.split(" ", 1)[0] if auth else None,
            "reason": self.headers.get("X-Audit-Log-Reason"),
        }
        status, body, headers = self._fault(method, path) or self._answer(method, path, payload, auth)
        call["status"] = status
        if isinstance(body, dict) and body.get("code") == INVALID_FORM_BODY:
            call["errors"] = body.get("errors")  # what Discord would have said, for the test that sent it
        with self.state.lock:
            self.state.calls.append(call)
        self._send(status, body, headers)

    def _fault(self, method: str, path: str) -> tuple[int, Any, dict[str, str]] | None:
        with self.state.lock:
            for fault in self.state.faults:
                if fault.get("method", method) == method and fault.get("path_contains", "") in path:
                    fault["times"] -= 1
                    if fault["times"] <= 0:
                        self.state.faults.remove(fault)
                    break
            else:
                return None
        status = int(fault.get("status", 500))
        if status == 429:
            retry = float(fault.get("retry_after", 0.1))
            body = {"message": "You are being rate limited.", "retry_after": retry, "global": False}
            return 429, body, {"Retry-After": str(retry), "X-RateLimit-Scope": "user"}
        if "raw" in fault:
            return status, _Raw(str(fault["raw"]).encode("utf-8", errors="surrogateescape")), {}
        return status, {"message": fault.get("message", "injected"), "code": fault.get("code", 0)}, {}

    def _answer(
        self, method: str, path: str, payload: Any, auth: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        limits = {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "4", "X-RateLimit-Reset-After": "1.0"}
        hook = _WEBHOOK.match(path)
        if hook and (refused := self._refusal(method, path, payload)):
            return refused  # webhook routes need no Authorization: validation comes first
        if hook and method in ("PATCH", "POST", "GET"):
            message = {"id": self.state.new_id(), "type": 0, **(payload if isinstance(payload, dict) else {})}
            return 200, message, limits
        if hook and method == "DELETE":
            return 204, None, limits
        wrong_token = self.state.bot_token is not None and auth != f"Bot {self.state.bot_token}"
        if not (auth or "").startswith("Bot ") or wrong_token:
            return _UNAUTHORIZED
        if path == "/users/@me" and method == "GET":
            with self.state.lock:
                app_id = self.state.application["id"]
            user = {"id": app_id, "username": "gangway", "discriminator": "0", "global_name": None}
            return 200, {**user, "avatar": None, "bot": True, "flags": 0}, limits
        if path == "/applications/@me" and method == "GET":
            with self.state.lock:
                return 200, dict(self.state.application), limits
        if refused := self._refusal(method, path, payload):
            return refused
        chan = _CHANNEL_MESSAGES.match(path)
        if chan and method == "POST":
            message = {"id": self.state.new_id(), "channel_id": chan.group(1), **(payload or {})}
            return 200, message, limits
        cmds = _COMMANDS.match(path)
        if cmds and method == "PUT":
            listed = payload if isinstance(payload, list) else []
            out = [
                {
                    "id": self.state.new_id(),
                    "application_id": cmds.group(1),
                    "version": self.state.new_id(),
                    **c,
                }
                for c in listed
            ]
            with self.state.lock:
                self.state.commands[(cmds.group(1), cmds.group(3) or "")] = out
            return 200, out, limits
        if cmds and method == "GET":
            with self.state.lock:
                return 200, list(self.state.commands.get((cmds.group(1), cmds.group(3) or ""), [])), limits
        if (roles := _GUILD_ROLES.match(path)) and method == "GET":
            return self._roles(roles.group(1), limits)
        if _MEMBER_ROLE.match(path) and method in ("PUT", "DELETE"):
            return 204, None, limits  # Discord answers both with an empty 204, idempotently
        return 404, {"message": "404: Not Found", "code": 0}, {}

    def _roles(self, guild_id: str, limits: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        with self.state.lock:
            listed: list[dict[str, Any]] | None = self.state.roles.get(guild_id)
        if listed is None:
            return 404, {"message": "Unknown Guild", "code": 10004}, {}
        return 200, [dict(r) for r in listed], limits

    def _refusal(self, method: str, path: str, payload: Any) -> tuple[int, Any, dict[str, str]] | None:
        """Discord's 400 for a body it would not accept on this route, or None."""
        route = schemas().route(method, path)
        if route is None or method in ("GET", "DELETE"):
            return None
        if isinstance(payload, _NotJson):
            return 400, dict(_INVALID_JSON), {}
        errors = schemas().errors(route, payload, present=self._has_body())
        return None if errors is None else (400, refusal(errors), {})

    def _has_body(self) -> bool:
        return int(self.headers.get("Content-Length") or 0) > 0

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > _MAX_BODY:
            return None
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except ValueError:
            return _NotJson(raw.decode(errors="replace"))

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = isinstance(body, _Raw)
        data = b"" if body is None else body.data if isinstance(body, _Raw) else json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if body is not None:
            self.send_header("Content-Type", "text/html" if raw else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

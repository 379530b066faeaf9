"""The message contract (DESIGN.md §4, contract/README.md): envelopes, types and request bodies.

Every message is a JSON object ``{"id": str|null, "type": str, "body": object}``. Requests arrive
on ``.../cmd``; replies (same ``id`` as the request) and events (a fresh ``id``) leave on ``.../evt``.
Parsing is strict: anything off-contract raises ProtocolError with the code to send back.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from .errors import ErrorCode, ProtocolError

MAX_MESSAGE_BYTES: Final = 64 * 1024
MAX_GRANTS: Final = 10_000
# The firewall's port lists: the backend sends at most 200 game ports (chalicelib/lifecycle/tools.py).
MAX_PORTS: Final = 1_000
REPLY_SUFFIX: Final = ".reply"


class RequestType(StrEnum):
    """Backend → agent requests (``cmd`` topic)."""

    GAME_START = "game.start"
    GAME_STOP = "game.stop"
    GAME_SAVE = "game.save"
    STATUS = "status"
    SFTP_OPEN = "sftp.open"
    DISK_EXTEND = "disk.extend"
    DISK_PRELOAD = "disk.preload"
    FIREWALL_SYNC = "firewall.sync"
    SHUTDOWN = "shutdown"
    GAME_INSTALL = "game.install"

    @property
    def reply_type(self) -> str:
        return f"{self.value}{REPLY_SUFFIX}"


class EventType(StrEnum):
    """Agent → backend events (``evt`` topic), not answers to a request."""

    READY = "ready"
    HEARTBEAT = "heartbeat"
    PLAYERS = "players"
    IDLE_WARNING = "idle.warning"
    IDLE_CLEARED = "idle.cleared"
    IDLE_SHUTDOWN = "idle.shutdown"
    SPOT_NOTICE = "spot.notice"
    GAME_EXITED = "game.exited"
    PRELOAD_PROGRESS = "preload.progress"
    PRELOAD_DONE = "preload.done"
    AGENT_ERROR = "agent.error"
    FIREWALL_RESYNC = "firewall.resync"
    INSTALL_PROGRESS = "install.progress"
    PLAYABLE = "playable"


ERROR_TYPE: Final = "error"
REPLY_TYPES: Final = frozenset(r.reply_type for r in RequestType) | {ERROR_TYPE}


class FirewallMode(StrEnum):
    FULL = "full"
    DELTA = "delta"


@dataclass(frozen=True)
class Envelope:
    """One decoded message of any kind."""

    id: str | None
    type: str
    body: Mapping[str, Any]


@dataclass(frozen=True)
class Grant:
    """One IP grant: the address may pass the firewall until ``expires_at`` (epoch seconds)."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    expires_at: float


@dataclass(frozen=True)
class StopGame:
    grace_s: float | None = None


@dataclass(frozen=True)
class OpenSftp:
    ttl_s: float | None = None
    host: str | None = None


@dataclass(frozen=True)
class Preload:
    block_size: int = 1024 * 1024


@dataclass(frozen=True)
class FirewallPorts:
    """The game ports the firewall filters (the SFTP port is always filtered too)."""

    tcp: tuple[int, ...]
    udp: tuple[int, ...]


@dataclass(frozen=True)
class FirewallSync:
    """``version`` numbers the backend's grant set: a delta applies only on top of ``version - 1``."""

    mode: FirewallMode
    grants: tuple[Grant, ...]
    revoke: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    version: int | None = None
    ports: FirewallPorts | None = None


@dataclass(frozen=True)
class Shutdown:
    poweroff: bool = False


@dataclass(frozen=True)
class InstallGame:
    """``force``: install again even when the disk's marker already has this version."""

    force: bool = False


@dataclass(frozen=True)
class Empty:
    """A request whose body carries nothing."""


Body = StopGame | OpenSftp | Preload | FirewallSync | Shutdown | InstallGame | Empty


@dataclass(frozen=True)
class Request:
    id: str
    type: RequestType
    body: Body


def parse_envelope(raw: bytes) -> Envelope:
    """Decode any contract message. Raises ProtocolError (too_large, bad_json, bad_envelope)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message is {len(raw)} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"not JSON: {exc}") from exc
    except RecursionError:
        raise ProtocolError(ErrorCode.BAD_JSON, "not JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, "message must be a JSON object")
    msg_id = data.get("id")
    safe_id = msg_id if isinstance(msg_id, str) and 0 < len(msg_id) <= 128 else None
    extra = set(data) - {"id", "type", "body"}
    if extra:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"unexpected keys: {sorted(extra)}", safe_id)
    if msg_id is not None and safe_id is None:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, "id must be a string of 1-128 characters")
    msg_type, body = data.get("type"), data.get("body", {})
    if not isinstance(msg_type, str) or not msg_type:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, "type must be a non-empty string", safe_id)
    if not isinstance(body, dict):
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, "body must be a JSON object", safe_id)
    return Envelope(safe_id, msg_type, body)


def parse_request(raw: bytes) -> Request:
    """Decode and check a request from the ``cmd`` topic. Raises ProtocolError."""
    env = parse_envelope(raw)
    if env.id is None:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, "a request needs an id")
    try:
        rtype = RequestType(env.type)
    except ValueError:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown request type {env.type!r}", env.id) from None
    try:
        return Request(env.id, rtype, _BODY_PARSERS[rtype](_Body(env.body)))
    except _BadBody as exc:
        raise ProtocolError(ErrorCode.BAD_BODY, f"{rtype.value}: {exc}", env.id) from None


def encode(msg_id: str | None, msg_type: str, body: Mapping[str, Any]) -> bytes:
    """Serialise one message (compact JSON, UTF-8)."""
    return json.dumps({"id": msg_id, "type": msg_type, "body": body}, separators=(",", ":")).encode()


def new_id() -> str:
    """A fresh id for an event."""
    return uuid.uuid4().hex


def error_body(code: ErrorCode, message: str) -> dict[str, str]:
    return {"code": code.value, "message": message}


class _BadBody(Exception):
    pass


class _Body:
    """Typed getters over a request body that reject unknown keys."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    def only(self, *keys: str) -> _Body:
        extra = set(self.data) - set(keys)
        if extra:
            raise _BadBody(f"unexpected fields {sorted(extra)}")
        return self

    def number(self, key: str, *, low: float, high: float) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise _BadBody(f"{key} must be a number in [{low}, {high}]")
        return float(value)

    def integer(self, key: str, *, low: int, high: int) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _BadBody(f"{key} must be an integer in [{low}, {high}]")
        return value

    def string(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 255):
            raise _BadBody(f"{key} must be a string of 1-255 characters")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise _BadBody(f"{key} must be true or false")
        return value

    def items(self, key: str) -> list[Any]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or len(value) > MAX_GRANTS:
            raise _BadBody(f"{key} must be a list of at most {MAX_GRANTS} entries")
        return value


def _address(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(value, str):
        raise _BadBody("address must be a string")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise _BadBody(f"not an IP address: {value!r}") from None


def _grant(item: object) -> Grant:
    if not isinstance(item, dict) or set(item) != {"address", "expires_at"}:
        raise _BadBody("each grant is {address, expires_at}")
    expires = item["expires_at"]
    if isinstance(expires, bool) or not isinstance(expires, int | float) or expires < 0:
        raise _BadBody("expires_at must be epoch seconds")
    return Grant(_address(item["address"]), float(expires))


def _port_list(value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_PORTS:
        raise _BadBody(f"ports.tcp and ports.udp must be lists of at most {MAX_PORTS} ports")
    for port in value:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise _BadBody("each port must be an integer in [1, 65535]")
    return tuple(sorted(set(value)))


def _ports(value: object) -> FirewallPorts | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"tcp", "udp"}:
        raise _BadBody("ports is {tcp, udp}")
    return FirewallPorts(_port_list(value["tcp"]), _port_list(value["udp"]))


def _firewall(b: _Body) -> FirewallSync:
    b.only("mode", "grants", "revoke", "version", "ports")
    try:
        mode = FirewallMode(str(b.data.get("mode")))
    except ValueError:
        raise _BadBody("mode must be 'full' or 'delta'") from None
    grants = tuple(_grant(g) for g in b.items("grants"))
    revoke = tuple(_address(a) for a in b.items("revoke"))
    if mode is FirewallMode.FULL and revoke:
        raise _BadBody("a full sync lists grants only; revoke is for delta")
    version = b.integer("version", low=0, high=2**53)
    ports = _ports(b.data.get("ports"))
    if mode is FirewallMode.DELTA and ports is not None:
        raise _BadBody("ports come with a full sync only")
    return FirewallSync(mode, grants, revoke, version, ports)


def _empty(b: _Body) -> Empty:
    b.only()
    return Empty()


def _stop(b: _Body) -> StopGame:
    b.only("grace_s")
    return StopGame(b.number("grace_s", low=0, high=3600))


def _sftp(b: _Body) -> OpenSftp:
    b.only("ttl_s", "host")
    return OpenSftp(b.number("ttl_s", low=30, high=86400), b.string("host"))


def _preload(b: _Body) -> Preload:
    b.only("block_size")
    size = b.number("block_size", low=4096, high=64 * 1024 * 1024)
    return Preload(int(size)) if size is not None else Preload()


def _shutdown(b: _Body) -> Shutdown:
    b.only("poweroff")
    return Shutdown(b.boolean("poweroff", False))


def _install(b: _Body) -> InstallGame:
    b.only("force")
    return InstallGame(b.boolean("force", False))


_BODY_PARSERS: Final[dict[RequestType, Callable[[_Body], Body]]] = {
    RequestType.GAME_START: _empty,
    RequestType.GAME_STOP: _stop,
    RequestType.GAME_SAVE: _empty,
    RequestType.STATUS: _empty,
    RequestType.SFTP_OPEN: _sftp,
    RequestType.DISK_EXTEND: _empty,
    RequestType.DISK_PRELOAD: _preload,
    RequestType.FIREWALL_SYNC: _firewall,
    RequestType.SHUTDOWN: _shutdown,
    RequestType.GAME_INSTALL: _install,
}


def _fields(*names: str) -> frozenset[str]:
    return frozenset(names)


OUTGOING_FIELDS: Final[dict[str, frozenset[str]]] = {
    "game.start.reply": _fields("pid", "started"),
    "game.stop.reply": _fields("was_running", "exit_code", "killed"),
    "game.save.reply": _fields("saved", "synced"),
    "status.reply": _fields("game", "players", "idle", "disk", "firewall", "agent"),
    "sftp.open.reply": _fields("uri", "username", "password", "host_key_sha256", "expires_at"),
    "disk.extend.reply": _fields(
        "device", "partition", "filesystem", "size_before_bytes", "size_after_bytes"
    ),
    "disk.preload.reply": _fields("started", "device"),
    "firewall.sync.reply": _fields("applied", "removed", "v4", "v6", "version"),
    "shutdown.reply": _fields("stopping", "poweroff"),
    "game.install.reply": _fields("installed", "version"),
    ERROR_TYPE: _fields("code", "message"),
    EventType.READY: _fields("version", "game_running"),
    EventType.HEARTBEAT: _fields("game_running", "players", "idle_s", "firewall_version"),
    EventType.PLAYERS: _fields("count", "previous", "names"),
    EventType.IDLE_WARNING: _fields("idle_s", "shutdown_in_s"),
    EventType.IDLE_CLEARED: _fields("players"),
    EventType.IDLE_SHUTDOWN: _fields("idle_s"),
    EventType.SPOT_NOTICE: _fields("action", "time", "saved", "game_stopped"),
    EventType.GAME_EXITED: _fields("exit_code", "restart_in_s", "restarts"),
    EventType.PRELOAD_PROGRESS: _fields("bytes_read", "bytes_total", "percent"),
    EventType.PRELOAD_DONE: _fields("device", "bytes_read", "seconds"),
    EventType.AGENT_ERROR: _fields("code", "message"),
    EventType.FIREWALL_RESYNC: _fields("version", "reason"),
    EventType.INSTALL_PROGRESS: _fields("phase", "percent", "version", "message"),
    EventType.PLAYABLE: _fields("after_s", "signal"),
}
"""The body keys of every reply and event the agent sends (contract/README.md)."""


def parse_outgoing(raw: bytes) -> Envelope:
    """Decode a reply or event and check its body has exactly the documented keys. Raises ProtocolError."""
    env = parse_envelope(raw)
    fields = OUTGOING_FIELDS.get(env.type)
    if fields is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown reply/event type {env.type!r}", env.id)
    if env.id is None and env.type != ERROR_TYPE:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, "replies and events carry an id", env.id)
    if set(env.body) != fields:
        message = f"{env.type} body keys {sorted(env.body)} != {sorted(fields)}"
        raise ProtocolError(ErrorCode.BAD_BODY, message, env.id)
    return env

"""The agent contract's bodies as the backend checks them (agent/contract/README.md, its tables).

An agent is code on a host its tenant controls: whatever it publishes is checked here, at the
boundary, before any handler reads it. A body that breaks the contract (a wrong type, a negative
count, `Infinity` where a percentage goes) is dropped with one log line. Were it let through, a
handler would raise and the queue would retry it five times before the dead-letter queue, costing
every tenant's events that wait behind it. `tests/test_agent_contract_backend.py` checks every
example in agent/contract against this table, so the two cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["BODIES", "Field", "check_body"]

# Largest sensible values: a disk is far below 2**63 bytes; a count or a pid fits in 2**31.
_BYTES: Final = 2**63
_COUNT: Final = 2**31
_YEAR_S: Final = 366 * 24 * 3600
_TEXT: Final = 4096


@dataclass(frozen=True)
class Field:
    """One key of a body: its JSON type, whether null is allowed, and its range or length."""

    kind: type[bool] | type[int] | type[float] | type[str] | type[dict[str, object]] | type[list[str]]
    nullable: bool = False
    low: float = 0
    high: float = _COUNT
    # Text: one of these words (when given). A list: of text, each `low`-`item_high` long, at most `high`.
    choices: tuple[str, ...] = ()
    item_high: int = 0

    def problem(self, value: object) -> str | None:
        """What is wrong with `value` for this field, or None."""
        if value is None:
            return None if self.nullable else "is null"
        if self.kind is bool:
            return None if isinstance(value, bool) else "is not true or false"
        if self.kind is str:
            if not isinstance(value, str):
                return "is not text"
            if self.choices and value not in self.choices:
                return f"is not one of {', '.join(self.choices)}"
            return None if len(value) <= self.high else "is too long"
        if self.kind is list:
            if not isinstance(value, list) or len(value) > self.high:
                return f"is not a list of at most {self.high:g} items"
            if any(not isinstance(v, str) or not self.low <= len(v) <= self.item_high for v in value):
                return f"holds an item that is not text of {self.low:g} to {self.item_high} characters"
            return None
        if self.kind is dict:
            return None if isinstance(value, dict) else "is not an object"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "is not a number"
        if self.kind is int and not isinstance(value, int):
            return "is not a whole number"
        if not self.low <= value <= self.high:
            return f"is out of range ({self.low:g} to {self.high:g})"
        return None


_INT = Field(int)
_INT_OR_NULL = Field(int, nullable=True)
_EXIT_CODE = Field(int, nullable=True, low=-(2**31))
_BOOL = Field(bool)
_TEXT_FIELD = Field(str, high=_TEXT)
_SECONDS = Field(float, high=_YEAR_S)
_SIZE = Field(int, high=_BYTES)
_EPOCH = Field(float, high=2**33)
# The grant set's version (chalicelib/access/firewall.py), None until an agent's first full sync.
_FW_VERSION = Field(int, nullable=True, high=2**53)

# Every event and reply the backend accepts, with the keys of its body (README.md: replies and events).
BODIES: Final[Mapping[str, Mapping[str, Field]]] = {
    # events
    "ready": {"version": Field(str, high=64), "game_running": _BOOL},
    "heartbeat": {
        "game_running": _BOOL,
        "players": _INT_OR_NULL,
        "idle_s": _SECONDS,
        "firewall_version": _FW_VERSION,
    },
    "players": {
        "count": _INT,
        "previous": _INT_OR_NULL,
        # Player names where the query protocol gives them (issue 17), else null.
        "names": Field(list, nullable=True, low=1, high=64, item_high=64),
    },
    "install.progress": {
        "phase": Field(str, choices=("download", "install", "done", "skipped", "failed")),
        "percent": Field(float, nullable=True, high=100),
        "version": Field(str, high=64),
        "message": Field(str, high=300),
    },
    "playable": {"after_s": _SECONDS, "signal": Field(str, choices=("query", "port", "log", "none"))},
    "idle.warning": {"idle_s": _SECONDS, "shutdown_in_s": _SECONDS},
    "idle.cleared": {"players": _INT},
    "idle.shutdown": {"idle_s": _SECONDS},
    "spot.notice": {
        "action": Field(str, high=64),
        "time": Field(str, high=64),
        "saved": _BOOL,
        "game_stopped": _BOOL,
    },
    "game.exited": {
        "exit_code": _EXIT_CODE,
        "restart_in_s": Field(float, nullable=True, high=_YEAR_S),
        "restarts": _INT,
    },
    "preload.progress": {"bytes_read": _SIZE, "bytes_total": _SIZE, "percent": Field(float, high=100)},
    "preload.done": {"device": Field(str, high=256), "bytes_read": _SIZE, "seconds": _SECONDS},
    "agent.error": {"code": Field(str, high=64), "message": _TEXT_FIELD},
    "firewall.resync": {"version": _FW_VERSION, "reason": Field(str, high=64)},
    # replies
    "error": {"code": Field(str, high=64), "message": _TEXT_FIELD},
    "game.start.reply": {"pid": _INT, "started": _BOOL},
    "game.stop.reply": {"was_running": _BOOL, "exit_code": _EXIT_CODE, "killed": _BOOL},
    "game.save.reply": {"saved": _BOOL, "synced": _BOOL},
    "game.install.reply": {"installed": _BOOL, "version": Field(str, high=64)},
    "status.reply": {
        "game": Field(dict),
        "players": _INT_OR_NULL,
        "idle": Field(dict),
        "disk": Field(dict, nullable=True),
        "firewall": Field(dict, nullable=True),
        "agent": Field(dict),
    },
    "sftp.open.reply": {
        "uri": Field(str, high=512),
        "username": Field(str, high=64),
        "password": Field(str, high=256),
        "host_key_sha256": Field(str, high=128),
        "expires_at": _EPOCH,
    },
    "disk.extend.reply": {
        "device": Field(str, high=256),
        "partition": _INT_OR_NULL,
        "filesystem": Field(str, high=64),
        "size_before_bytes": _SIZE,
        "size_after_bytes": _SIZE,
    },
    "disk.preload.reply": {"started": _BOOL, "device": Field(str, high=256)},
    "firewall.sync.reply": {"applied": _INT, "removed": _INT, "v4": _INT, "v6": _INT, "version": _FW_VERSION},
    "shutdown.reply": {"stopping": _BOOL, "poweroff": _BOOL},
}


def _finite(value: object) -> bool:
    """No NaN or infinity anywhere (JSON has none; `1e400` and Python's parser make them)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def check_body(kind: str, body: Mapping[str, object]) -> None:
    """Check an event's or reply's body against the contract.

    Keys the table lists are checked when present (a handler decides what it needs); keys it does not
    list are left for the handlers to ignore, so an agent a version ahead still gets through.

    Raises:
        ValueError: an unknown type, a value of the wrong type or out of range, or a non-finite number.
    """
    fields = BODIES.get(kind)
    if fields is None:
        raise ValueError(f"unknown agent message type {kind!r}")
    if not _finite(dict(body)):
        raise ValueError(f"{kind}: a number is not finite")
    for key, spec in fields.items():
        if key in body and (problem := spec.problem(body[key])) is not None:
            raise ValueError(f"{kind}: {key} {problem}")

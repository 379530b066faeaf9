"""The job message: everything the jobs Lambda needs to finish an interaction, as JSON.

A Lambda keeps no memory between invocations, so the message carries the caller's identity, roles and
permissions (for re-checks), the interaction token (to edit the reply) and the trace header.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from chalicelib.errors import ValidationError

__all__ = ["MAX_MESSAGE_BYTES", "JobMessage"]

MAX_MESSAGE_BYTES: Final = 64 * 1024
_SNOWFLAKE: Final = re.compile(r"[0-9]{1,20}")
_KIND: Final = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class JobMessage:
    """One deferred interaction."""

    interaction_id: str
    application_id: str
    token: str = field(repr=False)
    tenant_id: str
    channel_id: str | None
    user_id: str
    user_name: str
    role_ids: tuple[str, ...]
    permissions: int
    kind: str
    args: Mapping[str, Any]
    ephemeral: bool
    update: bool
    created_at: float
    command: str = ""
    trace: str | None = None

    def to_json(self) -> str:
        out = asdict(self)
        out["args"] = dict(self.args)
        return json.dumps(out, separators=(",", ":"))

    @classmethod
    def from_json(cls, body: str) -> JobMessage:
        """Parse and validate a queue message body.

        Raises:
            ValidationError: not a job message (malformed, oversized or of the wrong shape).
        """
        if len(body.encode()) > MAX_MESSAGE_BYTES:
            raise ValidationError("job message too large")
        try:
            raw = json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested past the stack
            raise ValidationError("job message is not JSON") from exc
        if not isinstance(raw, dict):
            raise ValidationError("job message is not an object")
        try:
            msg = cls(
                interaction_id=_snowflake(raw["interaction_id"]),
                application_id=_snowflake(raw["application_id"]),
                token=_text(raw["token"], 1000),
                tenant_id=_snowflake(raw["tenant_id"]),
                channel_id=None if raw.get("channel_id") is None else _snowflake(raw["channel_id"]),
                user_id=_snowflake(raw["user_id"]),
                user_name=_text(raw.get("user_name", ""), 100),
                role_ids=tuple(_snowflake(r) for r in _list(raw.get("role_ids", []))),
                permissions=_int(raw.get("permissions", 0)),
                kind=_kind(raw["kind"]),
                args=_dict(raw.get("args", {})),
                ephemeral=_bool(raw.get("ephemeral", True)),
                update=_bool(raw.get("update", False)),
                created_at=float(_number(raw["created_at"])),
                command=_text(raw.get("command", ""), 100),
                trace=None if raw.get("trace") is None else _text(raw["trace"], 256),
            )
        except KeyError as exc:
            raise ValidationError(f"job message lacks {exc.args[0]}") from exc
        return msg


def _snowflake(v: Any) -> str:
    if isinstance(v, str) and _SNOWFLAKE.fullmatch(v):
        return v
    raise ValidationError("job message has a malformed id")


def _text(v: Any, limit: int) -> str:
    if isinstance(v, str) and len(v) <= limit:
        return v
    raise ValidationError("job message has a malformed text field")


def _kind(v: Any) -> str:
    if isinstance(v, str) and _KIND.fullmatch(v):
        return v
    raise ValidationError("job message has a malformed kind")


def _list(v: Any) -> list[Any]:
    if isinstance(v, list) and len(v) <= 250:
        return v
    raise ValidationError("job message has a malformed list")


def _dict(v: Any) -> dict[str, Any]:
    if isinstance(v, dict):
        return v
    raise ValidationError("job message has malformed args")


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ValidationError("job message has a malformed flag")


def _number(v: Any) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    raise ValidationError("job message has a malformed number")


def _int(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    raise ValidationError("job message has a malformed integer")

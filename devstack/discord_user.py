"""Plays Discord's side of the interactions protocol: builds interactions and signs them for real.

People use it through `gangway discord`, tests use it directly; both sign with the stack's Ed25519 key,
so the app verifies exactly what it verifies in production. In the other direction it checks what
the app answers as Discord does: a 200 whose body is not a valid interaction callback (Discord's
published schema) raises `InvalidFormBody`, since Discord would show "This interaction failed".
"""

from __future__ import annotations

import itertools
import json
import secrets
import shlex
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from nacl.signing import SigningKey

from chalicelib.discord import CommandRegistry, InteractionType, Permission
from chalicelib.discord.payloads import ComponentType, OptionType
from devstack.discord_schemas import check_callback

__all__ = ["DiscordUser", "Who", "parse_command_line", "snowflake"]

_DISCORD_EPOCH_MS: Final = 1420070400000
_counter = itertools.count()
_counter_lock = threading.Lock()


def snowflake(at: float | None = None) -> str:
    """A fresh, unique snowflake whose timestamp is `at` (default now)."""
    ms = int((time.time() if at is None else at) * 1000) - _DISCORD_EPOCH_MS
    with _counter_lock:
        inc = next(_counter) & 0x3FFFFF
    return str((ms << 22) | inc)


@dataclass(frozen=True)
class Who:
    """The member sending an interaction."""

    guild_id: str | None = "100000000000000001"
    user_id: str = "200000000000000002"
    user_name: str = "local-admin"
    channel_id: str = "300000000000000003"
    role_ids: tuple[str, ...] = ()
    permissions: int = int(Permission.ADMINISTRATOR | Permission.MANAGE_GUILD)


def parse_command_line(line: str, registry: CommandRegistry | None = None) -> tuple[str, dict[str, Any]]:
    """`/games game:valheim` → ("games", {"game": "valheim"}), typed by the registry's option types."""
    words = shlex.split(line.strip())
    if not words or not words[0].startswith("/"):
        raise ValueError("a command line starts with /name")
    name = words[0][1:]
    options: dict[str, Any] = {}
    cmd = registry.by_name(name) if registry else None
    for word in words[1:]:
        key, sep, value = word.partition(":")
        if not sep:
            raise ValueError(f"options are written name:value, got {word!r}")
        spec = cmd.option(key) if cmd else None
        typed: Any = value
        if spec is not None and spec.type is OptionType.INTEGER:
            typed = int(value)
        elif spec is not None and spec.type is OptionType.NUMBER:
            typed = float(value)
        elif spec is not None and spec.type is OptionType.BOOLEAN:
            typed = value.lower() in {"1", "true", "yes"}
        options[key] = typed
    return name, options


@dataclass
class DiscordUser:
    """Builds, signs and posts interactions as Discord would."""

    signing_key: SigningKey
    application_id: str
    api_url: str = ""
    who: Who = field(default_factory=Who)

    @classmethod
    def from_stack(cls, stack: Mapping[str, Any], who: Who | None = None) -> DiscordUser:
        key = SigningKey(bytes.fromhex(stack["signing_key"]))
        return cls(key, stack["application_id"], stack["api_url"], who or Who())

    # -- payloads ------------------------------------------------------------------------------------

    def interaction(
        self,
        kind: InteractionType,
        data: Mapping[str, Any] | None,
        who: Who | None = None,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        w = who or self.who
        body: dict[str, Any] = {
            "id": snowflake(),
            "application_id": self.application_id,
            "type": int(kind),
            "token": "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48),
            "version": 1,
            "channel_id": w.channel_id,
            "locale": "en-GB",
            "app_permissions": "2147483647",
            "entitlements": [],
        }
        user = {"id": w.user_id, "username": w.user_name, "global_name": w.user_name}
        if w.guild_id is not None:
            body["guild_id"] = w.guild_id
            body["guild_locale"] = "en-US"
            body["member"] = {"user": user, "roles": list(w.role_ids), "permissions": str(w.permissions)}
        else:
            body["user"] = user
        if data is not None:
            body["data"] = dict(data)
        if message_id is not None:
            body["message"] = {"id": message_id, "content": "", "components": []}
        return body

    def command(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        who: Who | None = None,
        focused: str | None = None,
    ) -> dict[str, Any]:
        """An application command (or, with `focused`, its autocomplete)."""
        opts = [
            {"name": k, "type": _option_type(v), "value": v, **({"focused": True} if k == focused else {})}
            for k, v in (options or {}).items()
        ]
        data = {"id": snowflake(), "name": name, "type": 1, "options": opts}
        kind = InteractionType.AUTOCOMPLETE if focused else InteractionType.APPLICATION_COMMAND
        return self.interaction(kind, data, who)

    def line(
        self, line: str, registry: CommandRegistry | None = None, who: Who | None = None
    ) -> dict[str, Any]:
        name, options = parse_command_line(line, registry)
        return self.command(name, options, who)

    def component(
        self,
        custom_id: str,
        values: Iterable[str] | None = None,
        who: Who | None = None,
        component_type: ComponentType = ComponentType.BUTTON,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": int(component_type)}
        if values is not None:
            data["values"] = list(values)
        return self.interaction(InteractionType.MESSAGE_COMPONENT, data, who, message_id=snowflake())

    def modal_submit(
        self, custom_id: str, fields: Mapping[str, str], *, legacy: bool = False, who: Who | None = None
    ) -> dict[str, Any]:
        """A modal submit in the current Label shape, or the legacy Action Row shape."""
        if legacy:
            comps = [
                {"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]}
                for k, v in fields.items()
            ]
        else:
            comps = [
                {"type": 18, "id": i, "component": {"type": 4, "id": i + 100, "custom_id": k, "value": v}}
                for i, (k, v) in enumerate(fields.items(), start=1)
            ]
        data = {"custom_id": custom_id, "components": comps}
        return self.interaction(InteractionType.MODAL_SUBMIT, data, who)

    # -- signing and sending -------------------------------------------------------------------------

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        sig = self.signing_key.sign(ts.encode() + body).signature.hex()
        return {"Content-Type": "application/json", "X-Signature-Ed25519": sig, "X-Signature-Timestamp": ts}

    def post(
        self, payload: Mapping[str, Any] | bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """POST to the app's interactions endpoint; returns (status, decoded JSON or None).

        Raises:
            InvalidFormBody: the app answered 200 with a body Discord would refuse as a callback.
        """
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        hdrs = dict(self.sign(body)) if headers is None else dict(headers)
        req = urllib.request.Request(  # noqa: S310 - the local stack's URL
            self.api_url + "/discord/interactions", data=body, headers=hdrs, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - local stack URL
                raw = resp.read()
                answer = json.loads(raw) if raw else None
                if resp.status == 200:
                    check_callback(answer)
                return resp.status, answer
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, raw.decode(errors="replace")


def _option_type(value: Any) -> int:
    if isinstance(value, bool):
        return int(OptionType.BOOLEAN)
    if isinstance(value, int):
        return int(OptionType.INTEGER)
    if isinstance(value, float):
        return int(OptionType.NUMBER)
    return int(OptionType.STRING)

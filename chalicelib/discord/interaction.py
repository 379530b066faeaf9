"""Parse an incoming interaction into a typed, validated value (discord-protocol.md §2, §6).

The body is signed by Discord, but we still treat its shape as untrusted: anything that is not the
documented shape becomes `BadRequest` (400) instead of a KeyError deep in a handler.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from chalicelib.discord.payloads import ComponentType, InteractionType, OptionType
from chalicelib.errors import BadRequest, ValidationError

__all__ = ["Interaction", "OptionValue", "parse_interaction"]

OptionValue: TypeAlias = str | int | float | bool
FieldValue: TypeAlias = str | tuple[str, ...]

_SNOWFLAKE: Final = re.compile(r"[0-9]{1,20}")
_MAX_TOKEN: Final = 1000
_MAX_DEPTH: Final = 3


@dataclass(frozen=True)
class Interaction:
    """The facts of one interaction that handlers may rely on."""

    id: str
    type: InteractionType
    application_id: str
    token: str
    user_id: str
    user_name: str = ""
    guild_id: str | None = None
    channel_id: str | None = None
    role_ids: frozenset[str] = frozenset()
    permissions: int = 0
    locale: str = "en-US"
    command: str = ""
    options: Mapping[str, OptionValue] = field(default_factory=dict)
    focused: str | None = None
    custom_id: str = ""
    values: tuple[str, ...] = ()
    fields: Mapping[str, FieldValue] = field(default_factory=dict)
    message_id: str | None = None

    def chosen_ids(self) -> tuple[str, ...]:
        """What a role, user or channel select sent: Discord sends ids (snowflakes) there, so anything
        else is a request Discord did not make.

        Raises:
            ValidationError: a value that is not an id; nothing is saved.
        """
        if not all(_SNOWFLAKE.fullmatch(v) for v in self.values):
            raise ValidationError("That choice isn't one Discord sent; pick it again from the list.")
        return self.values


def _snowflake(value: Any, what: str) -> str:
    if isinstance(value, str) and _SNOWFLAKE.fullmatch(value):
        return value
    raise BadRequest(f"{what} is not a snowflake")


def _opt_snowflake(value: Any, what: str) -> str | None:
    return None if value is None else _snowflake(value, what)


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    raise BadRequest(f"{what} is not an object")


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise BadRequest(f"{what} is not a list")


def _str(value: Any, what: str, limit: int = 4000) -> str:
    if isinstance(value, str) and len(value) <= limit:
        return value
    raise BadRequest(f"{what} is not a string of at most {limit} characters")


def parse_interaction(body: Any) -> Interaction:
    """Build an `Interaction` from decoded JSON.

    Raises:
        BadRequest: the body is not an interaction of a type we understand.
    """
    raw = _obj(body, "interaction")
    try:
        kind = InteractionType(raw["type"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest("unknown interaction type") from exc
    if kind is InteractionType.PING:
        return Interaction(id="0", type=kind, application_id="0", token="", user_id="0")
    member = raw.get("member")
    user = _obj(_obj(member, "member").get("user") if member is not None else raw.get("user"), "user")
    roles: frozenset[str] = frozenset()
    permissions = 0
    if member is not None:
        roles = frozenset(_snowflake(r, "role id") for r in _list(member.get("roles"), "member.roles"))
        perms = member.get("permissions", "0")
        if not isinstance(perms, str) or not perms.isdigit():
            raise BadRequest("member.permissions is not a decimal string")
        permissions = int(perms)
    data = _obj(raw.get("data", {}), "data")
    common: dict[str, Any] = {
        "id": _snowflake(raw.get("id"), "id"),
        "type": kind,
        "application_id": _snowflake(raw.get("application_id"), "application_id"),
        "token": _str(raw.get("token"), "token", _MAX_TOKEN),
        "user_id": _snowflake(user.get("id"), "user id"),
        "user_name": _str(user.get("global_name") or user.get("username") or "", "user name", 100),
        "guild_id": _opt_snowflake(raw.get("guild_id"), "guild_id"),
        "channel_id": _opt_snowflake(raw.get("channel_id"), "channel_id"),
        "role_ids": roles,
        "permissions": permissions,
        "locale": _str(raw.get("locale", "en-US"), "locale", 16),
        "message_id": _opt_snowflake(_obj(raw["message"], "message").get("id"), "message id")
        if raw.get("message") is not None
        else None,
    }
    if kind in (InteractionType.APPLICATION_COMMAND, InteractionType.AUTOCOMPLETE):
        path, options, focused = _command_options(data)
        return Interaction(**common, command=path, options=options, focused=focused)
    custom_id = _str(data.get("custom_id"), "custom_id", 100)
    if kind is InteractionType.MESSAGE_COMPONENT:
        values = tuple(_str(v, "select value", 100) for v in _list(data.get("values"), "values"))
        return Interaction(**common, custom_id=custom_id, values=values)
    return Interaction(**common, custom_id=custom_id, fields=_modal_fields(data))


def _command_options(data: Mapping[str, Any]) -> tuple[str, dict[str, OptionValue], str | None]:
    """Flatten `data.options` into (command path, values by name, focused option name)."""
    path = [_str(data.get("name"), "command name", 32)]
    options: dict[str, OptionValue] = {}
    focused: str | None = None
    level = _list(data.get("options"), "options")
    for _ in range(_MAX_DEPTH):
        nested: list[Any] | None = None
        for item in level:
            opt = _obj(item, "option")
            name = _str(opt.get("name"), "option name", 32)
            if opt.get("type") in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP):
                path.append(name)
                nested = _list(opt.get("options"), "options")
                continue
            value = opt.get("value")
            if not isinstance(value, str | int | float | bool) or (
                isinstance(value, str) and len(value) > 6000
            ):
                raise BadRequest(f"option {name} has no usable value")
            options[name] = value
            if opt.get("focused") is True:
                focused = name
        if nested is None:
            break
        level = nested
    return " ".join(path), options, focused


def _modal_fields(data: Mapping[str, Any]) -> dict[str, FieldValue]:
    """Read both modal shapes: Label-wrapped (type 18) and legacy Action-Row-wrapped (§6)."""
    fields: dict[str, FieldValue] = {}
    for item in _list(data.get("components"), "components"):
        top = _obj(item, "component")
        if top.get("type") == ComponentType.LABEL:
            inner = [top.get("component")]
        elif top.get("type") == ComponentType.ACTION_ROW:
            inner = _list(top.get("components"), "components")
        else:
            continue  # text displays and other read-only parts carry no value
        for part in inner:
            comp = _obj(part, "component")
            cid = comp.get("custom_id")
            if cid is None:
                continue
            cid = _str(cid, "custom_id", 100)
            if "values" in comp:
                fields[cid] = tuple(_str(v, "value", 100) for v in _list(comp["values"], "values"))
            else:
                fields[cid] = _str(comp.get("value", ""), "value", 4000)
    return fields

"""The command model: declare commands with a decorator, get validation and registration JSON.

A command's typed signature is its option schema (options.py); names, descriptions and counts are
checked against Discord's limits when the decorator runs, so a bad definition fails at import (and so
in every test run), never in a live registration. `CommandRegistry.to_payload()` is the single source
of the bulk-overwrite body.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeVar

from chalicelib.discord.options import NAME_RE, OptionSpec, options_from_signature
from chalicelib.discord.payloads import JSON, LIMITS, CommandType, Permission
from chalicelib.discord.replies import Choices, Response

__all__ = ["Command", "CommandRegistry", "Level", "Route"]

Handler = TypeVar("Handler", bound=Callable[..., Response])
Provider = TypeVar("Provider", bound=Callable[..., Choices])


class Level(IntEnum):
    """Who may use a command: everyone, the tenant's main role, or its admin role."""

    WELCOME = 0
    MAIN = 1
    ADMIN = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def default_permissions(self) -> Permission | None:
        """What registration asks Discord to require by default (admins may override per role).

        Discord's defaults only hide commands; dispatch re-checks the tenant's roles every time.
        """
        return Permission.MANAGE_GUILD if self is Level.ADMIN else None


@dataclass(frozen=True)
class Command:
    """A chat-input command: schema, access level and the function that answers it."""

    name: str
    description: str
    level: Level
    options: tuple[OptionSpec, ...]
    callback: Callable[..., Response]
    # A Discord permission the caller must hold (checked at dispatch too), e.g. Manage Server for /setup.
    permission: Permission | None = None
    # False for commands that must work before /setup (help, setup itself).
    needs_tenant: bool = True
    usage_notes: str = ""

    def option(self, name: str) -> OptionSpec | None:
        return next((o for o in self.options if o.name == name), None)

    @property
    def usage(self) -> str:
        parts = [f"/{self.name}"]
        parts += [f"{o.name}:<{o.name}>" if o.required else f"[{o.name}]" for o in self.options]
        return " ".join(parts)

    def to_dict(self) -> JSON:
        """This command's entry in the bulk-overwrite payload (discord-protocol.md §5)."""
        perm = self.permission or self.level.default_permissions
        return {
            "type": CommandType.CHAT_INPUT,
            "name": self.name,
            "description": self.description,
            "options": [o.to_dict() for o in self.options],
            "default_member_permissions": None if perm is None else str(int(perm)),
            "contexts": [0],  # guild only: every command acts on a guild's tenant
            "integration_types": [0],
        }


@dataclass(frozen=True)
class Route:
    """A component or modal handler, found by the `domain:action` prefix of a custom_id."""

    prefix: str
    callback: Callable[..., Response]
    level: Level
    permission: Permission | None = None


def _check_text(what: str, value: str, low: int, high: int) -> None:
    if not low <= len(value) <= high:
        raise ValueError(f"{what} must be {low}-{high} characters, got {len(value)}: {value!r}")


def _command_size(cmd: JSON) -> int:
    """Characters Discord counts towards the 8000 limit: names, descriptions and choice values."""
    total = len(cmd["name"]) + len(cmd["description"])
    for opt in cmd["options"]:
        total += len(opt["name"]) + len(opt["description"])
        for choice in opt.get("choices", []):
            total += len(choice["name"]) + len(str(choice["value"]))
    return total


@dataclass
class CommandRegistry:
    """Commands, component and modal routes, and autocomplete providers of one application."""

    commands: dict[str, Command] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    providers: dict[str, Callable[..., Choices]] = field(default_factory=dict)

    def command(
        self,
        *,
        level: Level = Level.WELCOME,
        name: str | None = None,
        permission: Permission | None = None,
        needs_tenant: bool = True,
    ) -> Callable[[Handler], Handler]:
        """Declare a command; the first docstring line is its description, `Args:` its options.

        Raises:
            ValueError, TypeError: the definition breaks one of Discord's rules.
        """

        def decorate(fn: Handler) -> Handler:
            cmd_name = name or fn.__name__.rstrip("_")
            doc = inspect.getdoc(fn) or ""
            description = doc.splitlines()[0] if doc else ""
            if not NAME_RE.fullmatch(cmd_name) or cmd_name != cmd_name.lower():
                raise ValueError(f"invalid command name {cmd_name!r}")
            _check_text(f"/{cmd_name} description", description, 1, LIMITS.command_description)
            options = options_from_signature(fn)
            if len(options) > LIMITS.options:
                raise ValueError(f"/{cmd_name} has more than {LIMITS.options} options")
            for opt in options:
                if not NAME_RE.fullmatch(opt.name):
                    raise ValueError(f"/{cmd_name}: invalid option name {opt.name!r}")
                _check_text(f"/{cmd_name} {opt.name} description", opt.description, 1, 100)
                if opt.choices is not None and len(opt.choices.pairs) > LIMITS.choices:
                    raise ValueError(f"/{cmd_name} {opt.name}: more than {LIMITS.choices} choices")
                if opt.choices is not None and opt.autocomplete is not None:
                    raise ValueError(f"/{cmd_name} {opt.name}: choices and autocomplete exclude each other")
            if cmd_name in self.commands:
                raise ValueError(f"/{cmd_name} is declared twice")
            if len(self.commands) >= LIMITS.commands:
                raise ValueError(f"more than {LIMITS.commands} commands")
            cmd = Command(
                name=cmd_name,
                description=description,
                level=level,
                options=options,
                callback=fn,
                permission=permission,
                needs_tenant=needs_tenant,
                usage_notes="\n".join(doc.split("\n\n")[1:2]) if "\n\n" in doc else "",
            )
            if _command_size(cmd.to_dict()) > LIMITS.command_total_chars:
                raise ValueError(f"/{cmd_name} exceeds {LIMITS.command_total_chars} characters")
            self.commands[cmd_name] = cmd
            return fn

        return decorate

    def route(
        self, prefix: str, *, level: Level = Level.WELCOME, permission: Permission | None = None
    ) -> Callable[[Handler], Handler]:
        """Declare the handler of components or modals whose custom_id starts with `prefix:`."""
        if prefix.count(":") != 1 or len(prefix) > 60:
            raise ValueError(f"route prefix must be 'domain:action', got {prefix!r}")

        def decorate(fn: Handler) -> Handler:
            if prefix in self.routes:
                raise ValueError(f"route {prefix!r} declared twice")
            self.routes[prefix] = Route(prefix=prefix, callback=fn, level=level, permission=permission)
            return fn

        return decorate

    def autocomplete(self, provider: str) -> Callable[[Provider], Provider]:
        """Declare an autocomplete provider that options name with `Autocomplete(provider)`."""

        def decorate(fn: Provider) -> Provider:
            self.providers[provider] = fn
            return fn

        return decorate

    def find_route(self, custom_id: str) -> tuple[Route, list[str]] | None:
        """The route for a custom_id and the arguments after its prefix."""
        parts = custom_id.split(":")
        route = self.routes.get(":".join(parts[:2]))
        return None if route is None else (route, parts[2:])

    def validate(self) -> None:
        """Check cross-references once every module has declared its parts.

        Raises:
            ValueError: an option names an autocomplete provider nobody declared.
        """
        for cmd in self.commands.values():
            for opt in cmd.options:
                if opt.autocomplete is not None and opt.autocomplete.provider not in self.providers:
                    raise ValueError(f"/{cmd.name} {opt.name}: no provider {opt.autocomplete.provider!r}")

    def to_payload(self) -> list[JSON]:
        """The body of PUT /applications/{id}/commands, sorted by name for stable diffs."""
        return [self.commands[n].to_dict() for n in sorted(self.commands)]

    def payload_json(self) -> str:
        return json.dumps(self.to_payload(), indent=2, sort_keys=True) + "\n"

    def describe(self, level: Level) -> list[Command]:
        """Commands a caller of `level` may use, by name."""
        return [self.commands[n] for n in sorted(self.commands) if self.commands[n].level <= level]

    def by_name(self, name: str) -> Command | None:
        return self.commands.get(name)

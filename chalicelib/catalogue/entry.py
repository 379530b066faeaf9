"""One catalogue entry as frozen values: what a game is, how it installs, starts, stops, saves, is
queried and counted ready, what the admin may set, and what it needs to run.

The entries themselves are data (`games/*.toml`, read by `load.py`); the agent gets an entry as the
`[launch]`, `[install]`, `[query]` and `[ready]` sections of its config (agent/examples/agent.toml),
rendered by lifecycle/bootstrap.py from `Entry.resolve(values)`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "FIELD_REF",
    "Entry",
    "FormField",
    "Install",
    "Launch",
    "Ports",
    "Query",
    "Ready",
    "Resolved",
    "Sizes",
]

InstallMethod = Literal["apt", "podman", "steamcmd", "download"]
QueryProtocol = Literal["minecraft-java", "minecraft-bedrock", "a2s", "quake3", "none"]
ReadySignal = Literal["query", "port", "log", "none"]
FieldType = Literal["string", "integer"]
# `{field}` in a launch argument or an env value: where a form value goes.
FIELD_REF: Final = re.compile(r"\{([a-z][a-z0-9_]{0,31})\}")


@dataclass(frozen=True)
class Install:
    """How the game's server gets onto the data disk (the agent's `[install]`, issue 17 seam)."""

    method: InstallMethod
    version: str
    packages: tuple[str, ...] = ()
    image: str | None = None
    app_id: int | None = None
    url: str | None = None
    sha256: str | None = None
    archive: Literal["zip", "tar", "none"] | None = None
    dir: str | None = None
    # podman: where `dir` appears inside the container (the image's data folder; the agent's default /data).
    mount: str | None = None


@dataclass(frozen=True)
class Launch:
    """How the agent starts, saves and stops the game; `{field}` marks a form value."""

    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    stop_signal: str = "SIGTERM"
    stop_grace_s: int = 60
    # Lines written to the game's console (its stdin): to save, and to stop it before the signal.
    console_save: str | None = None
    console_stop: str | None = None


@dataclass(frozen=True)
class Ports:
    """The ports players reach, and the page that documents them."""

    tcp: tuple[int, ...]
    udp: tuple[int, ...]
    source: str

    def normalised(self) -> tuple[str, ...]:
        """As a game's settings hold them (`tcp:25565`, `udp:2456`): what its firewall opens."""
        return (*(f"tcp:{p}" for p in self.tcp), *(f"udp:{p}" for p in self.udp))


@dataclass(frozen=True)
class Query:
    """How the agent asks the game who is on it."""

    protocol: QueryProtocol
    port: int
    host: str = "127.0.0.1"
    interval_s: int = 30


@dataclass(frozen=True)
class Ready:
    """When the game counts as playable (not just started)."""

    signal: ReadySignal
    port: int | None = None
    proto: Literal["tcp", "udp"] = "tcp"
    pattern: str | None = None
    timeout_s: int = 900


@dataclass(frozen=True)
class FormField:
    """One setting the admin chooses at /newgame, and how it reaches the game (an env var, or `{id}`
    in the launch command)."""

    id: str
    label: str
    type: FieldType
    default: str
    min: int
    max: int
    env: str | None = None
    required: bool = True

    def check(self, raw: str) -> str:
        """The value as the game gets it, or ValueError saying (in words) what is wrong with it."""
        value = raw.strip()
        if not value and not self.required:
            return ""
        if self.type == "integer":
            if not re.fullmatch(r"-?[0-9]{1,9}", value):
                raise ValueError(f"{self.label} must be a whole number from {self.min} to {self.max}")
            if not self.min <= int(value) <= self.max:
                raise ValueError(f"{self.label} must be from {self.min} to {self.max}, not {value}")
            return str(int(value))
        if not self.min <= len(value) <= self.max:
            raise ValueError(f"{self.label} must be {self.min} to {self.max} characters long")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError(f"{self.label} must be one line of plain text")
        return value


@dataclass(frozen=True)
class Sizes:
    """What the game needs: recommended instance types (arm64 only where its server runs there)."""

    x86: str
    memory_gb: float
    disk_gb: int
    arm64: str | None = None


@dataclass(frozen=True)
class Resolved:
    """An entry with the admin's values filled in: exactly what the agent's config says."""

    entry: Entry
    values: tuple[tuple[str, str], ...]
    install_version: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Entry:
    """One game of the catalogue."""

    id: str
    name: str
    description: str
    install: Install
    launch: Launch
    ports: Ports
    query: Query | None
    ready: Ready
    form: tuple[FormField, ...]
    sizes: Sizes
    # How players join: `{host}` and `{port}` (the first game port) filled in, e.g. `host:27960`.
    connect: str
    # How to join, in words, for /help game (which client, where to type the address).
    join: str
    # The port players connect to (one of `ports`).
    connect_port: int

    def field(self, field_id: str) -> FormField | None:
        return next((f for f in self.form if f.id == field_id), None)

    def defaults(self) -> dict[str, str]:
        return {f.id: f.default for f in self.form}

    def check_values(self, raw: Mapping[str, str]) -> dict[str, str]:
        """Every form value checked (defaults for those not given).

        Raises:
            ValueError: a value breaks its field's limits, or names no field (the message is words).
        """
        unknown = sorted(set(raw) - {f.id for f in self.form})
        if unknown:
            raise ValueError(f"{self.name} has no setting called `{unknown[0][:32]}`")
        return {f.id: f.check(raw.get(f.id, f.default)) for f in self.form}

    def connect_string(self, host: str) -> str:
        """What a player types or clicks to join, for a server at `host`."""
        return self.connect.replace("{host}", host).replace("{port}", str(self.connect_port))

    def resolve(self, values: Mapping[str, str], install_version: str | None = None) -> Resolved:
        """The launch with `values` in place of `{field}` (defaults for missing ones).

        Raises:
            ValueError: a value breaks its field's limits.
        """
        checked = self.check_values({k: v for k, v in values.items() if self.field(k) is not None})

        def fill(text: str) -> str:
            return FIELD_REF.sub(lambda m: checked[m.group(1)], text)

        env = [(k, fill(v)) for k, v in self.launch.env]
        env += [(f.env, checked[f.id]) for f in self.form if f.env and checked[f.id] != ""]
        return Resolved(
            entry=self,
            values=tuple(sorted(checked.items())),
            install_version=install_version or self.install.version,
            command=tuple(fill(a) for a in self.launch.command),
            env=tuple(env),
        )

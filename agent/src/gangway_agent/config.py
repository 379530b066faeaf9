"""The agent's configuration: one JSON or TOML file written by the instance's user data.

Read once at start (``load``); every value is checked here so the rest of the agent can trust it.
A malformed file raises ConfigError naming the offending key.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import signal
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, TypeVar

from .catalogueconfig import (
    ArchiveKind,
    InstallConfig,
    InstallMethod,
    Proto,
    ReadyConfig,
    ReadySignal,
    parse_install,
    parse_ready,
)
from .errors import ConfigError

__all__ = ["ArchiveKind", "Config", "DataConfig", "FirewallConfig", "GameConfig", "IdleConfig",
           "InstallConfig", "InstallMethod", "LaunchMode", "LogConfig", "LogSinkKind", "MqttConfig", "Ports",
           "Proto", "QueryConfig", "QueryProtocol", "ReadyConfig", "ReadySignal", "SftpConfig", "SpotConfig",
           "Transport", "load", "parse"]

_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_LABEL: Final = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME: Final = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


class Transport(StrEnum):
    """How the MQTT link connects: mutual TLS (IoT Core) or plain TCP (local Mosquitto only)."""

    MTLS = "mtls"
    PLAIN = "plain"


class LogSinkKind(StrEnum):
    """Where the game's stdout/stderr go."""

    FILE = "file"
    CLOUDWATCH = "cloudwatch"
    NONE = "none"


class LaunchMode(StrEnum):
    """How the game is run: a child process of the agent, or its own systemd unit (on an instance)."""

    PROCESS = "process"
    SYSTEMD = "systemd"


class QueryProtocol(StrEnum):
    """How the game tells who is on it (``[query]``; query/ speaks each)."""

    MINECRAFT_JAVA = "minecraft-java"
    MINECRAFT_BEDROCK = "minecraft-bedrock"
    A2S = "a2s"
    QUAKE3 = "quake3"
    NONE = "none"


# Each protocol's usual port, for a [query] that names none.
QUERY_PORTS: Final = {
    QueryProtocol.MINECRAFT_JAVA: 25565,
    QueryProtocol.MINECRAFT_BEDROCK: 19132,
    QueryProtocol.A2S: 27015,
    QueryProtocol.QUAKE3: 27960,
}


@dataclass(frozen=True)
class MqttConfig:
    endpoint: str
    port: int
    transport: Transport
    client_id: str
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    offline_queue: int = 1000
    min_reconnect_s: float = 1.0
    max_reconnect_s: float = 60.0


@dataclass(frozen=True)
class Ports:
    tcp: tuple[int, ...] = ()
    udp: tuple[int, ...] = ()


@dataclass(frozen=True)
class GameConfig:
    command: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)
    stop_command: tuple[str, ...] | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    stop_grace_s: float = 30.0
    save_command: tuple[str, ...] | None = None
    ports: Ports = Ports()
    player_probe: tuple[str, ...] | None = None
    autostart: bool = True
    user: str | None = None
    group: str | None = None
    restart_backoff_s: float = 2.0
    restart_backoff_max_s: float = 300.0
    # systemd: a transient service `<unit>.service` as `user`, its output in the journal (supervisor.py).
    mode: LaunchMode = LaunchMode.PROCESS
    unit: str = "gangway-game"
    # A line written to the game's console (its stdin, console.py) to save / to stop it (then stop_signal).
    console_save: str | None = None
    console_stop: str | None = None


@dataclass(frozen=True)
class IdleConfig:
    warn_after_s: float = 1200.0
    stop_after_s: float = 1800.0
    startup_grace_s: float = 600.0
    check_interval_s: float = 60.0


@dataclass(frozen=True)
class QueryConfig:
    """The game's own player query: when set, it (not traffic) says who is playing."""

    protocol: QueryProtocol
    host: str = "127.0.0.1"
    port: int = 27960
    interval_s: float = 30.0


@dataclass(frozen=True)
class SftpConfig:
    enabled: bool = True
    port: int = 2222
    listen: str = "0.0.0.0"
    chroot: Path = Path("/srv/gangway")
    start_dir: str = "/game"
    user: str = "gangway"
    advertise_host: str | None = None
    otp_ttl_s: float = 900.0
    sshd: Path = Path("/usr/sbin/sshd")
    service_name: str = "sshd-gangway"
    link_dir: Path = Path("/usr/local/sbin")
    pam_dir: Path = Path("/etc/pam.d")


@dataclass(frozen=True)
class FirewallConfig:
    enabled: bool = True
    table: str = "gangway"
    reconcile_interval_s: float = 300.0


@dataclass(frozen=True)
class LogConfig:
    sink: LogSinkKind = LogSinkKind.FILE
    path: Path = Path("/var/log/gangway/game.log")
    group: str = ""
    batch_lines: int = 1024
    flush_interval_s: float = 3.0


@dataclass(frozen=True)
class DataConfig:
    mountpoint: Path = Path("/srv/gangway")
    device: Path | None = None


@dataclass(frozen=True)
class SpotConfig:
    enabled: bool = True
    imds_url: str = "http://169.254.169.254"
    interval_s: float = 5.0


@dataclass(frozen=True)
class Config:
    tenant: str
    game: str
    mqtt: MqttConfig
    launch: GameConfig
    state_dir: Path = Path("/var/lib/gangway")
    idle: IdleConfig = IdleConfig()
    sftp: SftpConfig = SftpConfig()
    firewall: FirewallConfig = FirewallConfig()
    logs: LogConfig = LogConfig()
    data: DataConfig = DataConfig()
    spot: SpotConfig = SpotConfig()
    heartbeat_interval_s: float = 60.0
    shutdown_command: tuple[str, ...] | None = None
    query: QueryConfig | None = None
    install: InstallConfig | None = None
    ready: ReadyConfig = field(default_factory=ReadyConfig)

    @property
    def cmd_topic(self) -> str:
        return f"gangway/{self.tenant}/{self.game}/cmd"

    @property
    def evt_topic(self) -> str:
        return f"gangway/{self.tenant}/{self.game}/evt"


def load(path: Path) -> Config:
    """Read and check the config file (``.toml`` is TOML, anything else JSON).

    Raises:
        ConfigError: the file is missing, unparsable, or a key is missing or has a bad value.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        data: object = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"config {path} is nested too deeply to read") from None
    return parse(data)


def parse(data: object) -> Config:
    """Build a Config from decoded JSON/TOML data. Raises ConfigError."""
    top = _Section(data, "")
    tenant = top.name("tenant")
    game = top.name("game")
    mqtt = _mqtt(top.section("mqtt"), tenant, game)
    launch = _game(top.section("launch"), image_args=_podman_install(top))
    idle_s = top.section("idle", optional=True)
    idle = IdleConfig(
        warn_after_s=idle_s.number("warn_after_s", 1200.0),
        stop_after_s=idle_s.number("stop_after_s", 1800.0),
        startup_grace_s=idle_s.number("startup_grace_s", 600.0),
        check_interval_s=idle_s.number("check_interval_s", 60.0, minimum=0.1),
    )
    if idle.stop_after_s <= idle.warn_after_s:
        raise ConfigError("idle.stop_after_s must be greater than idle.warn_after_s")
    sf = top.section("sftp", optional=True)
    sftp = SftpConfig(
        enabled=sf.boolean("enabled", True),
        port=sf.port("port", 2222),
        listen=sf.string("listen", "0.0.0.0"),
        chroot=Path(sf.string("chroot", "/srv/gangway")),
        start_dir=sf.string("start_dir", "/game"),
        user=sf.name("user", "gangway"),
        advertise_host=sf.string("advertise_host", None),
        otp_ttl_s=sf.number("otp_ttl_s", 900.0, minimum=1),
        sshd=Path(sf.string("sshd", "/usr/sbin/sshd")),
        service_name=sf.name("service_name", "sshd-gangway"),
        link_dir=Path(sf.string("link_dir", "/usr/local/sbin")),
        pam_dir=Path(sf.string("pam_dir", "/etc/pam.d")),
    )
    fw = top.section("firewall", optional=True)
    firewall = FirewallConfig(
        enabled=fw.boolean("enabled", True),
        table=fw.name("table", "gangway"),
        reconcile_interval_s=fw.number("reconcile_interval_s", 300.0, minimum=1),
    )
    lg = top.section("logs", optional=True)
    logs = LogConfig(
        sink=lg.choice("sink", LogSinkKind, LogSinkKind.FILE),
        path=Path(lg.string("path", "/var/log/gangway/game.log")),
        group=lg.string("group", f"gangway/{tenant}/{game}"),
        batch_lines=int(lg.number("batch_lines", 1024, minimum=1)),
        flush_interval_s=lg.number("flush_interval_s", 3.0, minimum=0.05),
    )
    dt = top.section("data", optional=True)
    device = dt.string("device", None)
    data_cfg = DataConfig(mountpoint=Path(dt.string("mountpoint", "/srv/gangway")),
                          device=Path(device) if device else None)
    sp = top.section("spot", optional=True)
    spot = SpotConfig(
        enabled=sp.boolean("enabled", True),
        imds_url=sp.string("imds_url", "http://169.254.169.254").rstrip("/"),
        interval_s=sp.number("interval_s", 5.0, minimum=0.05),
    )
    query = _query(top.section("query", optional=True))
    ready = parse_ready(top)
    if ready.signal is ReadySignal.QUERY and query is None:
        raise ConfigError('ready.signal = "query" needs a [query] table naming the game\'s query protocol')
    return Config(
        tenant=tenant, game=game, mqtt=mqtt, launch=launch,
        state_dir=Path(top.string("state_dir", "/var/lib/gangway")),
        idle=idle, sftp=sftp, firewall=firewall, logs=logs, data=data_cfg, spot=spot,
        heartbeat_interval_s=top.number("heartbeat_interval_s", 60.0, minimum=0.1),
        shutdown_command=top.argv("shutdown_command", optional=True),
        query=query,
        install=parse_install(top, launch.cwd),
        ready=ready,
    )


def _mqtt(s: _Section, tenant: str, game: str) -> MqttConfig:
    transport = s.choice("transport", Transport, Transport.MTLS)
    paths = {k: s.string(k, None) for k in ("cert", "key", "ca")}
    if transport is Transport.MTLS:
        missing = [k for k, v in paths.items() if not v]
        if missing:
            raise ConfigError(f"mqtt.transport is mtls but mqtt.{', mqtt.'.join(missing)} missing")
    cfg = MqttConfig(
        endpoint=s.string("endpoint"),
        port=s.port("port", 8883 if transport is Transport.MTLS else 1883),
        transport=transport,
        client_id=s.string("client_id", f"gangway-{tenant}-{game}"),
        cert=Path(p) if (p := paths["cert"]) else None,
        key=Path(p) if (p := paths["key"]) else None,
        ca=Path(p) if (p := paths["ca"]) else None,
        offline_queue=int(s.number("offline_queue", 1000, minimum=1)),
        min_reconnect_s=s.number("min_reconnect_s", 1.0, minimum=0.01),
        max_reconnect_s=s.number("max_reconnect_s", 60.0, minimum=0.01),
    )
    return cfg


def _query(s: _Section) -> QueryConfig | None:
    """``[query]``: absent or ``protocol = "none"`` leaves players to traffic or the probe command.

    The host is an IPv4 address or a host name (not one made of digits, which would be a bad address):
    every query is asked over IPv4, as mcstatus's Bedrock client does.
    """
    if s.empty:
        return None
    s.raw("protocol")  # required once the table is there
    protocol = s.choice("protocol", QueryProtocol, QueryProtocol.NONE)
    if protocol is QueryProtocol.NONE:
        return None
    host = s.string("host", "127.0.0.1")
    try:
        usable = ipaddress.ip_address(host).version == 4
    except ValueError:
        usable = bool(_HOST_NAME.match(host)) and not host.replace(".", "").isdigit()
    if not usable:
        raise ConfigError("query.host must be an IPv4 address or a host name")
    return QueryConfig(
        protocol=protocol,
        host=host,
        port=s.port("port", QUERY_PORTS[protocol]),
        interval_s=s.number("interval_s", 30.0, minimum=1),
    )


def _podman_install(top: _Section) -> bool:
    """True when `[install]` runs a podman image: launch.command is then the image's arguments (may be [])."""
    raw = top.raw("install", None)
    return isinstance(raw, dict) and raw.get("method") == InstallMethod.PODMAN.value


def _game(s: _Section, *, image_args: bool = False) -> GameConfig:
    sig_name = s.string("stop_signal", "SIGTERM")
    try:
        stop_signal = signal.Signals[sig_name if sig_name.startswith("SIG") else f"SIG{sig_name}"]
    except KeyError as exc:
        raise ConfigError(f"launch.stop_signal: unknown signal {sig_name!r}") from exc
    env = s.raw("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ConfigError("launch.env must be a table of strings")
    ports = s.section("ports", optional=True)
    command = () if image_args and s.raw("command", None) == [] else s.argv("command")
    assert command is not None
    return GameConfig(
        command=command,
        cwd=Path(s.string("cwd")),
        env=dict(env),
        stop_command=s.argv("stop_command", optional=True),
        stop_signal=stop_signal,
        stop_grace_s=s.number("stop_grace_s", 30.0),
        save_command=s.argv("save_command", optional=True),
        ports=Ports(tcp=ports.port_list("tcp"), udp=ports.port_list("udp")),
        player_probe=s.argv("player_probe", optional=True),
        autostart=s.boolean("autostart", True),
        user=s.string("user", None),
        group=s.string("group", None),
        restart_backoff_s=s.number("restart_backoff_s", 2.0, minimum=0.01),
        restart_backoff_max_s=s.number("restart_backoff_max_s", 300.0, minimum=0.01),
        mode=s.choice("mode", LaunchMode, LaunchMode.PROCESS),
        unit=s.name("unit", "gangway-game"),
        console_save=s.line("console_save"),
        console_stop=s.line("console_stop"),
    )


_MISSING: Final = object()
_E = TypeVar("_E", bound=StrEnum)


class _Section:
    """Typed access to one table of the config, with the key path in every error."""

    def __init__(self, data: object, prefix: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{prefix or 'config'} must be a table/object")
        self._data: dict[str, Any] = data
        self._prefix = prefix

    @property
    def empty(self) -> bool:
        return not self._data

    def _key(self, key: str) -> str:
        return f"{self._prefix}{key}"

    def keys(self) -> set[str]:
        return set(self._data)

    def has(self, key: str) -> bool:
        return key in self._data

    def line(self, key: str) -> str | None:
        """One console line (optional): printable, no line breaks, at most 200 characters."""
        value = self.raw(key, None)
        if value is None:
            return None
        if not isinstance(value, str) or not 0 < len(value) <= 200 or not value.isprintable():
            raise ConfigError(f"{self._key(key)} must be one line of 1-200 printable characters")
        return value

    def raw(self, key: str, default: object = _MISSING) -> object:
        if key in self._data:
            return self._data[key]
        if default is _MISSING:
            raise ConfigError(f"missing required key {self._key(key)}")
        return default

    def section(self, key: str, *, optional: bool = False) -> _Section:
        return _Section(self.raw(key, {} if optional else _MISSING), f"{self._key(key)}.")

    def string(self, key: str, default: str | object | None = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default or (value is None and default is None):  # null only where None is the default
            return value
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self._key(key)} must be a non-empty string")
        return value

    def name(self, key: str, default: str | object = _MISSING) -> str:
        value = self.string(key, default)
        if not isinstance(value, str) or not _NAME.match(value):
            raise ConfigError(f"{self._key(key)} must match {_NAME.pattern}")
        return value

    def number(self, key: str, default: float | object = _MISSING, *, minimum: float = 0.0) -> float:
        value = self.raw(key, default)
        number = math.nan
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an integer past float's range
                number = math.inf
        if not minimum <= number < math.inf:  # NaN and infinities too
            raise ConfigError(f"{self._key(key)} must be a number >= {minimum}")
        return number

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self._key(key)} must be true or false")
        return value

    def port(self, key: str, default: int) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise ConfigError(f"{self._key(key)} must be a port number (1-65535)")
        return value

    def port_list(self, key: str) -> tuple[int, ...]:
        value = self.raw(key, [])
        if not isinstance(value, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in value
        ):
            raise ConfigError(f"{self._key(key)} must be a list of port numbers")
        return tuple(value)

    def argv(self, key: str, *, optional: bool = False) -> tuple[str, ...] | None:
        value = self.raw(key, None if optional else _MISSING)
        if value is None and optional:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
            raise ConfigError(f"{self._key(key)} must be a non-empty list of strings")
        return tuple(value)

    def choice(self, key: str, enum: type[_E], default: _E) -> _E:
        value = self.raw(key, default.value)
        try:
            return enum(str(value))
        except ValueError as exc:
            allowed = ", ".join(e.value for e in enum)
            raise ConfigError(f"{self._key(key)} must be one of: {allowed}") from exc

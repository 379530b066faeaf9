"""The catalogue's keys of the config file: `[install]` and `[ready]` (agent/README.md, Configuration).

Kept apart from config.py, which reads the rest of the file and calls these two parsers: the types are
re-exported there, so the agent imports them from `config` like every other setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import _Section

__all__ = ["ArchiveKind", "InstallConfig", "InstallMethod", "Proto", "ReadyConfig", "ReadySignal",
           "parse_install", "parse_ready"]


class InstallMethod(StrEnum):
    """How the game's server gets onto the instance (install.py)."""

    APT = "apt"
    PODMAN = "podman"
    STEAMCMD = "steamcmd"
    DOWNLOAD = "download"


class ArchiveKind(StrEnum):
    """What a downloaded file is: unpacked into the install dir, or kept as it is."""

    ZIP = "zip"
    TAR = "tar"
    NONE = "none"


@dataclass(frozen=True)
class InstallConfig:
    """`[install]`: what to install before the first start; `version` is compared with the disk's marker."""

    method: InstallMethod
    version: str
    dir: Path
    packages: tuple[str, ...] = ()
    image: str | None = None
    app_id: int | None = None
    url: str | None = None
    sha256: str | None = None
    archive: ArchiveKind = ArchiveKind.NONE
    # podman: where the install dir appears inside the container (the image's data folder).
    mount: str = "/data"


class ReadySignal(StrEnum):
    """What tells the agent the game is playable (ready.py)."""

    QUERY = "query"
    PORT = "port"
    LOG = "log"
    NONE = "none"


class Proto(StrEnum):
    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True)
class ReadyConfig:
    """`[ready]`; absent: playable as soon as the game process started (signal none)."""

    signal: ReadySignal = ReadySignal.NONE
    port: int | None = None
    proto: Proto = Proto.TCP
    pattern: re.Pattern[str] | None = None
    timeout_s: float = 900.0


# Debian package names (Debian Policy §5.6.1); an OCI image reference, loosely (podman checks it fully).
_PACKAGE: Final = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_IMAGE: Final = re.compile(r"^[a-z0-9][a-z0-9._/:@-]{0,254}$", re.IGNORECASE)
_SHA256: Final = re.compile(r"^[0-9a-f]{64}$")
_MOUNT: Final = re.compile(r"^/[A-Za-z0-9._/-]{0,200}$")
_VERSION: Final = re.compile(r"^[A-Za-z0-9._+~:-]{1,64}$")
_MAX_PACKAGES: Final = 100


def parse_install(top: _Section, cwd: Path) -> InstallConfig | None:
    """`[install]`, or None when absent (nothing to install: the "Custom" game)."""
    if top.raw("install", None) is None:
        return None
    s = top.section("install")
    if not s.has("method"):
        raise ConfigError("missing required key install.method")
    method = s.choice("method", InstallMethod, InstallMethod.APT)
    known = {"method", "version", "dir", "packages", "image", "app_id", "url", "sha256", "archive", "mount"}
    extra = sorted(s.keys() - known)
    if extra:
        raise ConfigError(f"install: unknown key(s) {', '.join(extra)}")
    version = s.string("version", "1")
    if not _VERSION.match(version):
        raise ConfigError(f"install.version must match {_VERSION.pattern}")
    cfg = InstallConfig(method=method, version=version, dir=Path(s.string("dir", str(cwd))))
    if not cfg.dir.is_absolute():
        raise ConfigError("install.dir must be an absolute path")
    wanted = {
        InstallMethod.APT: {"packages"}, InstallMethod.PODMAN: {"image"},
        InstallMethod.STEAMCMD: {"app_id"}, InstallMethod.DOWNLOAD: {"url", "sha256"},
    }[method]
    wanted = wanted | ({"mount"} if method is InstallMethod.PODMAN else set())
    stray = sorted((s.keys() & {"packages", "image", "app_id", "url", "sha256", "archive", "mount"}) - wanted
                   - ({"archive"} if method is InstallMethod.DOWNLOAD else set()))
    if stray:
        raise ConfigError(f"install.{stray[0]} does not apply to install.method {method.value}")
    if method is InstallMethod.APT:
        packages = s.raw("packages")
        if (not isinstance(packages, list) or not 0 < len(packages) <= _MAX_PACKAGES
                or not all(isinstance(p, str) and _PACKAGE.match(p) for p in packages)):
            raise ConfigError(f"install.packages must be a list of 1-{_MAX_PACKAGES} Debian package names")
        return InstallConfig(method, version, cfg.dir, packages=tuple(packages))
    if method is InstallMethod.PODMAN:
        image = s.string("image")
        if not _IMAGE.match(image):
            raise ConfigError("install.image must be an image reference such as docker.io/library/name:tag")
        mount = s.string("mount", "/data")
        if not _MOUNT.match(mount):
            raise ConfigError("install.mount must be an absolute path inside the container, such as /data")
        return InstallConfig(method, version, cfg.dir, image=image, mount=mount)
    if method is InstallMethod.STEAMCMD:
        app_id = s.raw("app_id")
        if isinstance(app_id, bool) or not isinstance(app_id, int) or not 0 < app_id < 2**32:
            raise ConfigError("install.app_id must be a Steam app id (a positive integer)")
        return InstallConfig(method, version, cfg.dir, app_id=app_id)
    url = s.string("url")
    if not url.startswith(("https://", "http://")):
        raise ConfigError("install.url must be an http:// or https:// address")
    sha256 = s.string("sha256").lower()
    if not _SHA256.match(sha256):
        raise ConfigError("install.sha256 must be 64 hexadecimal characters")
    return InstallConfig(method, version, cfg.dir, url=url, sha256=sha256,
                         archive=s.choice("archive", ArchiveKind, ArchiveKind.NONE))


def parse_ready(top: _Section) -> ReadyConfig:
    """`[ready]`: the signal that makes a started game playable (absent: signal none)."""
    s = top.section("ready", optional=True)
    extra = sorted(s.keys() - {"signal", "port", "proto", "pattern", "timeout_s"})
    if extra:
        raise ConfigError(f"ready: unknown key(s) {', '.join(extra)}")
    sig = s.choice("signal", ReadySignal, ReadySignal.NONE)
    timeout_s = s.number("timeout_s", 900.0, minimum=1)
    if sig is ReadySignal.PORT:
        if not s.has("port"):
            raise ConfigError("ready.signal is port but ready.port is missing")
        return ReadyConfig(sig, port=s.port("port", 1), proto=s.choice("proto", Proto, Proto.TCP),
                           timeout_s=timeout_s)
    if sig is ReadySignal.LOG:
        text = s.string("pattern")
        try:
            pattern = re.compile(text)
        except re.error as exc:
            raise ConfigError(f"ready.pattern is not a valid regular expression: {exc}") from exc
        return ReadyConfig(sig, pattern=pattern, timeout_s=timeout_s)
    return ReadyConfig(sig, timeout_s=timeout_s)

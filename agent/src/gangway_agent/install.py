"""Installing the game's server (`[install]`) before it first starts: apt, podman, SteamCMD or a download.

The install runs once per version: a marker on the data disk (`<data>/.gangway/install.json`) records
the version installed, and a start whose version equals it skips the install. What lives on the root
disk (apt's packages) is gone on the next instance, so apt also checks dpkg and reinstalls from the
package cache it keeps on the data disk (no second download). Podman's image store is on the data disk
too. Progress goes out as `install.progress` events: every phase change, and at most one every
`_PROGRESS_EVERY_S` between. A failure raises InstallFailed with a message in words for the user.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import pwd
import re
import subprocess
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import IO, Final

from .config import ArchiveKind, InstallConfig, InstallMethod
from .errors import RequestFailed
from .seams import Clock

__all__ = ["InstallFailed", "InstallResult", "Installer", "Phase", "apt_percent", "own_tree", "podman_argv",
           "podman_store", "steam_percent"]

_PROGRESS_EVERY_S: Final = 3.0
_MESSAGE_MAX: Final = 300
_CHUNK: Final = 1024 * 1024
# Debian's PATH for root plus /usr/games, where Debian's steamcmd package puts its program.
_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games"
# apt's machine-readable progress (apt-get(8) APT::Status-Fd): "dlstatus:<n>:<percent>:<text>" while
# downloading, "pmstatus:<package>:<percent>:<text>" while dpkg installs, "pmerror:..." on a failure.
_APT_STATUS: Final = re.compile(r"^(dlstatus|pmstatus):[^:]*:(\d+(?:\.\d+)?):")
# SteamCMD's app_update lines: " Update state (0x61) downloading, progress: 45.12 (123 / 456)".
_STEAM_PROGRESS: Final = re.compile(r"Update state \(0x[0-9a-f]+\) ([a-z ]+), progress: (\d+(?:\.\d+)?)")
_STEAM_OK: Final = re.compile(r"Success! App '\d+' fully installed")
# Around `apt-get install` on an instance: policy-rc.d (invoke-rc.d(8)'s policy layer, 101 = "action not
# allowed") keeps the package's own service from starting; afterwards those services are disabled too.
_NO_SERVICES: Final = r"""
made=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made=1
fi
"$@"; rc=$?
[ -n "$made" ] && rm -f /usr/sbin/policy-rc.d
if [ $rc = 0 ]; then
  for pkg in "$@"; do
    case "$pkg" in -*|apt-get|install) continue;; esac
    dpkg -L "$pkg" 2>/dev/null | grep -E '^/(usr/)?lib/systemd/system/[^/@]+[.]service$' | while read -r u; do
      systemctl disable --now "$(basename "$u")" >/dev/null 2>&1 || true
    done
  done
fi
exit $rc
"""


class Phase(StrEnum):
    """`install.progress` phases (contract/README.md)."""

    DOWNLOAD = "download"
    INSTALL = "install"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class InstallFailed(RequestFailed):
    """The install could not finish; the message is for the user."""


@dataclass(frozen=True)
class InstallResult:
    installed: bool
    version: str


Report = Callable[[Mapping[str, object]], None]
"""Receives each `install.progress` body."""


def apt_percent(line: str) -> tuple[Phase, float] | None:
    """The phase and percent in one line of apt's status output, or None for any other line."""
    m = _APT_STATUS.match(line)
    if m is None:
        return None
    return (Phase.DOWNLOAD if m.group(1) == "dlstatus" else Phase.INSTALL), min(float(m.group(2)), 100.0)


def steam_percent(line: str) -> tuple[Phase, float] | None:
    """The phase and percent in one line of SteamCMD's output, or None."""
    m = _STEAM_PROGRESS.search(line)
    if m is None:
        return None
    return (Phase.DOWNLOAD if "download" in m.group(1) else Phase.INSTALL), min(float(m.group(2)), 100.0)


def podman_store(data_dir: Path) -> Path:
    """Podman's image store, on the data disk so a second start has the image already."""
    return data_dir / ".gangway" / "containers"


def podman_argv(cfg: InstallConfig, data_dir: Path, name: str, command: Sequence[str],
                env: Mapping[str, str]) -> list[str]:
    """The game's command for a podman install: the image run in the foreground, the install dir at its mount,
    the host's network (the game's ports are the firewall's), stdin kept open for the console."""
    assert cfg.image is not None
    argv = ["podman", "--root", str(podman_store(data_dir)), "run", "--rm", "--replace", f"--name={name}",
            "--network=host", "--interactive", f"--volume={cfg.dir}:{cfg.mount}"]
    argv += [f"--env={k}={v}" for k, v in sorted(env.items())]
    return [*argv, cfg.image, *command]


class _Progress:
    """Sends a phase change at once and other progress at most every few seconds."""

    def __init__(self, report: Report, clock: Clock, version: str) -> None:
        self._report, self._clock, self._version = report, clock, version
        self._phase: Phase | None = None
        self._last = -1e18

    def __call__(self, phase: Phase, percent: float | None = None, message: str = "") -> None:
        now = self._clock.monotonic()
        if phase is self._phase and now - self._last < _PROGRESS_EVERY_S:
            return
        self._phase, self._last = phase, now
        self._report({"phase": phase.value, "percent": None if percent is None else round(percent, 1),
                      "version": self._version, "message": message[:_MESSAGE_MAX]})


class Installer:
    """Runs `[install]` into its dir; knows from the data disk's marker whether it is needed."""

    def __init__(self, cfg: InstallConfig, *, data_dir: Path, clock: Clock, report: Report,
                 user: str | None = None, group: str | None = None,
                 env: Mapping[str, str] | None = None, transient: bool = False) -> None:
        self.cfg = cfg
        self._data_dir = data_dir
        self._clock = clock
        self._report = report
        self._user, self._group = user, group
        self._env = dict(env) if env is not None else {"PATH": _PATH, "LANG": "C.UTF-8"}
        self.marker = data_dir / ".gangway" / "install.json"
        self._restoring = False
        # launch.mode systemd: apt runs in a transient unit, outside the agent's sandbox (_outside).
        self._transient = transient

    def installed_version(self) -> str | None:
        """The version the marker records, or None (never installed, or an unreadable marker)."""
        try:
            data = json.loads(self.marker.read_text())
        except (OSError, ValueError):
            return None
        version = data.get("version") if isinstance(data, dict) else None
        return version if isinstance(version, str) else None

    def needed(self) -> bool:
        """True unless the marker has this version and what it installed is still in place."""
        return self.installed_version() != self.cfg.version or not self._present()

    def run(self, *, force: bool = False) -> InstallResult:
        """Install unless the marker says it is done (or `force`). Raises InstallFailed (reported first)."""
        progress = _Progress(self._report, self._clock, self.cfg.version)
        if not force and not self.needed():
            progress(Phase.SKIPPED, None, f"version {self.cfg.version} is already installed")
            return InstallResult(False, self.cfg.version)
        # This version was installed before, but not on this root disk (a new instance from a snapshot):
        # apt reinstalls from the packages kept on the data disk, nothing to download.
        self._restoring = not force and self.installed_version() == self.cfg.version
        try:
            self.cfg.dir.mkdir(parents=True, exist_ok=True)
            {
                InstallMethod.APT: self._apt, InstallMethod.PODMAN: self._podman,
                InstallMethod.STEAMCMD: self._steamcmd, InstallMethod.DOWNLOAD: self._download,
            }[self.cfg.method](progress)
            own_tree(self.cfg.dir, self._user, self._group)
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.marker.with_suffix(".tmp")
            tmp.write_text(json.dumps({"version": self.cfg.version, "method": self.cfg.method.value,
                                       "at": self._clock.now()}))
            os.replace(tmp, self.marker)
            os.sync()
        except InstallFailed as exc:
            progress(Phase.FAILED, None, str(exc))
            raise
        except OSError as exc:
            message = f"the install could not write to {exc.filename or self.cfg.dir}: {exc.strerror}"
            progress(Phase.FAILED, None, message)
            raise InstallFailed(message) from exc
        progress(Phase.DONE, 100.0, "")
        return InstallResult(True, self.cfg.version)

    # -- what is in place -----------------------------------------------------------------------------

    def _present(self) -> bool:
        if self.cfg.method is InstallMethod.APT:
            fmt = "${db:Status-Status}\n"
            done = self._quiet(["dpkg-query", "--show", f"--showformat={fmt}", *self.cfg.packages])
            return done is not None and done.returncode == 0 and set(done.stdout.split()) == {"installed"}
        if self.cfg.method is InstallMethod.PODMAN:
            assert self.cfg.image is not None
            done = self._quiet(["podman", "--root", str(podman_store(self._data_dir)), "image", "exists",
                                self.cfg.image])
            return done is not None and done.returncode == 0
        return True  # steamcmd and download install into the dir, on the data disk

    def _quiet(self, argv: list[str]) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(argv, capture_output=True, text=True, env=self._env, timeout=60,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None

    # -- the methods ----------------------------------------------------------------------------------

    def _apt(self, progress: _Progress) -> None:
        cache = self._data_dir / ".gangway" / "apt-archives"
        (cache / "partial").mkdir(parents=True, exist_ok=True)
        env = {**self._env, "DEBIAN_FRONTEND": "noninteractive"}
        if self._restoring:
            progress(Phase.INSTALL, None, "installing again from the packages kept on the data disk")
        else:
            progress(Phase.DOWNLOAD, None, "updating the package lists")
        self._stream(self._outside(["apt-get", "update", "-q"], env), env, lambda _line: None,
                     what="apt-get update")
        # Status on stderr: a transient unit passes only the three standard streams.
        argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o=APT::Status-Fd=2",
                f"-o=Dir::Cache::Archives={cache}",
                "-o=Dpkg::Options::=--force-confdef", "-o=Dpkg::Options::=--force-confold",
                *self.cfg.packages]
        if self._transient:
            # The agent runs the game itself: a service the package ships is neither started nor enabled.
            argv = ["/bin/sh", "-c", _NO_SERVICES, "sh", *argv]

        def on_status(line: str) -> None:
            seen = apt_percent(line)
            if seen is not None:
                progress(seen[0], seen[1])

        self._stream(self._outside(argv, env), env, on_status, what="apt-get install", status="stderr")

    def _outside(self, argv: list[str], env: Mapping[str, str]) -> list[str]:
        """On an instance, `argv` in a transient unit of its own: the agent's unit has a read-only /usr
        (ProtectSystem=yes), where apt must write."""
        if not self._transient:
            return argv
        # systemd expands ${NAME} in a unit's command line; "$$" is its literal "$".
        return ["systemd-run", "--pipe", "--wait", "--quiet", "--collect", "--service-type=exec",
                f"--working-directory={self.cfg.dir}", "--description=gangway game install",
                *(f"--setenv={k}={v}" for k, v in sorted(env.items())), "--",
                *(a.replace("$", "$$") for a in argv)]

    def _podman(self, progress: _Progress) -> None:
        assert self.cfg.image is not None
        progress(Phase.DOWNLOAD, None, f"pulling {self.cfg.image}")
        argv = ["podman", "--root", str(podman_store(self._data_dir)), "pull", "--quiet", self.cfg.image]
        self._stream(argv, self._env, lambda _line: None, what="podman pull")

    def _steamcmd(self, progress: _Progress) -> None:
        ok = False

        def on_line(line: str) -> None:
            nonlocal ok
            seen = steam_percent(line)
            if seen is not None:
                progress(seen[0], seen[1])
            ok = ok or bool(_STEAM_OK.search(line))

        progress(Phase.DOWNLOAD, None, "")
        argv = ["steamcmd", "+force_install_dir", str(self.cfg.dir), "+login", "anonymous",
                "+app_update", str(self.cfg.app_id), "validate", "+quit"]
        self._stream(argv, self._env, on_line, what="SteamCMD")
        if not ok:
            raise InstallFailed(f"SteamCMD finished without installing app {self.cfg.app_id}; "
                                "it may need a login or be unavailable now: try /updategame later")

    def _download(self, progress: _Progress) -> None:
        assert self.cfg.url is not None and self.cfg.sha256 is not None
        name = PurePosixPath(urllib.parse.urlsplit(self.cfg.url).path).name or "download"
        part = self.cfg.dir / f".{name}.gangway-part"
        digest = hashlib.sha256()
        progress(Phase.DOWNLOAD, 0.0, "")
        try:
            with contextlib.closing(urllib.request.urlopen(self.cfg.url, timeout=60)) as resp, \
                    part.open("wb") as out:
                total = int(resp.headers.get("Content-Length") or 0)
                done = 0
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    progress(Phase.DOWNLOAD, 100 * done / total if total else None)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            part.unlink(missing_ok=True)
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
            raise InstallFailed(f"could not download {self.cfg.url}: {reason}; check the address and "
                                "try /updategame again") from exc
        if digest.hexdigest() != self.cfg.sha256:
            part.unlink(missing_ok=True)
            raise InstallFailed(f"the file at {self.cfg.url} is not the one expected (its SHA-256 differs): "
                                "nothing was installed; update the game's entry with the file's real hash")
        progress(Phase.INSTALL, None, "")
        try:
            if self.cfg.archive is ArchiveKind.NONE:
                target = self.cfg.dir / name
                os.replace(part, target)
                target.chmod(0o755)
            else:
                _unpack(part, self.cfg.archive, self.cfg.dir)
        finally:
            part.unlink(missing_ok=True)

    # -- helpers --------------------------------------------------------------------------------------

    def _stream(self, argv: list[str], env: Mapping[str, str], on_line: Callable[[str], None], *,
                what: str, status: str = "stdout") -> None:
        """Run `argv`, feeding each line of one stream (`status`: stdout or stderr) to `on_line`; the last
        lines of both make the message when it fails."""
        try:
            proc = subprocess.Popen(
                argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, cwd=self.cfg.dir, text=True, errors="replace",
            )
        except OSError as exc:
            raise InstallFailed(f"{what} is not available on this instance ({exc.strerror}); "
                                "the game cannot be installed this way here") from exc
        assert proc.stdout is not None and proc.stderr is not None
        watched, other = (proc.stdout, proc.stderr) if status == "stdout" else (proc.stderr, proc.stdout)
        tail: list[str] = []
        side = threading.Thread(target=_collect, args=(other, tail), daemon=True)
        side.start()
        for line in _lines(watched, tail):
            on_line(line)
        side.join()
        code = proc.wait()
        if code != 0:
            words = [line.strip() for line in tail if line.strip() and apt_percent(line) is None]
            last = " / ".join(words[-3:])[-200:]
            raise InstallFailed(f"{what} failed (exit status {code}): {last or 'no output'}")


def _lines(stream: IO[str], tail: list[str]) -> Iterator[str]:
    for raw in stream:
        line = raw.rstrip("\n")
        tail.append(line)
        del tail[:-20]
        yield line


def _collect(stream: IO[str], tail: list[str]) -> None:
    for _line in _lines(stream, tail):
        pass


def _inside(root: Path, name: str) -> Path:
    """Where archive member `name` goes under `root`; refuses a path that would land outside it."""
    target = (root / name).resolve()
    if name.startswith("/") or (target != root and root not in target.parents):
        raise InstallFailed(f"the archive holds a file outside its folder ({name[:80]!r}): nothing was "
                            "unpacked; the download is not safe to install")
    return target


def _unpack(path: Path, kind: ArchiveKind, root: Path) -> None:
    """Unpack a zip or tar into `root`, after checking every member stays inside it (links too)."""
    root = root.resolve()
    try:
        if kind is ArchiveKind.ZIP:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    _inside(root, info.filename)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise InstallFailed(f"the archive holds a symbolic link ({info.filename[:80]!r}): "
                                            "nothing was unpacked; the download is not safe to install")
                zf.extractall(root)
            return
        with tarfile.open(path) as tf:
            members = tf.getmembers()
            for member in members:
                _inside(root, member.name)
                if member.issym() or member.islnk():
                    _inside(root, str(PurePosixPath(member.name).parent / member.linkname)
                            if member.issym() else member.linkname)
                elif not (member.isfile() or member.isdir()):
                    raise InstallFailed(f"the archive holds a device or pipe ({member.name[:80]!r}): "
                                        "nothing was unpacked; the download is not safe to install")
            if hasattr(tarfile, "data_filter"):
                tf.extractall(root, members=members, filter="data")
            else:  # Debian 12's Python 3.11.2 predates extraction filters: what "data" does, by hand
                for member in members:
                    member.mode &= 0o755  # no set-id bits, nothing writable by others
                    member.uid = member.gid = os.geteuid()
                    member.uname = member.gname = ""
                tf.extractall(root, members=members)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise InstallFailed(f"the download is not a valid {kind.value} archive ({exc}); nothing was "
                            "unpacked") from exc


def own_tree(path: Path, user: str | None, group: str | None) -> None:
    """Give the game's user its installed files (the game writes its world beside them)."""
    if user is None or os.geteuid() != 0:
        return
    try:
        uid = pwd.getpwnam(user).pw_uid
        gid = grp.getgrnam(group).gr_gid if group else pwd.getpwnam(user).pw_gid
    except KeyError as exc:
        raise InstallFailed(f"the game's user or group does not exist on this instance ({exc})") from exc
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (dirpath, *(os.path.join(dirpath, n) for n in (*dirnames, *filenames))):
            with contextlib.suppress(FileNotFoundError):
                os.lchown(name, uid, gid)

"""Who is playing: peers of the game's ports from connection tracking, the socket tables, or a probe.

Connection tracking sees UDP players too (most UDP game servers use one unconnected socket, so
the socket tables miss them), which is why it is preferred: ``/proc/net/nf_conntrack`` when the
kernel exposes it, else ``conntrack -L`` when the tool is installed, else ``/proc/net/{tcp,udp}{,6}``.
The SFTP port counts as activity too: someone uploading a world is not idle.
"""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from .config import Ports
from .errors import AgentError
from .seams import Runner

_TCP_ESTABLISHED: Final = "01"
_PROC_FILES: Final = (("tcp", "tcp"), ("tcp6", "tcp"), ("udp", "udp"), ("udp6", "udp"))


@dataclass(frozen=True)
class Watched:
    """The ports whose peers count as players."""

    tcp: frozenset[int]
    udp: frozenset[int]

    @classmethod
    def of(cls, ports: Ports, extra_tcp: Iterable[int] = ()) -> Watched:
        return cls(frozenset(ports.tcp) | frozenset(extra_tcp), frozenset(ports.udp))

    def has(self, proto: str, port: int) -> bool:
        return port in (self.tcp if proto == "tcp" else self.udp)


class ActivitySource(Protocol):
    def players(self) -> int:
        """How many distinct peers (or players, for a probe) there are now. Raises AgentError."""
        ...


def parse_conntrack(text: str, watched: Watched) -> frozenset[str]:
    """Peer addresses of tracked flows to watched ports (``/proc/net/nf_conntrack`` or ``conntrack -L``).

    TCP flows count only when ESTABLISHED; a UDP flow exists only while traffic is recent.
    """
    peers: set[str] = set()
    for line in text.splitlines():
        tokens = line.split()
        proto = next((t for t in tokens if t in ("tcp", "udp")), None)
        if proto is None or (proto == "tcp" and "ESTABLISHED" not in tokens):
            continue
        fields: dict[str, str] = {}
        for tok in tokens:
            key, sep, value = tok.partition("=")
            if sep and key not in fields:  # the first src/dst/sport/dport are the original direction
                fields[key] = value
        try:
            if watched.has(proto, int(fields["dport"])):
                peers.add(fields["src"])
        except (KeyError, ValueError):
            continue
    return frozenset(peers)


def _hex_address(text: str) -> str:
    """Decode a /proc/net address: host-order 32-bit words in hex."""
    raw = bytes.fromhex(text)
    swapped = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(swapped))


def parse_proc_net(text: str, proto: str, watched: Watched) -> frozenset[str]:
    """Remote addresses of established sockets bound to watched ports in one /proc/net table."""
    peers: set[str] = set()
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or parts[3] != _TCP_ESTABLISHED:
            continue
        local, remote = parts[1], parts[2]
        try:
            port = int(local.rsplit(":", 1)[1], 16)
            if watched.has(proto, port):
                peers.add(_hex_address(remote.rsplit(":", 1)[0]))
        except (ValueError, IndexError):
            continue
    return frozenset(peers)


class ConntrackFile:
    """Reads the kernel's connection tracking table."""

    def __init__(self, watched: Watched, path: Path = Path("/proc/net/nf_conntrack")) -> None:
        self._watched, self._path = watched, path

    def players(self) -> int:
        try:
            return len(parse_conntrack(self._path.read_text(), self._watched))
        except OSError as exc:
            raise AgentError(f"cannot read {self._path}: {exc.strerror}") from exc


class ConntrackTool:
    """Runs ``conntrack -L`` (from the conntrack package)."""

    def __init__(self, watched: Watched, runner: Runner) -> None:
        self._watched, self._runner = watched, runner

    def players(self) -> int:
        out = self._runner.run(["conntrack", "-L"], timeout=10)
        return len(parse_conntrack(out.stdout, self._watched))


class SocketTables:
    """Established sockets in /proc/net/{tcp,udp}{,6} (misses unconnected UDP servers)."""

    def __init__(self, watched: Watched, root: Path = Path("/proc/net")) -> None:
        self._watched, self._root = watched, root

    def players(self) -> int:
        peers: set[str] = set()
        for name, proto in _PROC_FILES:
            try:
                peers |= parse_proc_net((self._root / name).read_text(), proto, self._watched)
            except FileNotFoundError:
                continue
        return len(peers)


class ProbeCommand:
    """The game's own player count: a command that prints one integer."""

    def __init__(self, argv: tuple[str, ...], runner: Runner) -> None:
        self._argv, self._runner = argv, runner

    def players(self) -> int:
        out = self._runner.run(self._argv, timeout=15).stdout.strip()
        try:
            count = int(out.split()[0]) if out else 0
        except ValueError as exc:
            raise AgentError(f"player probe printed {out[:40]!r}, not a number") from exc
        return max(count, 0)


def pick_source(
    watched: Watched, runner: Runner, probe: tuple[str, ...] | None,
    conntrack_file: Path = Path("/proc/net/nf_conntrack"),
) -> ActivitySource:
    """The best activity source this host offers (see the module docstring)."""
    if probe:
        return ProbeCommand(probe, runner)
    if conntrack_file.exists():
        return ConntrackFile(watched, conntrack_file)
    if shutil.which("conntrack"):
        return ConntrackTool(watched, runner)
    return SocketTables(watched)

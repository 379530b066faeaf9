"""When a started game is playable (`[ready]`): its query answers, its port listens, or its log says so.

Each game start arms one watcher thread that asks a probe (`Callable[[], bool]`) every `_POLL_S` until it
holds, then reports `playable` once for that start; past `timeout_s` it reports the failure in words
instead (an `agent.error`) and stops asking. The query signal's probe is handed in (the query module's
answer), so this module needs nothing of the game's protocol; the port probe reads the socket tables,
the log probe sees every line the game writes on its way to the log sink.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from .config import Proto, ReadyConfig, ReadySignal
from .logsink import LogSink
from .seams import Clock

__all__ = ["LogWatch", "Probe", "ReadyWatcher", "port_probe"]

log = logging.getLogger(__name__)

Probe = Callable[[], bool]
"""True once the game is playable by its signal."""

_POLL_S: Final = 1.0
# /proc/net/{tcp,udp}{,6}: "sl local_address rem_address st ..." with addresses as HEX_IP:HEX_PORT; a TCP
# socket in state 0A is LISTEN (include/net/tcp_states.h); any UDP socket bound to the port receives.
_TCP_LISTEN: Final = "0A"


def _bound(table: Path, port: int, state: str | None) -> bool:
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and int(fields[1].rsplit(":", 1)[1], 16) == port and (
                state is None or fields[3] == state):
            return True
    return False


def port_probe(port: int, proto: Proto, proc_net: Path = Path("/proc/net")) -> Probe:
    """A local `proto` socket listens on `port` (TCP: also accepts a connection on loopback)."""
    if proto is Proto.UDP:
        return lambda: any(_bound(proc_net / name, port, None) for name in ("udp", "udp6"))

    def tcp() -> bool:
        if not any(_bound(proc_net / name, port, _TCP_LISTEN) for name in ("tcp", "tcp6")):
            return False
        for host in ("127.0.0.1", "::1"):
            try:
                with socket.create_connection((host, port), timeout=2):
                    return True
            except OSError:
                continue
        return False

    return tcp


class LogWatch:
    """A log sink in front of the real one: remembers whether a line since the last `arm()` matched."""

    def __init__(self, inner: LogSink, pattern: re.Pattern[str] | None) -> None:
        self._inner = inner
        self._pattern = pattern
        self._seen = threading.Event()

    def write(self, stream: str, text: str) -> None:
        if self._pattern is not None and not self._seen.is_set() and self._pattern.search(text):
            self._seen.set()
        self._inner.write(stream, text)

    def close(self) -> None:
        self._inner.close()

    def arm(self) -> None:
        """Forget earlier matches: a new start must say it again."""
        self._seen.clear()

    def matched(self) -> bool:
        return self._seen.is_set()


class ReadyWatcher:
    """Arms on every game start; calls `on_playable(after_s, signal)` once per start or `on_timeout(msg)`."""

    def __init__(self, cfg: ReadyConfig, probe: Probe | None, clock: Clock,
                 on_playable: Callable[[float, ReadySignal], None], on_timeout: Callable[[str], None],
                 *, poll_s: float = _POLL_S) -> None:
        self._cfg = cfg
        self._probe = probe
        self._clock = clock
        self._on_playable = on_playable
        self._on_timeout = on_timeout
        self._poll_s = poll_s
        self._generation = 0
        self._lock = threading.Lock()
        self._cancel = threading.Event()

    def game_started(self) -> None:
        """The game process just started: watch for its signal (a watch of an earlier start ends)."""
        started = self._clock.monotonic()
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._cancel.set()
            self._cancel = cancel = threading.Event()
        if self._cfg.signal is ReadySignal.NONE or self._probe is None:
            self._on_playable(0.0, self._cfg.signal if self._probe is not None else ReadySignal.NONE)
            return
        threading.Thread(target=self._watch, args=(generation, started, cancel), daemon=True,
                         name="game-ready").start()

    def cancel(self) -> None:
        """The game stopped: no `playable` for the start being watched."""
        with self._lock:
            self._generation += 1
            self._cancel.set()

    def _watch(self, generation: int, started: float, cancel: threading.Event) -> None:
        probe = self._probe
        assert probe is not None
        while not cancel.is_set():
            try:
                holds = probe()
            except Exception:  # a probe is best effort; the next poll asks again
                log.exception("readiness probe failed")
                holds = False
            waited = self._clock.monotonic() - started
            with self._lock:
                if generation != self._generation:
                    return
                if holds:
                    self._generation += 1  # once per start
            if holds:
                self._on_playable(max(waited, 0.0), self._cfg.signal)
                return
            if waited >= self._cfg.timeout_s:
                with self._lock:
                    if generation != self._generation:
                        return
                    self._generation += 1
                self._on_timeout(self._timeout_message())
                return
            cancel.wait(self._poll_s)

    def _timeout_message(self) -> str:
        minutes = f"{self._cfg.timeout_s / 60:.0f} minutes" if self._cfg.timeout_s >= 120 else \
            f"{self._cfg.timeout_s:.0f} seconds"
        what = {
            ReadySignal.QUERY: "did not answer its status query",
            ReadySignal.PORT: f"did not open its {self._cfg.proto.value.upper()} port {self._cfg.port}",
            ReadySignal.LOG: "did not write the line that says it is ready",
        }.get(self._cfg.signal, "did not become ready")
        return (f"the game started but {what} within {minutes}; it may still be loading or it may have "
                "failed: check its log, or stop and start it again")

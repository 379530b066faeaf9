"""Test doubles that speak the real protocols: clock, command runner, link, a fake game, a config.

No mock.patch anywhere: the agent takes its clock, command runner, link and paths as arguments,
and these are the small typed stand-ins the tests pass in.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gangway_agent.errors import CommandFailed
from gangway_agent.seams import Completed


class FakeClock:
    """A clock the test moves by hand; wall time and monotonic move together."""

    def __init__(self, start: float = 1_795_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        return self.now()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


Reply = Completed | Callable[[tuple[str, ...], str | None], Completed]


@dataclass
class ScriptedRunner:
    """Records every command; answers from a script keyed by argv prefix (default: rc 0, no output)."""

    script: dict[tuple[str, ...], list[Reply]] = field(default_factory=dict)
    calls: list[tuple[tuple[str, ...], str | None]] = field(default_factory=list)

    def on(self, prefix: Sequence[str], *replies: Reply) -> None:
        self.script.setdefault(tuple(prefix), []).extend(replies)

    def run(
        self, argv: Sequence[str], *, input_text: str | None = None, timeout: float = 30.0,
        check: bool = True, env: Mapping[str, str] | None = None, cwd: Path | None = None,
    ) -> Completed:
        args = tuple(argv)
        self.calls.append((args, input_text))
        done = Completed(args, 0, "", "")
        for prefix, replies in sorted(self.script.items(), key=lambda kv: -len(kv[0])):
            if args[: len(prefix)] == prefix and replies:
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
                done = reply(args, input_text) if callable(reply) else reply
                break
        if check and done.returncode != 0:
            raise CommandFailed(args, done.returncode, done.stderr)
        return done

    def argvs(self) -> list[tuple[str, ...]]:
        return [c[0] for c in self.calls]


class MemoryLink:
    """An in-process Link: the test injects requests and reads what the agent sent."""

    def __init__(self) -> None:
        self.sent: queue.Queue[dict[str, Any]] = queue.Queue()
        self.on_message: Callable[[bytes], None] | None = None
        self.on_connected: Callable[[int], None] | None = None

    def start(
        self, on_message: Callable[[bytes], None], on_connected: Callable[[int], None] | None = None
    ) -> None:
        self.on_message = on_message
        self.on_connected = on_connected

    def send(self, payload: bytes) -> None:
        self.sent.put(json.loads(payload))

    def stop(self) -> None:
        """Nothing to close."""

    def drain(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self.sent.get_nowait())
            except queue.Empty:
                return out

    def next_of(self, msg_type: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.sent.get(timeout=max(0.01, deadline - time.monotonic()))
            if msg["type"] == msg_type:
                return msg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- a fake game ---------------------------------------------------------------------------------

FAKE_GAME = r'''
"""A stand-in game server: listens on TCP, holds connections, obeys (or ignores) SIGTERM."""
import os, signal, socket, sys, threading, time
port = int(os.environ.get("GAME_PORT", "0"))
with open("game.pid", "w") as fh:
    fh.write(str(os.getpid()))
if os.environ.get("CRASH"):
    print("crashing", flush=True)
    sys.exit(3)
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
else:
    signal.signal(signal.SIGTERM, lambda *_: (print("bye", flush=True), sys.exit(0)))
conns = []
if port:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen()
    def accept():
        while True:
            c, _ = srv.accept()
            conns.append(c)
    threading.Thread(target=accept, daemon=True).start()
print(f"game up on {port}", flush=True)
print("a warning line", file=sys.stderr, flush=True)
while True:
    time.sleep(0.1)
'''


def write_fake_game(directory: Path) -> Path:
    path = directory / "fake_game.py"
    path.write_text(FAKE_GAME)
    return path


def config_dict(tmp: Path, *, game_port: int = 0, **extra: Any) -> dict[str, Any]:
    """A valid local config (plain MQTT, file logs) for tests; ``extra`` overrides top-level keys."""
    import sys

    game = write_fake_game(tmp)
    data: dict[str, Any] = {
        "tenant": "t1",
        "game": "alpha",
        "state_dir": str(tmp / "state"),
        "mqtt": {"endpoint": "127.0.0.1", "port": 1883, "transport": "plain", "min_reconnect_s": 0.1,
                 "max_reconnect_s": 1.0},
        "launch": {
            "command": [sys.executable, str(game)], "cwd": str(tmp), "env": {"GAME_PORT": str(game_port)},
            "stop_grace_s": 5, "ports": {"tcp": [game_port] if game_port else [], "udp": []},
            "autostart": False, "restart_backoff_s": 0.05, "restart_backoff_max_s": 0.2,
        },
        "idle": {"warn_after_s": 1200, "stop_after_s": 1800, "startup_grace_s": 300, "check_interval_s": 60},
        "sftp": {"enabled": False},
        "firewall": {"enabled": False},
        "logs": {"sink": "file", "path": str(tmp / "logs" / "game.log"), "flush_interval_s": 0.05},
        "data": {"mountpoint": str(tmp)},
        "spot": {"enabled": False},
    }
    data.update(extra)
    return data

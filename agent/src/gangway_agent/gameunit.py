"""The game as its own systemd unit (launch.mode = "systemd", what the instance's user data chooses).

On an instance the game runs as a transient service (`systemd-run --wait`), not as the agent's child:
its own cgroup (a stop reaches every process it forked, and nothing of the game lives in the agent's
unit), its own user, and its output in the journal (`journalctl -u gangway-game`). The agent still
supervises it: `systemd-run --wait` lives as long as the service and exits with its exit status, so the
supervisor watches that process as it watches a plain child, signals go to the whole unit through
`systemctl kill`, and a journal follower feeds the game's lines to the log sink.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Sequence
from typing import Final

from .config import GameConfig
from .errors import CommandFailed
from .logsink import LogSink
from .seams import Runner

__all__ = ["JournalFollower", "kill_unit", "main_pid", "reset_unit", "service", "unit_argv"]

# systemctl and journalctl answer in well under a second; a hung D-Bus must not hang the agent.
_SYSTEMCTL_TIMEOUT_S: Final = 15.0


def service(cfg: GameConfig) -> str:
    return f"{cfg.unit}.service"


def unit_argv(cfg: GameConfig, command: Sequence[str] | None = None) -> list[str]:
    """`systemd-run` starting the game's service and waiting for it to end (its exit status is ours);
    `command` replaces the launch command (the console's wrapper around it)."""
    argv = [
        "systemd-run", f"--unit={cfg.unit}", "--wait", "--collect", "--quiet", "--service-type=exec",
        f"--working-directory={cfg.cwd}",
        f"--description=gangway game ({cfg.command[0]})",
        # The supervisor decides when to stop and when to kill; systemd's own timeout is only a backstop.
        f"--property=TimeoutStopSec={max(int(cfg.stop_grace_s) + 30, 30)}",
        "--property=StandardOutput=journal", "--property=StandardError=journal",
    ]  # fmt: skip
    if cfg.user:
        argv.append(f"--uid={cfg.user}")
        if "HOME" not in cfg.env:
            # The game user's passwd home is "/" and systemd sets no HOME here: games that keep files in ~
            # (Luanti, SteamCMD-installed servers) get their folder on the data disk, kept with the world.
            argv.append(f"--setenv=HOME={cfg.cwd}")
    if cfg.group:
        argv.append(f"--gid={cfg.group}")
    argv += [f"--setenv={k}={v}" for k, v in sorted(cfg.env.items())]
    return [*argv, "--", *(cfg.command if command is None else command)]


def reset_unit(runner: Runner, cfg: GameConfig) -> None:
    """Stop a game unit an earlier agent left running (its exit could never be seen), forget a failed one."""
    for verb in ("stop", "reset-failed"):
        with contextlib.suppress(CommandFailed):
            runner.run(["systemctl", verb, service(cfg)], check=False, timeout=_SYSTEMCTL_TIMEOUT_S)


def kill_unit(runner: Runner, cfg: GameConfig, sig: signal.Signals) -> None:
    """`sig` to every process of the game's unit."""
    with contextlib.suppress(CommandFailed):
        runner.run(["systemctl", "kill", f"--signal={sig.name}", service(cfg)], check=False,
                   timeout=_SYSTEMCTL_TIMEOUT_S)


def main_pid(runner: Runner, cfg: GameConfig) -> int | None:
    """The game's main process id as systemd knows it (None when the unit runs nothing)."""
    try:
        out = runner.run(["systemctl", "show", "--property=MainPID", "--value", service(cfg)],
                         check=False, timeout=_SYSTEMCTL_TIMEOUT_S).stdout.strip()
    except CommandFailed:
        return None
    return int(out) if out.isdigit() and int(out) > 0 else None


class JournalFollower:
    """Feeds the game unit's journal lines to the log sink, from the moment it starts (`journalctl -f`)."""

    def __init__(self, cfg: GameConfig, sink: LogSink) -> None:
        self._cfg = cfg
        self._sink = sink
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Follow from now on (once); lines already in the journal are not sent again."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            self._proc = subprocess.Popen(
                ["journalctl", f"--unit={service(self._cfg)}", "--follow", "--lines=0", "--output=cat",
                 "--no-pager", "--quiet"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            stream = self._proc.stdout
            assert stream is not None
            threading.Thread(target=self._pump, args=(stream,), daemon=True, name="game-journal").start()

    def _pump(self, stream: object) -> None:
        assert hasattr(stream, "readline")
        for raw in iter(stream.readline, b""):
            self._sink.write("stdout", raw.decode("utf-8", "replace").rstrip("\r\n"))

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)

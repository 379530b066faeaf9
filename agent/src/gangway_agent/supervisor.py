"""The game process: start, stop (stop command or signal, SIGKILL after grace), save, restart on crash.

The game runs in its own session so a stop reaches every child it forked. A watcher thread per
process ships its output and, when it dies without being asked to, restarts it after an
exponential backoff (reset once a run lasted a minute) and reports the exit. With launch.mode
"systemd" (an instance) the process watched is `systemd-run --wait` of the game's own unit
(gameunit.py): signals go to the unit's cgroup and the output comes from its journal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Final

from . import gameunit
from .config import GameConfig, LaunchMode
from .console import Console
from .errors import CommandFailed, ErrorCode, GameError
from .logsink import LogSink
from .seams import Clock, Runner

log = logging.getLogger(__name__)

_STABLE_RUN_S: Final = 60.0
# A console save has no answer: give the game this long to write its world before the disk is synced.
_CONSOLE_SAVE_SETTLE_S: Final = 5.0
# After console_stop and stop_grace_s, the stop signal gets this long before SIGKILL.
_SIGNAL_GRACE_S: Final = 10.0

OnExit = Callable[[int, float | None, int], None]
"""Called with (exit code, seconds until the restart or None, restarts so far)."""


@dataclass(frozen=True)
class GameStatus:
    running: bool
    pid: int | None
    uptime_s: float | None
    restarts: int
    last_exit_code: int | None


@dataclass(frozen=True)
class StopResult:
    was_running: bool
    exit_code: int | None
    killed: bool


class GameSupervisor:
    """Owns at most one game process at a time."""

    def __init__(self, cfg: GameConfig, sink: LogSink, clock: Clock, runner: Runner, on_exit: OnExit,
                 *, console: Console | None = None, on_spawn: Callable[[], None] | None = None) -> None:
        self._cfg = cfg
        self._console = console
        self._on_spawn = on_spawn
        self._sink = sink
        self._clock = clock
        self._runner = runner
        self._on_exit = on_exit
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._want_running = False
        self._wake = threading.Event()
        self._backoff = cfg.restart_backoff_s
        self.restarts = 0
        self.last_exit_code: int | None = None
        self._unit = cfg.mode is LaunchMode.SYSTEMD
        self._journal = gameunit.JournalFollower(cfg, sink) if self._unit else None

    def start(self) -> tuple[int, bool]:
        """Start the game unless it runs; returns (pid, started now). Raises GameError."""
        with self._lock:
            self._want_running = True
            if self._proc is not None and self._proc.poll() is None:
                return self._proc.pid, False
            return self._spawn(), True

    def stop(self, grace_s: float | None = None) -> StopResult:
        """Stop the game and wait for it; SIGKILL its process group after the grace period."""
        grace = self._cfg.stop_grace_s if grace_s is None else grace_s
        with self._lock:
            self._want_running = False
            self._wake.set()
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return StopResult(False, proc.returncode if proc else None, False)
        if self._console is not None and self._cfg.console_stop:
            return self._console_stop(proc, self._console, self._cfg.console_stop, grace)
        if self._cfg.stop_command:
            try:
                self._runner.run(self._cfg.stop_command, timeout=max(grace, 1.0), check=False,
                                 env=self._env(), cwd=self._cfg.cwd)
            except CommandFailed as exc:
                log.warning("stop command failed: %s; signalling instead", exc)
                self._signal(proc, self._cfg.stop_signal)
        else:
            self._signal(proc, self._cfg.stop_signal)
        killed = False
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning("game ignored the stop for %.0fs; SIGKILL", grace)
            self._signal(proc, signal.SIGKILL)
            proc.wait(10)
            killed = True
        return StopResult(True, proc.returncode, killed)

    def _console_stop(self, proc: subprocess.Popen[bytes], console: Console, line: str,
                      grace: float) -> StopResult:
        """`console_stop` on the console; the stop signal after the grace; SIGKILL after that."""
        try:
            console.write(line)
        except GameError as exc:
            log.warning("console stop failed: %s; signalling instead", exc)
            self._signal(proc, self._cfg.stop_signal)
        killed = False
        for sig, wait_s in ((self._cfg.stop_signal, grace), (signal.SIGKILL, _SIGNAL_GRACE_S)):
            try:
                proc.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                log.warning("game still running %.0fs after its stop; %s", wait_s, sig.name)
                self._signal(proc, sig)
                killed = sig is signal.SIGKILL
        else:
            proc.wait(10)
        return StopResult(True, proc.returncode, killed)

    def save(self) -> bool:
        """Save through the console or the save command if the game has one, then flush the file systems."""
        saved = False
        if self._console is not None and self._cfg.console_save and self.status().running:
            self._console.write(self._cfg.console_save)
            time.sleep(_CONSOLE_SAVE_SETTLE_S)
            saved = True
        elif self._cfg.save_command and self.status().running:
            timeout = max(self._cfg.stop_grace_s, 10.0)
            self._runner.run(self._cfg.save_command, timeout=timeout, env=self._env(), cwd=self._cfg.cwd)
            saved = True
        os.sync()
        return saved

    def status(self) -> GameStatus:
        with self._lock:
            proc = self._proc
            running = proc is not None and proc.poll() is None
            pid = proc.pid if proc is not None and running else None
            if pid is not None and self._unit:
                pid = gameunit.main_pid(self._runner, self._cfg)
            return GameStatus(
                running=running,
                pid=pid,
                uptime_s=self._clock.monotonic() - self._started_at if running else None,
                restarts=self.restarts,
                last_exit_code=self.last_exit_code,
            )

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self._cfg.env}

    def _spawn(self) -> int:
        stdin: int = subprocess.DEVNULL
        try:
            if self._console is not None:
                self._console.prepare()
            if self._journal is not None:
                gameunit.reset_unit(self._runner, self._cfg)
                self._journal.ensure()
                command = self._console.wrap(self._cfg.command) if self._console is not None else None
                # systemd-run's own complaints (a unit it cannot start) still reach the log sink.
                proc = subprocess.Popen(
                    gameunit.unit_argv(self._cfg, command), stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                )
            else:
                if self._console is not None:
                    stdin = self._console.open_for_game()
                proc = subprocess.Popen(
                    self._cfg.command, cwd=self._cfg.cwd, env=self._env(), stdin=stdin,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                    user=self._cfg.user, group=self._cfg.group,
                )
        except (OSError, KeyError) as exc:  # KeyError: launch.user or launch.group does not exist
            argv0 = "systemd-run" if self._unit else self._cfg.command[0]
            message = f"cannot launch {argv0}: {getattr(exc, 'strerror', None) or exc}"
            raise GameError(message, ErrorCode.FAILED) from exc
        finally:
            if stdin != subprocess.DEVNULL:
                os.close(stdin)  # the game holds its own copy
        self._proc = proc
        self._started_at = self._clock.monotonic()
        self._wake.clear()
        for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            if stream is not None:
                args = (name, stream)
                threading.Thread(target=self._pump, args=args, daemon=True, name=f"game-{name}").start()
        threading.Thread(target=self._watch, args=(proc,), daemon=True, name="game-watch").start()
        log.info("game started, pid %d%s", proc.pid, f" (unit {self._cfg.unit})" if self._unit else "")
        if self._on_spawn is not None:
            self._on_spawn()
        return proc.pid

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self._sink.write(name, raw.decode("utf-8", "replace").rstrip("\r\n"))
        stream.close()

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self._lock:
            if self._proc is not proc:
                return
            self.last_exit_code = code
            if not self._want_running:
                self._on_exit(code, None, self.restarts)
                return
            ran = self._clock.monotonic() - self._started_at
            if ran >= _STABLE_RUN_S:
                self._backoff = self._cfg.restart_backoff_s
            delay = self._backoff
            self._backoff = min(self._backoff * 2, self._cfg.restart_backoff_max_s)
        log.warning("game exited with %d after %.1fs; restart in %.1fs", code, ran, delay)
        self._on_exit(code, delay, self.restarts)
        while not self._wake.wait(delay):
            with self._lock:
                if not self._want_running or self._proc is not proc:
                    return
                self.restarts += 1
                try:
                    self._spawn()
                    return
                except GameError as exc:
                    delay = self._backoff
                    self._backoff = min(self._backoff * 2, self._cfg.restart_backoff_max_s)
                    log.error("restart failed: %s; next try in %.1fs", exc, delay)

    def _signal(self, proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        if self._unit:
            gameunit.kill_unit(self._runner, self._cfg, sig)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

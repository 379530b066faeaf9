"""The install as the agent runs it: once at start before the game, and again for `game.install`.

An install can take minutes, so it runs on a thread of its own and the request loop keeps answering.
Requests that need the install finished (`game.start`, `game.install`) are answered when it ends: their
ids wait here, and the job replies to them itself. A failed install leaves the game stopped and the
agent up; the user reads why in the `install.progress` event (phase `failed`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import AgentError, ErrorCode, RequestFailed
from .install import Installer, InstallResult

__all__ = ["GameControl", "InstallJob"]

log = logging.getLogger(__name__)

Reply = Callable[[str, str, Mapping[str, Any]], None]
"""Sends (request id, message type, body): a reply, or an ``error``."""


@dataclass(frozen=True)
class GameControl:
    """What the job needs of the game: is it running, save, stop, start (returns pid, started now)."""

    running: Callable[[], bool]
    save: Callable[[], object]
    stop: Callable[[], object]
    start: Callable[[], tuple[int, bool]]


@dataclass
class _Waiting:
    starts: list[str] = field(default_factory=list)
    installs: list[str] = field(default_factory=list)


class InstallJob:
    """At most one install at a time; requests that arrive meanwhile are answered when it ends."""

    def __init__(self, installer: Installer, game: GameControl, reply: Reply,
                 on_started: Callable[[], None]) -> None:
        self.installer = installer
        self._game = game
        self._reply = reply
        self._on_started = on_started
        self._lock = threading.Lock()
        self._busy = False
        self._waiting = _Waiting()
        self.done = threading.Event()
        self.done.set()

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy

    def at_start(self, autostart: bool) -> None:
        """The agent's first install (skipped when the marker has this version), then the game if asked."""
        self._begin(force=False, restart=autostart, request_id=None)

    def wait_start(self, request_id: str) -> bool:
        """A `game.start` while installing: True if it will be answered when the install ends."""
        with self._lock:
            if not self._busy:
                return False
            if request_id not in self._waiting.starts:
                self._waiting.starts.append(request_id)
            return True

    def request(self, request_id: str, force: bool) -> None:
        """`game.install`: answered when done. Raises RequestFailed (conflict) while another install runs."""
        if not self._begin(force=force, restart=None, request_id=request_id):
            raise RequestFailed("an install is already running; wait for it to finish", ErrorCode.CONFLICT)

    def _begin(self, *, force: bool, restart: bool | None, request_id: str | None) -> bool:
        with self._lock:
            if self._busy:
                return False
            self._busy = True
            self.done.clear()
            if request_id is not None:
                self._waiting.installs.append(request_id)
        threading.Thread(target=self._work, args=(force, restart), daemon=True, name="install").start()
        return True

    def _work(self, force: bool, restart: bool | None) -> None:
        result: InstallResult | None = None
        failure: AgentError | None = None
        was_running = False
        try:
            if restart is None:  # game.install: the running game is saved and stopped, then started again
                if force or self.installer.needed():
                    was_running = self._game.running()
                    if was_running:
                        self._game.save()
                        self._game.stop()
                restart = was_running
            result = self.installer.run(force=force)
        except AgentError as exc:
            failure = exc
        except Exception as exc:
            log.exception("install failed")
            failure = RequestFailed(f"the install stopped on an unexpected problem ({type(exc).__name__})")
        with self._lock:
            self._busy = False
            waiting, self._waiting = self._waiting, _Waiting()
        try:
            self._finish(result, failure, bool(restart), waiting)
        finally:
            self.done.set()

    def _finish(self, result: InstallResult | None, failure: AgentError | None, restart: bool,
                waiting: _Waiting) -> None:
        started: tuple[int, bool] | None = None
        start_error: AgentError | None = failure
        if failure is None and (restart or waiting.starts):
            try:
                started = self._game.start()
                if started[1]:
                    self._on_started()
            except AgentError as exc:
                start_error = exc
        for rid in waiting.installs:
            if result is not None:
                body = {"installed": result.installed, "version": result.version}
                self._reply(rid, "game.install.reply", body)
            else:
                assert failure is not None
                self._error(rid, failure, "the game could not be installed")
        for rid in waiting.starts:
            if started is not None:
                self._reply(rid, "game.start.reply", {"pid": started[0], "started": started[1]})
            else:
                assert start_error is not None
                self._error(rid, start_error, "the game could not be installed, so it was not started")

    def _error(self, rid: str, exc: AgentError, prefix: str) -> None:
        self._reply(rid, "error", {"code": exc.code.value, "message": f"{prefix}: {exc}"})

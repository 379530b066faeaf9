"""Idle shutdown: warn after ``warn_after_s`` without players, ask for shutdown after ``stop_after_s``.

The clock starts ``startup_grace_s`` after the game starts, so a slow first boot is not idle.
Unlike the old agent, a player returning after a warning is announced (``idle.cleared``) and the
SFTP port counts as activity. The monitor only decides; the agent publishes, the backend stops.
While the game stays idle, ``idle.shutdown`` is said again every ``SHUTDOWN_REPEAT_S``: one the backend
could not act on (sent while its start was still finishing, or lost) must not leave the game running.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from .config import IdleConfig
from .protocol import EventType
from .seams import Clock

# How often an unanswered idle shutdown is asked for again (the backend ignores it once it is stopping).
SHUTDOWN_REPEAT_S: Final = 300.0


class IdleState(StrEnum):
    ACTIVE = "active"
    WARNED = "warned"
    SHUTDOWN = "shutdown"


@dataclass(frozen=True)
class IdleEvent:
    type: EventType
    body: dict[str, Any]


class IdleMonitor:
    """A small state machine fed with the current player count."""

    def __init__(self, cfg: IdleConfig, clock: Clock) -> None:
        self._cfg = cfg
        self._clock = clock
        self.state = IdleState.ACTIVE
        self.last_activity = clock.now() + cfg.startup_grace_s
        self._asked_at = 0.0

    def reset(self) -> None:
        """The game (re)started: grant the start-up grace again."""
        self.state = IdleState.ACTIVE
        self.last_activity = self._clock.now() + self._cfg.startup_grace_s

    def idle_s(self) -> float:
        return max(0.0, self._clock.now() - self.last_activity)

    def observe(self, players: int) -> IdleEvent | None:
        """Record one observation; return the event to publish, if the state changed."""
        now = self._clock.now()
        if players > 0:
            self.last_activity = max(self.last_activity, now)
        idle = self.idle_s()
        if self.state is IdleState.SHUTDOWN:
            if idle < self._cfg.stop_after_s or now - self._asked_at < SHUTDOWN_REPEAT_S:
                return None
            self._asked_at = now
            return IdleEvent(EventType.IDLE_SHUTDOWN, {"idle_s": round(idle)})
        if idle >= self._cfg.stop_after_s:
            self.state = IdleState.SHUTDOWN
            self._asked_at = now
            return IdleEvent(EventType.IDLE_SHUTDOWN, {"idle_s": round(idle)})
        if self.state is IdleState.ACTIVE and idle >= self._cfg.warn_after_s:
            self.state = IdleState.WARNED
            return IdleEvent(
                EventType.IDLE_WARNING,
                {"idle_s": round(idle), "shutdown_in_s": round(self._cfg.stop_after_s - idle)},
            )
        if self.state is IdleState.WARNED and players > 0:
            self.state = IdleState.ACTIVE
            return IdleEvent(EventType.IDLE_CLEARED, {"players": players})
        return None

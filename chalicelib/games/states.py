"""Game states and the words people see for them."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["GameState"]


class GameState(StrEnum):
    """Where a game is in its lifecycle (issue 4 adds the transition table)."""

    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"

    @property
    def word(self) -> str:
        return self.value.lower()

    @property
    def emoji(self) -> str:
        return {"STOPPED": "⚪", "STARTING": "🟡", "RUNNING": "🟢", "STOPPING": "🟠"}[self.value]

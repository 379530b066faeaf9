"""Game states and the words people see for them."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

__all__ = ["TRANSITIONAL", "TRANSITIONS", "GameState", "can_move", "sources_of"]


class GameState(StrEnum):
    """Where a game is in its lifecycle; `TRANSITIONS` says which moves are allowed."""

    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    DELETING = "DELETING"
    CREATING = "CREATING"

    @property
    def word(self) -> str:
        return self.value.lower()

    @property
    def emoji(self) -> str:
        emoji = {
            "STOPPED": "⚪",
            "STARTING": "🟡",
            "RUNNING": "🟢",
            "STOPPING": "🟠",
            "DELETING": "🗑️",
            "CREATING": "🛠️",
        }
        return emoji[self.value]


# Every allowed move. STARTING → STOPPED is the compensation path of a start that failed before the
# server came up (nothing to save); everything else that ran goes through STOPPING so it is snapshotted.
# DELETING keeps a start out while DeleteGame removes snapshots; a failed delete goes back to STOPPED.
# STOPPING → RUNNING only undoes a stop whose workflow could not even be started (nothing ran).
# CREATING is a name claimed by /newgame while CreateGame makes its security group; it becomes STOPPED,
# or (a failed create) its row is deleted: nothing moves back into CREATING.
TRANSITIONS: Final[Mapping[GameState, frozenset[GameState]]] = {
    GameState.STOPPED: frozenset({GameState.STARTING, GameState.DELETING}),
    GameState.STARTING: frozenset({GameState.RUNNING, GameState.STOPPING, GameState.STOPPED}),
    GameState.RUNNING: frozenset({GameState.STOPPING}),
    GameState.STOPPING: frozenset({GameState.STOPPED, GameState.RUNNING}),
    GameState.DELETING: frozenset({GameState.STOPPED}),
    GameState.CREATING: frozenset({GameState.STOPPED}),
}

# The states a workflow owns while it runs; a game left in one after its workflow ended is stuck, and
# the reconciliation pass (lifecycle/reconcile.py) finds it through the games' sparse index.
TRANSITIONAL: Final = frozenset(
    {GameState.STARTING, GameState.STOPPING, GameState.CREATING, GameState.DELETING}
)


def can_move(src: GameState, dst: GameState) -> bool:
    """Whether `src` → `dst` is in the transition table."""
    return dst in TRANSITIONS[src]


def sources_of(dst: GameState) -> frozenset[GameState]:
    """The states a game may be in to move to `dst`."""
    return frozenset(s for s, targets in TRANSITIONS.items() if dst in targets)

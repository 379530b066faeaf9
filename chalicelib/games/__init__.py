"""Games: metadata and state of each tenant's game servers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.games.game import Game, GameResources, GameSettings, WorkflowWait
from chalicelib.games.names import GAME_NAME, SettingChanges, check_name
from chalicelib.games.states import TRANSITIONAL, TRANSITIONS, GameState, can_move, sources_of
from chalicelib.games.store import GameStore

if TYPE_CHECKING:
    from chalicelib.games.models import GameRecord

__all__ = [
    "GAME_NAME",
    "TRANSITIONAL",
    "TRANSITIONS",
    "Game",
    "GameRecord",
    "GameResources",
    "GameSettings",
    "GameState",
    "GameStore",
    "SettingChanges",
    "WorkflowWait",
    "can_move",
    "check_name",
    "sources_of",
]


def __getattr__(name: str) -> object:
    """The PynamoDB model loads on first use: a cold `/games` reads without PynamoDB (games/row.py)."""
    if name == "GameRecord":
        from chalicelib.games.models import GameRecord

        return GameRecord
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

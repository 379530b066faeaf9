"""Games: metadata and state of each tenant's game servers."""

from __future__ import annotations

from chalicelib.games.game import Game, GameResources, GameSettings, WorkflowWait
from chalicelib.games.models import GameRecord
from chalicelib.games.states import TRANSITIONAL, TRANSITIONS, GameState, can_move, sources_of
from chalicelib.games.store import GAME_NAME, GameStore, SettingChanges, check_name

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

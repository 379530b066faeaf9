"""Games: metadata and state of each tenant's game servers."""

from __future__ import annotations

from chalicelib.games.models import GameRecord
from chalicelib.games.states import GameState
from chalicelib.games.store import GAME_NAME, Game, GameStore, check_name

__all__ = ["GAME_NAME", "Game", "GameRecord", "GameState", "GameStore", "check_name"]

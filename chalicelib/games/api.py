"""The internal game-state API: read a game's state and request a transition with the expected version.

IAM-authorised in AWS (Chalice's IAMAuthorizer on the routes), for our own tooling and workflows.
Transport-agnostic like the interactions endpoint: (path parameters, raw body) in, HttpReply out.
A lost race answers 409 with the game's current state and version, so the caller can decide again.
"""

from __future__ import annotations

import json
from typing import Any, Final

from chalicelib.errors import Conflict, NotFound, ValidationError
from chalicelib.games.game import Game
from chalicelib.games.names import check_name
from chalicelib.games.states import GameState
from chalicelib.games.store import GameStore
from chalicelib.http import HttpReply

__all__ = ["GameStateApi"]

_MAX_BODY: Final = 1024
_SNOWFLAKE_LEN: Final = range(1, 21)


def _reply(status: int, body: dict[str, Any]) -> HttpReply:
    return HttpReply.json(status, body, {"Cache-Control": "no-store"})


def _game(game: Game) -> dict[str, Any]:
    return {"tenant": game.tenant_id, "game": game.name, "state": game.state.value, "version": game.version}


class GameStateApi:
    """GET state and POST transition for one tenant's game."""

    def __init__(self, games: GameStore) -> None:
        self._games = games

    def state(self, tenant: str, name: str) -> HttpReply:
        """200 with state and version, 400 for malformed names, 404 for unknown games."""
        try:
            game = self._find(tenant, name)
        except ValidationError as exc:
            return _reply(400, {"error": exc.message})
        except NotFound as exc:
            return _reply(404, {"error": exc.message})
        return _reply(200, _game(game))

    def transition(self, tenant: str, name: str, body: bytes | str) -> HttpReply:
        """Apply `{"to": STATE, "expected_version": N}`; 409 with the current state on conflict."""
        if isinstance(body, str):
            body = body.encode()
        if len(body) > _MAX_BODY:
            return _reply(413, {"error": "body too large"})
        try:
            self._find(tenant, name)
            raw = json.loads(body)
            if not isinstance(raw, dict) or set(raw) - {"to", "expected_version"}:
                raise ValidationError('expected {"to": STATE, "expected_version": N}')
            to = GameState(str(raw.get("to")))
            version = raw.get("expected_version")
            if not isinstance(version, int) or isinstance(version, bool) or version < 0:
                raise ValidationError("expected_version must be a non-negative integer")
            game = self._games.transition(tenant, name, to=to, expected_version=version)
        except (ValueError, ValidationError) as exc:
            return _reply(400, {"error": getattr(exc, "message", None) or "malformed request"})
        except NotFound as exc:
            return _reply(404, {"error": exc.message})
        except Conflict as exc:
            current = self._games.get(tenant, name)
            return _reply(409, {"error": exc.message, **(_game(current) if current else {})})
        return _reply(200, _game(game))

    def _find(self, tenant: str, name: str) -> Game:
        if not tenant.isdigit() or len(tenant) not in _SNOWFLAKE_LEN:
            raise ValidationError("tenant must be a guild id")
        game = self._games.get(tenant, check_name(name))
        if game is None:
            raise NotFound(f"no game {name} for tenant {tenant}")
        return game

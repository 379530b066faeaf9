"""Players online: the agent's `players` and `heartbeat` events recorded on the game, and read back.

The agent counts players from connection tracking on the game's ports (agent/contract/README.md) and
says so when the count changes (`players`) and every minute (`heartbeat`). The backend keeps the last
count and when it heard it: /games shows it for a running game, and /stop asks before stopping a game
people are playing on. A count older than three heartbeats is not trusted (the agent may be gone).
The topic is the agent's identity (agents/events.py); a body that is not a sane count changes nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from chalicelib.agents.events import AGENT_EVENTS, AgentEvent
from chalicelib.games import Game, GameState
from chalicelib.lifecycle.collaborators import Lifecycle

__all__ = ["FRESH_SECONDS", "MAX_PLAYERS", "on_heartbeat", "on_players", "online"]

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS: Final = 60  # the agent's default `heartbeat_interval_s` (agent/contract/README.md)
FRESH_SECONDS: Final = 3 * HEARTBEAT_SECONDS
# No game server holds more; anything above is a broken or hostile agent, not a count.
MAX_PLAYERS: Final = 10_000


def _count(value: Any) -> int | None:
    """A player count as the contract defines it (an int 0-MAX_PLAYERS); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PLAYERS:
        return None
    return value


def _note(event: AgentEvent, lc: Lifecycle, value: Any) -> None:
    count = _count(value)
    if count is None:
        if value is not None:  # null is the contract's "not counted yet": nothing to record
            log.warning("%s/%s: refusing player count %.40r", event.tenant_id, event.game, value)
        return
    games = lc.games
    if not games.note_players(event.tenant_id, event.game, count=count, at=time.time()):
        log.info("%s/%s: player count for a game that is not running", event.tenant_id, event.game)


@AGENT_EVENTS.on("players")
def on_players(event: AgentEvent, lc: Lifecycle) -> None:
    """The count changed (`count`, `previous`)."""
    _note(event, lc, event.body.get("count"))


@AGENT_EVENTS.on("heartbeat")
def on_heartbeat(event: AgentEvent, lc: Lifecycle) -> None:
    """Every minute (`game_running`, `players`, `idle_s`): the count again, and that the agent lives."""
    _note(event, lc, event.body.get("players"))


def online(game: Game, *, now: float | None = None) -> int | None:
    """Players on a running game as last heard, or None when that is unknown or too old to trust."""
    if game.state is not GameState.RUNNING or game.players is None or game.players_at is None:
        return None
    if (now if now is not None else time.time()) - game.players_at > FRESH_SECONDS:
        return None
    return game.players

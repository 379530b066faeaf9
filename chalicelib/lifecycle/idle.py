"""What the agent says about a game nobody plays, told in the channel the game was started from.

The agent decides (agent/src/gangway_agent/idle.py, thresholds from the game's launch: host.idle_after):
`idle.warning` when nobody has played for the warning time, `idle.cleared` when players come back after
it, `idle.shutdown` at the shutdown time, which starts the StopGame workflow (stop_game.on_gone, which
calls `announce`). The /start's reply token is long dead by then (15 minutes), so these are channel
messages with the bot's token; a game started before channels were remembered stays silent.
"""

from __future__ import annotations

import logging

from chalicelib.agents.events import AGENT_EVENTS, AgentEvent
from chalicelib.games import Game, GameState
from chalicelib.lifecycle.collaborators import Lifecycle

__all__ = ["announce", "on_idle_cleared", "on_idle_warning"]

log = logging.getLogger(__name__)


def _minutes(seconds: object) -> int:
    return max(1, round(float(seconds) / 60)) if isinstance(seconds, int | float) else 1


def announce(lc: Lifecycle, game: Game, text: str) -> None:
    """Post `text` in the game's channel as a courtesy: never raises (a stop must not fail on it)."""
    if not game.channel_id:
        return
    try:
        lc.rest.create_message(game.channel_id, {"content": text, "allowed_mentions": {"parse": []}})
    except Exception:
        log.warning("could not tell %s/%s's channel", game.tenant_id, game.name, exc_info=True)


@AGENT_EVENTS.on("idle.warning")
def on_idle_warning(event: AgentEvent, lc: Lifecycle) -> None:
    """Nobody has played for a while: say when the game will be saved and shut down, and how to keep it."""
    game = lc.games.get(event.tenant_id, event.game)
    if game is None or game.state is not GameState.RUNNING:
        return
    idle, left = _minutes(event.body.get("idle_s")), _minutes(event.body.get("shutdown_in_s"))
    announce(
        lc,
        game,
        f"💤 Nobody has played on **{game.name}** for {idle} minute{'s' if idle != 1 else ''}: it will be "
        f"saved and shut down in about {left} minute{'s' if left != 1 else ''}. Join the game to keep it "
        f"running, or change the time with `/editgame game:{game.name} idle_minutes:`.",
    )


@AGENT_EVENTS.on("idle.cleared")
def on_idle_cleared(event: AgentEvent, lc: Lifecycle) -> None:
    """Someone joined after the warning: the shutdown is off."""
    game = lc.games.get(event.tenant_id, event.game)
    if game is None or game.state is not GameState.RUNNING:
        return
    announce(lc, game, f"🟢 Players are back on **{game.name}**: it keeps running.")

"""A `ready` that came before StartGame kept its task token is heard again, through `status`.

The agent says `ready` once, when it connects. In AWS that is minutes after the WaitAgent step kept
its token (the instance boots, then fetches the identity that step makes), but an agent that is up
sooner (the local stack starts one as soon as the instance runs) would be ignored and the start would
time out. So WaitAgent asks for `status` after keeping its token, and a `status` reply while the game
is STARTING with a token counts as that `ready`. Without a connected agent the request goes nowhere.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chalicelib.agents import AGENT_EVENTS, AgentEvent

__all__ = ["on_status_reply"]


@AGENT_EVENTS.on("status.reply")
def on_status_reply(event: AgentEvent, services: Any) -> None:
    """An agent answering `status` is up: the same as its `ready` for a starting game."""
    from chalicelib.lifecycle.agent_events import on_ready  # it imports steps, which import this

    game, agent = event.body.get("game"), event.body.get("agent")
    running = bool(game.get("running")) if isinstance(game, dict) else False
    version = str(agent.get("version", "")) if isinstance(agent, dict) else ""
    on_ready(replace(event, body={"version": version, "game_running": running}), services)

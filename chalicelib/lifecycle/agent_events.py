"""What the lifecycle does when a game's agent speaks: ready, the answer to "stop", idle and Spot."""

from __future__ import annotations

import logging
from typing import Any

from chalicelib.agents.events import AGENT_EVENTS, AgentEvent
from chalicelib.errors import Conflict
from chalicelib.games import GameState
from chalicelib.lifecycle.control import begin_stop
from chalicelib.lifecycle.deps import Lifecycle
from chalicelib.lifecycle.steps import stop_request_id
from chalicelib.lifecycle.steps_backup import save_request_id

__all__ = ["on_gone", "on_ready", "on_save_reply", "on_stop_reply"]

log = logging.getLogger(__name__)


def _lc(services: Any) -> Lifecycle:
    lc: Lifecycle = services.lifecycle()
    return lc


def _answer(lc: Lifecycle, event: AgentEvent, token: str, output: dict[str, Any]) -> None:
    """Finish the step that waited for this reply: an `error` reply fails it (its Catch decides)."""
    if event.type == "error":
        lc.fail(token, "gangway.AgentError", str(event.body.get("message", ""))[:500])
    else:
        lc.complete(token, output)


@AGENT_EVENTS.on("ready")
def on_ready(event: AgentEvent, services: Any) -> None:
    """A starting game's agent is up: finish the StartGame workflow's wait."""
    lc = _lc(services)
    game = lc.games.get(event.tenant_id, event.game)
    if game is None or game.state is not GameState.STARTING or not game.task_token:
        return
    lc.games.record(event.tenant_id, event.game, task_token=None)
    lc.complete(
        game.task_token,
        {"agent": str(event.body.get("version", "")), "game_running": bool(event.body.get("game_running"))},
    )


@AGENT_EVENTS.on("game.stop.reply")
@AGENT_EVENTS.on("error")
def on_stop_reply(event: AgentEvent, services: Any) -> None:
    """The agent stopped (and flushed) the game, or could not: either way the snapshot goes ahead."""
    lc = _lc(services)
    game = lc.games.get(event.tenant_id, event.game)
    if game is None or game.state is not GameState.STOPPING or not game.task_token:
        return
    if event.id != stop_request_id((game.execution or "").rsplit(":", 1)[-1]):
        return  # a reply to something else (a firewall sync, an older stop): not this stop's answer
    lc.games.record(event.tenant_id, event.game, task_token=None)
    _answer(
        lc,
        event,
        game.task_token,
        {"exit_code": event.body.get("exit_code"), "killed": event.body.get("killed")},
    )


@AGENT_EVENTS.on("game.save.reply")
@AGENT_EVENTS.on("error")
def on_save_reply(event: AgentEvent, services: Any) -> None:
    """The agent saved the world for a backup, or could not: either way the snapshot goes ahead.
    Only the reply to this backup's own request counts (its id), never a late one of an older backup."""
    lc = _lc(services)
    game = lc.games.get(event.tenant_id, event.game)
    if game is None or not game.backup or not game.backup_token or event.id != save_request_id(game.backup):
        return
    lc.games.record(event.tenant_id, event.game, backup_token=None)
    _answer(
        lc,
        event,
        game.backup_token,
        {"saved": bool(event.body.get("saved")), "synced": bool(event.body.get("synced"))},
    )


@AGENT_EVENTS.on("idle.shutdown")
@AGENT_EVENTS.on("spot.notice")
def on_gone(event: AgentEvent, services: Any) -> None:
    """Nobody plays, or AWS takes the Spot instance back: save and snapshot now."""
    lc = _lc(services)
    game = lc.games.get(event.tenant_id, event.game)
    if game is None or game.state is not GameState.RUNNING:
        return
    reason = "idle" if event.type == "idle.shutdown" else "spot interruption"
    try:
        begin_stop(lc, game, reply=None, reason=reason, save_timeout=60 if reason != "idle" else 0)
    except Conflict:
        log.info("%s/%s: already stopping", event.tenant_id, event.game)

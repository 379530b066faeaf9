"""What the lifecycle does when a game's agent speaks: ready, a preload's progress and end, the answers
to "start the game" and "stop", idle and Spot."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Final

from chalicelib.agents.events import AGENT_EVENTS, AgentEvent
from chalicelib.errors import Conflict
from chalicelib.games import GameState
from chalicelib.lifecycle.control import begin_stop
from chalicelib.lifecycle.deps import Lifecycle
from chalicelib.lifecycle.progress import tell
from chalicelib.lifecycle.steps import stop_request_id
from chalicelib.lifecycle.steps_backup import save_request_id

__all__ = [
    "on_gone",
    "on_preload_done",
    "on_preload_failed",
    "on_preload_progress",
    "on_ready",
    "on_save_reply",
    "on_start_reply",
    "on_stop_reply",
]

log = logging.getLogger(__name__)

# Preload progress edits the reply at most this often (the agent reports every 5 s), or per 10 %.
_TELL_EVERY_S: Final = 20.0
_TELL_STEP_PERCENT: Final = 10.0


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
    if game is None or game.state is not GameState.STARTING or not game.task_token or game.task_wait:
        return  # a token that waits for something else (a preload, `game.start`) is not the agent's `ready`
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


# -- the `read` preload of StartGame (steps_start.py): the token waits with `task_wait` saying for what --


def _waiting(lc: Lifecycle, event: AgentEvent, kind: str) -> tuple[Any, dict[str, Any]] | None:
    """The starting game and its wait, if its task token waits for `kind` (else None: not for us)."""
    game = lc.games.get(event.tenant_id, event.game)
    if game is None or game.state is not GameState.STARTING or not game.task_token or not game.task_wait:
        return None
    try:
        wait = json.loads(game.task_wait)
    except ValueError:
        return None
    return (game, wait) if isinstance(wait, dict) and wait.get("for") == kind else None


@AGENT_EVENTS.on("preload.progress")
def on_preload_progress(event: AgentEvent, services: Any) -> None:
    """Tell how far the disk is read, throttled: every 10 % or 20 s, not every 5 s report; each report
    is also the wait's heartbeat."""
    lc = _lc(services)
    found = _waiting(lc, event, "preload")
    percent = event.body.get("percent")
    if found is None or not isinstance(percent, int | float) or isinstance(percent, bool):
        return
    game, wait = found
    try:  # PreloadRead's HeartbeatSeconds: a silent agent fails the start in minutes, not hours
        lc.sfn().send_task_heartbeat(taskToken=game.task_token)
    except Exception:
        log.warning("%s/%s: preload heartbeat not taken", event.tenant_id, event.game, exc_info=True)
    now = time.time()
    told, at = float(wait.get("told", -1.0)), float(wait.get("at", 0.0))
    if percent < told + _TELL_STEP_PERCENT and now - at < _TELL_EVERY_S and percent < 100:
        return
    wait |= {"told": float(percent), "at": now}
    lc.games.record(event.tenant_id, event.game, task_wait=json.dumps(wait))
    size = event.body.get("bytes_total")
    of = f" of {size / 2**30:.1f} GiB" if isinstance(size, int) and size > 0 else ""
    tell(
        lc,
        {"reply": wait.get("reply"), "game": game.name},
        f"⏳ Starting **{game.name}**: reading the disk{of}… {min(max(int(percent), 0), 100)} %",
    )


@AGENT_EVENTS.on("preload.done")
def on_preload_done(event: AgentEvent, services: Any) -> None:
    """Every block was read: the start goes on (it asks the agent to start the game)."""
    lc = _lc(services)
    found = _waiting(lc, event, "preload")
    if found is None:
        return
    game, _ = found
    lc.games.record(event.tenant_id, event.game, task_token=None, task_wait=None)
    seconds = event.body.get("seconds")
    lc.complete(
        game.task_token,
        {
            "bytes_read": event.body.get("bytes_read"),
            "seconds": seconds if isinstance(seconds, int | float) else None,
        },
    )


@AGENT_EVENTS.on("agent.error")
@AGENT_EVENTS.on("error")
def on_preload_failed(event: AgentEvent, services: Any) -> None:
    """The preload could not start (an `error` reply to its request) or failed while reading (an
    `agent.error` the agent says is the preload's): the start fails and is undone."""
    lc = _lc(services)
    found = _waiting(lc, event, "preload")
    if found is None:
        return
    game, wait = found
    message = str(event.body.get("message", ""))
    ours = event.id == wait.get("request") if event.type == "error" else message.startswith("preload")
    if not ours:
        return
    lc.games.record(event.tenant_id, event.game, task_token=None, task_wait=None)
    code = str(event.body.get("code", ""))
    lc.fail(
        game.task_token, "gangway.PreloadFailed", f"the server could not read its disk ({code}: {message})"
    )


@AGENT_EVENTS.on("game.start.reply")
@AGENT_EVENTS.on("error")
def on_start_reply(event: AgentEvent, services: Any) -> None:
    """The agent started the game after a preload, or could not: only the reply to that request counts."""
    lc = _lc(services)
    found = _waiting(lc, event, "game.start")
    if found is None or event.id != found[1].get("request"):
        return
    game, _ = found
    lc.games.record(event.tenant_id, event.game, task_token=None, task_wait=None)
    _answer(lc, event, game.task_token, {"pid": event.body.get("pid"), "started": event.body.get("started")})

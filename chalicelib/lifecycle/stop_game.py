"""Stopping games: /stop, idle and Spot stops, and the StopGame workflow (workflows/stop-game.asl.json).

Snapshots are the source of truth (DESIGN.md §2): stop = the agent stops the game and flushes →
snapshot → wait until complete → delete the volume and terminate the instance → STOPPED. Every step is
idempotent (SQS may deliver it twice) and records what it created on the game row, so `stop.rescue`
can undo exactly that. The agent's answer to `game.stop` ends the first wait (on_stop_reply); its idle
and Spot notices start a stop (on_gone).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Final

from chalicelib.agents.events import AGENT_EVENTS, AgentEvent
from chalicelib.errors import Conflict
from chalicelib.games import Game, GameState
from chalicelib.lifecycle.collaborators import Lifecycle
from chalicelib.lifecycle.host import retire_identity
from chalicelib.lifecycle.idle import announce
from chalicelib.lifecycle.workflow import (
    SNAPSHOT_FAILED,
    begin_transition,
    finish_wait,
    game_of,
    reached,
    why,
)
from chalicelib.tenancy import plan_named
from chalicelib.workflows import STEPS, StepContext

__all__ = ["SAVE_TIMEOUT_SECONDS", "begin_stop", "on_gone", "on_stop_reply", "stop_request_id"]

log = logging.getLogger(__name__)

# How long the agent may take to stop the game and flush before the snapshot goes ahead anyway.
SAVE_TIMEOUT_SECONDS: Final = 300


def begin_stop(
    lc: Lifecycle, game: Game, *, reply: Mapping[str, Any] | None, reason: str, save_timeout: int = 0
) -> str:
    """RUNNING → STOPPING and the StopGame execution; returns the execution ARN.

    Raises:
        Conflict: the game is not running any more.
    """
    return begin_transition(
        lc,
        game,
        GameState.STOPPING,
        "stop-game",
        reply,
        reason=reason,
        save_timeout=save_timeout or SAVE_TIMEOUT_SECONDS,
    )


def stop_request_id(execution: str) -> str:
    """The id of StopGame's `game.stop` request: only its reply (same id) may finish the wait."""
    return f"{execution}-stop"


@STEPS.step("stop.save")
def stop_save(ctx: StepContext, data: Mapping[str, Any]) -> None:
    """Ask the agent to stop the game (it saves and flushes); its reply finishes this step."""
    lc, game = ctx.lifecycle, game_of(ctx)
    lc.tell(data, f"⏳ Stopping **{game.name}**: saving the world…")
    lc.games.wait(ctx.tenant_id, ctx.game, ctx.token, trace=ctx.trace)
    lc.ask_agent(game, "game.stop", {}, request_id=stop_request_id(ctx.execution))


@STEPS.step("stop.snapshot")
def stop_snapshot(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    lc, game = ctx.lifecycle, game_of(ctx)
    lc.games.end_wait(ctx.tenant_id, ctx.game)
    if not game.resources.volume_id:
        return {"snapshot_id": game.resources.snapshot_id}
    lc.tell(data, f"⏳ Stopping **{game.name}**: taking a snapshot of its data…")
    snap = lc.gateways.ec2(game, actor="workflow:stop").snapshot(
        game.resources.volume_id, description=f"gangway {ctx.tenant_id}/{ctx.game} at {int(time.time())}"
    )
    return {"snapshot_id": snap}


@STEPS.step("stop.snapshot_ready")
def stop_snapshot_ready(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    snap = data["snapshot"]["snapshot_id"]
    if not snap:
        return {"state": "none"}
    state = ctx.lifecycle.gateways.ec2(game_of(ctx), actor="workflow:stop").snapshot_state(snap)
    return reached(state, ready="completed", pending="pending", what="the snapshot", failed=SNAPSHOT_FAILED)


@STEPS.step("stop.cleanup")
def stop_cleanup(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The snapshot is complete: only now delete the volume, terminate, and prune old snapshots."""
    lc, game = ctx.lifecycle, game_of(ctx)
    ec2 = lc.gateways.ec2(game, actor="workflow:stop")
    snap = data["snapshot"]["snapshot_id"] or game.resources.snapshot_id
    # The complete snapshot is the game's data now: record it before anything is deleted.
    game = lc.games.snapshot_kept(ctx.tenant_id, ctx.game, snap)
    dns = lc.gateways.game_dns(game, actor="workflow:stop").unpublish(game.name)  # never fails the stop
    if game.resources.instance_id:
        ec2.terminate(game.resources.instance_id)
    left = retire_identity(ctx, game, "workflow:stop")
    if game.resources.volume_id and data["snapshot"]["snapshot_id"]:
        ec2.detach_and_delete_volume(game.resources.volume_id)
    game = lc.games.host_gone(ctx.tenant_id, ctx.game, kept_volume=None, snapshot_id=snap)
    keep = plan_named(lc.tenants.require(ctx.tenant_id).plan).snapshot_retention
    kept = 0
    for s in ec2.snapshots():
        manual = any(t["Key"] == "gangway:role" and t["Value"] == "manual-backup" for t in s.get("Tags", []))
        if manual or s["SnapshotId"] == snap:
            continue
        kept += 1
        if kept >= keep:  # the newest complete one (snap) is never counted, so never deleted
            ec2.delete_snapshot(s["SnapshotId"])
    if game.state is not GameState.STOPPED:
        game = lc.games.move(game, to=GameState.STOPPED)
    note = f" Note: {dns.problem}." if dns.problem else ""
    lc.tell(data, f"⚪ **{game.name}** stopped and saved (snapshot `{snap}`).{note}{left}")
    if data.get("reason") == "idle":  # nobody asked: its channel hears how it ended
        announce(
            lc, game, f"⚪ **{game.name}** stopped and saved (snapshot `{snap}`) after nobody played.{note}"
        )
    return {"state": game.state.value, "snapshot_id": snap}


@STEPS.step("stop.rescue")
def stop_rescue(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """A stop step failed: stop paying for the instance. If the snapshot failed, keep the volume (it
    holds the only copy of the newest data; the next start reuses it and the next stop snapshots it).
    If stop.cleanup failed after recording the complete snapshot, the data is safe: say so, and delete
    the volume if cleanup had not yet."""
    lc, game = ctx.lifecycle, game_of(ctx)
    ec2 = lc.gateways.ec2(game, actor="workflow:stop")
    lc.gateways.game_dns(game, actor="workflow:stop").unpublish(game.name)
    if game.resources.instance_id:
        ec2.terminate(game.resources.instance_id)
    left = retire_identity(ctx, game, "workflow:stop")
    snap = data.get("snapshot", {}).get("snapshot_id")
    saved = (
        bool(snap) and game.resources.snapshot_id == snap
    )  # stop.cleanup records the complete snapshot first
    volume_id = game.resources.volume_id
    if saved and volume_id:
        try:
            ec2.detach_and_delete_volume(volume_id)
            volume_id = None
        except Exception:  # kept: the next start reuses it (it holds what the snapshot holds)
            log.warning("stop of %s/%s: volume %s kept", ctx.tenant_id, ctx.game, volume_id, exc_info=True)
    game = lc.games.host_gone(ctx.tenant_id, ctx.game, kept_volume=volume_id)
    if game.state is not GameState.STOPPED:
        game = lc.games.move(game, to=GameState.STOPPED)
    because = why(data.get("error", {}))
    if saved:
        text = (
            f"⚪ **{game.name}** stopped and saved (snapshot `{snap}`), but tidying up after it failed "
            f"({because}). Nothing is left running; `/start` works as usual.{left}"
        )
    else:
        text = (
            f"⚠️ **{game.name}** stopped, but its snapshot failed ({because}). "
            f"Its data volume is kept and will be used and snapshotted next time.{left}"
        )
    lc.tell(data, text)
    if data.get("reason") == "idle":
        announce(lc, game, text)
    return {"state": game.state.value}


# -- what the agent says about stopping --------------------------------------------------------------


@AGENT_EVENTS.on("game.stop.reply")
@AGENT_EVENTS.on("error")
def on_stop_reply(event: AgentEvent, lc: Lifecycle) -> None:
    """The agent stopped (and flushed) the game, or could not: either way the snapshot goes ahead."""
    game = lc.games.get(event.tenant_id, event.game)
    if game is None or game.state is not GameState.STOPPING or not game.wait.task_token:
        return
    if event.id != stop_request_id((game.wait.execution or "").rsplit(":", 1)[-1]):
        return  # a reply to something else (a firewall sync, an older stop): not this stop's answer
    lc.games.end_wait(event.tenant_id, event.game)
    finish_wait(
        lc,
        event,
        game.wait.task_token,
        {"exit_code": event.body.get("exit_code"), "killed": event.body.get("killed")},
    )


@AGENT_EVENTS.on("idle.shutdown")
@AGENT_EVENTS.on("spot.notice")
def on_gone(event: AgentEvent, lc: Lifecycle) -> None:
    """Nobody plays, or AWS takes the Spot instance back: save and snapshot now."""
    game = lc.games.get(event.tenant_id, event.game)
    if game is None or game.state is not GameState.RUNNING:
        return
    reason = "idle" if event.type == "idle.shutdown" else "spot interruption"
    try:
        begin_stop(lc, game, reply=None, reason=reason, save_timeout=60 if reason != "idle" else 0)
    except Conflict:
        log.info("%s/%s: already stopping", event.tenant_id, event.game)
        return
    if reason == "idle":
        announce(
            lc,
            game,
            f"💤 Nobody played on **{game.name}**, so it is being saved and shut down now. "
            f"`/start game:{game.name}` brings it back from where it was.",
        )

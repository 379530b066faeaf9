"""The steps of the StopGame workflow (chalicelib/workflows/stop-game.asl.json), and what StartGame's
steps (steps_start.py) share with them.

Snapshots are the source of truth (DESIGN.md §2): stop = the agent stops the game and flushes →
snapshot → wait until complete → delete the volume and terminate the instance → STOPPED. Every step is
idempotent (SQS may deliver it twice) and records what it created on the game row, so the compensation
steps can undo exactly that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from chalicelib.errors import ValidationError
from chalicelib.games import GameState
from chalicelib.lifecycle import agent_seen, identity  # noqa: F401 - agent_seen registers a handler
from chalicelib.lifecycle.bootstrap import Bootstrap, render
from chalicelib.lifecycle.deps import Lifecycle
from chalicelib.lifecycle.dns import unpublish
from chalicelib.lifecycle.game_logs import ensure_log_group
from chalicelib.lifecycle.progress import tell
from chalicelib.lifecycle.tools import port_numbers
from chalicelib.tenancy import plan_named
from chalicelib.workflows import STEPS, StepContext, StepFailed

__all__ = ["NOT_YET", "stop_request_id"]

log = logging.getLogger(__name__)

NOT_YET: Final = "gangway.NotYet"
CAPACITY: Final = "gangway.Capacity"


def stop_request_id(execution: str) -> str:
    """The id of StopGame's `game.stop` request: only its reply (same id) may finish the wait."""
    return f"{execution}-stop"


def _deps(ctx: StepContext) -> Lifecycle:
    deps: Lifecycle = ctx.services.lifecycle()
    return deps


def _game(ctx: StepContext) -> Any:
    game = _deps(ctx).games.get(ctx.tenant_id, ctx.game)
    if game is None:
        raise StepFailed("gangway.Gone", f"the game {ctx.game} no longer exists")
    return game


# An editing host runs no game, so nobody counts as a player while an admin installs it over SFTP or
# the terminal: it gets hours, not the game's minutes, before the agent calls it idle (a forgotten one
# still stops).
EDIT_IDLE_WARN_S: Final = 2 * 3600
EDIT_IDLE_STOP_S: Final = 3 * 3600


def _user_data(
    ctx: StepContext,
    game: Any,
    *,
    volume_id: str | None = None,
    autostart: bool = True,
    editing: bool = False,
) -> str:
    """The first-boot script (lifecycle/bootstrap.py); the IoT identity follows in start.wait_agent.

    The game's opened ports go to the agent's firewall and player count; its log group is made here
    (game_logs.py) so the instance role needs no right to make one. The instance is launched before its
    volume exists (capacity first), so `volume_id` is only given for a volume kept from a failed stop;
    `autostart` is false when the agent must read the disk before the game starts, or when `editing`.
    """
    s = ctx.services.settings
    try:
        tcp, udp = port_numbers(game.ports)
    except ValidationError as exc:
        raise StepFailed("gangway.BadPorts", f"{exc} Fix the game's ports with /closeport.") from exc
    boot = Bootstrap(
        tenant_id=ctx.tenant_id,
        game=ctx.game,
        volume_id=volume_id,
        autostart=autostart and not editing,
        iot_endpoint=identity.endpoint(_deps(ctx), game, settings=s, actor="workflow:start"),
        client_id=identity.thing_name(s.stage, ctx.tenant_id, ctx.game),
        parameter_prefix=identity.parameter_prefix(s.stage, ctx.tenant_id, ctx.game),
        agent_package=s.agent_package,
        tcp_ports=tcp,
        udp_ports=udp,
        log_group=ensure_log_group(_deps(ctx), game, stage=s.stage, actor="workflow:start"),
    )
    if editing:
        boot = replace(boot, idle_warn_s=EDIT_IDLE_WARN_S, idle_stop_s=EDIT_IDLE_STOP_S)
    return render(boot)


def _retire_identity(ctx: StepContext, game: Any, actor: str) -> str:
    """Remove the instance's IoT identity and key parameters; never fails the step, says what was left."""
    s = ctx.services.settings
    problems = identity.retire(_deps(ctx), game, stage=s.stage, iot_region=s.region, actor=actor)
    return f" Note: its server identity was not fully removed ({'; '.join(problems)})." if problems else ""


def _why(error: Mapping[str, Any]) -> str:
    kind = str(error.get("Error", ""))
    if kind == CAPACITY:
        return "AWS had no capacity for it right now"
    if kind == "States.Timeout":
        return "the server did not report in time"
    return str(error.get("Cause") or kind or "an unknown error")[:300]


# -- StopGame -------------------------------------------------------------------------------------------


@STEPS.step("stop.save")
def stop_save(ctx: StepContext, data: Mapping[str, Any]) -> None:
    """Ask the agent to stop the game (it saves and flushes); its reply finishes this step."""
    deps, game = _deps(ctx), _game(ctx)
    tell(deps, data, f"⏳ Stopping **{game.name}**: saving the world…")
    deps.games.record(ctx.tenant_id, ctx.game, task_token=ctx.token)
    deps.ask_agent(game, "game.stop", {}, request_id=stop_request_id(ctx.execution))


@STEPS.step("stop.snapshot")
def stop_snapshot(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    deps, game = _deps(ctx), _game(ctx)
    deps.games.record(ctx.tenant_id, ctx.game, task_token=None)
    if not game.volume_id:
        return {"snapshot_id": game.snapshot_id}
    tell(deps, data, f"⏳ Stopping **{game.name}**: taking a snapshot of its data…")
    snap = deps.ec2(game, actor="workflow:stop").snapshot(
        game.volume_id, description=f"gangway {ctx.tenant_id}/{ctx.game} at {int(time.time())}"
    )
    return {"snapshot_id": snap}


@STEPS.step("stop.snapshot_ready")
def stop_snapshot_ready(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    snap = data["snapshot"]["snapshot_id"]
    if not snap:
        return {"state": "none"}
    state = _deps(ctx).ec2(_game(ctx), actor="workflow:stop").snapshot_state(snap)
    if state == "pending":
        raise StepFailed(NOT_YET, "the snapshot is still being taken")
    if state != "completed":
        raise StepFailed("gangway.SnapshotFailed", f"the snapshot is {state}")
    return {"state": state}


@STEPS.step("stop.cleanup")
def stop_cleanup(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The snapshot is complete: only now delete the volume, terminate, and prune old snapshots."""
    deps, game = _deps(ctx), _game(ctx)
    ec2 = deps.ec2(game, actor="workflow:stop")
    snap = data["snapshot"]["snapshot_id"] or game.snapshot_id
    # The complete snapshot is the game's data now: record it before anything is deleted.
    game = deps.games.record(ctx.tenant_id, ctx.game, snapshot_id=snap)
    dns = unpublish(deps, game, actor="workflow:stop")  # never fails the stop (lifecycle/dns.py)
    if game.instance_id:
        ec2.terminate(game.instance_id)
    left = _retire_identity(ctx, game, "workflow:stop")
    if game.volume_id and data["snapshot"]["snapshot_id"]:
        ec2.detach_and_delete_volume(game.volume_id)
    game = deps.games.record(
        ctx.tenant_id,
        ctx.game,
        snapshot_id=snap,
        instance_id=None,
        volume_id=None,
        address=None,
        task_token=None,
    )
    keep = plan_named(deps.tenants.require(ctx.tenant_id).plan).snapshot_retention
    kept = 0
    for s in ec2.snapshots():
        manual = any(t["Key"] == "gangway:role" and t["Value"] == "manual-backup" for t in s.get("Tags", []))
        if manual or s["SnapshotId"] == snap:
            continue
        kept += 1
        if kept >= keep:  # the newest complete one (snap) is never counted, so never deleted
            ec2.delete_snapshot(s["SnapshotId"])
    if game.state is not GameState.STOPPED:
        game = deps.games.transition(
            ctx.tenant_id, ctx.game, to=GameState.STOPPED, expected_version=game.version
        )
    note = f" Note: {dns.problem}." if dns.problem else ""
    tell(deps, data, f"⚪ **{game.name}** stopped and saved (snapshot `{snap}`).{note}{left}")
    return {"state": game.state.value, "snapshot_id": snap}


@STEPS.step("stop.rescue")
def stop_rescue(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """A stop step failed: stop paying for the instance. If the snapshot failed, keep the volume (it
    holds the only copy of the newest data; the next start reuses it and the next stop snapshots it).
    If stop.cleanup failed after recording the complete snapshot, the data is safe: say so, and delete
    the volume if cleanup had not yet."""
    deps, game = _deps(ctx), _game(ctx)
    ec2 = deps.ec2(game, actor="workflow:stop")
    unpublish(deps, game, actor="workflow:stop")
    if game.instance_id:
        ec2.terminate(game.instance_id)
    left = _retire_identity(ctx, game, "workflow:stop")
    snap = data.get("snapshot", {}).get("snapshot_id")
    saved = bool(snap) and game.snapshot_id == snap  # stop.cleanup records the complete snapshot first
    volume_id = game.volume_id
    if saved and volume_id:
        try:
            ec2.detach_and_delete_volume(volume_id)
            volume_id = None
        except Exception:  # kept: the next start reuses it (it holds what the snapshot holds)
            log.warning("stop of %s/%s: volume %s kept", ctx.tenant_id, ctx.game, volume_id, exc_info=True)
    game = deps.games.record(
        ctx.tenant_id, ctx.game, instance_id=None, volume_id=volume_id, address=None, task_token=None
    )
    if game.state is not GameState.STOPPED:
        game = deps.games.transition(
            ctx.tenant_id, ctx.game, to=GameState.STOPPED, expected_version=game.version
        )
    why = _why(data.get("error", {}))
    if saved:
        text = (
            f"⚪ **{game.name}** stopped and saved (snapshot `{snap}`), but tidying up after it failed "
            f"({why}). Nothing is left running; `/start` works as usual.{left}"
        )
    else:
        text = (
            f"⚠️ **{game.name}** stopped, but its snapshot failed ({why}). "
            f"Its data volume is kept and will be used and snapshotted next time.{left}"
        )
    tell(deps, data, text)
    return {"state": game.state.value}

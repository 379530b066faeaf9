"""Deleting stopped games: /deletegame and the DeleteGame workflow (workflows/delete-game.asl.json).

STOPPED → DELETING (so no /start can pick the game up meanwhile) → delete its snapshots but the newest
complete one (or all, when asked) → delete any leftover volume (and instance) → delete its security
group and its log group → delete the game's row.
Snapshots are found by the game's own `gangway` tag, so another game's or tenant's are never touched.
A failure puts the game back to STOPPED with its row and its newest remaining snapshot: /deletegame
can simply be run again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Final

from chalicelib.errors import Conflict
from chalicelib.games import Game, GameState
from chalicelib.instances import Ec2Gateway, GroupInUse
from chalicelib.lifecycle.backup_game import BACKUP_STALE_SECONDS
from chalicelib.lifecycle.collaborators import Lifecycle
from chalicelib.lifecycle.workflow import NOT_YET, begin_transition, failure_cause
from chalicelib.workflows import STEPS, StepContext, StepFailed

__all__ = ["begin_delete", "newest_complete"]

log = logging.getLogger(__name__)

_ACTOR: Final = "workflow:delete"


def begin_delete(lc: Lifecycle, game: Game, *, reply: Mapping[str, Any] | None, all_snapshots: bool) -> str:
    """STOPPED → DELETING and the DeleteGame execution; returns the execution ARN.

    Raises:
        Conflict: the game is not stopped (any more), or a backup of it is still finishing.
    """
    if game.wait.backup and time.time() - (game.wait.backup_since or 0) < BACKUP_STALE_SECONDS:
        raise Conflict(f"A backup of **{game.name}** is still finishing; try again in a few minutes.")
    # A refused start puts the game back to STOPPED, so it is never stuck in DELETING.
    return begin_transition(lc, game, GameState.DELETING, "delete-game", reply, all_snapshots=all_snapshots)


def newest_complete(snapshots: list[Mapping[str, Any]], *, prefer: str | None = None) -> str | None:
    """The newest complete snapshot: the game's data. Start times tie within a second (the emulator
    keeps whole seconds), so a tie goes to `prefer`, the snapshot the game's row names."""
    done = [s for s in snapshots if s.get("State") == "completed"]
    if not done:
        return None
    return str(max(done, key=lambda s: (s["StartTime"], s["SnapshotId"] == prefer))["SnapshotId"])


def _deleting(ctx: StepContext) -> tuple[Lifecycle, Game, Ec2Gateway]:
    lc = ctx.lifecycle
    game = lc.games.get(ctx.tenant_id, ctx.game)
    if game is None or game.state is not GameState.DELETING:
        state = game.state.word if game else "gone"
        raise StepFailed("gangway.NotDeleting", f"{ctx.game} is {state}, not being deleted")
    return lc, game, lc.gateways.ec2(game, actor=_ACTOR)


def _owned(ec2_snapshots: list[Mapping[str, Any]], tenant_id: str, game: str) -> list[Mapping[str, Any]]:
    """Only snapshots tagged for exactly this tenant's game (the describe filter already asks for that;
    this is the second lock on a door that must never open onto another game's data)."""
    mine = f"{tenant_id}/{game}"
    return [s for s in ec2_snapshots if {"Key": "gangway", "Value": mine} in s.get("Tags", [])]


@STEPS.step("delete.snapshots")
def delete_snapshots(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Delete the game's snapshots except the newest complete one (all of them when asked)."""
    lc, game, ec2 = _deleting(ctx)
    snapshots = _owned(list(ec2.snapshots()), ctx.tenant_id, ctx.game)
    keep = (
        None if data.get("all_snapshots") else newest_complete(snapshots, prefer=game.resources.snapshot_id)
    )
    doomed = [str(s["SnapshotId"]) for s in snapshots if s["SnapshotId"] != keep]
    if doomed:
        lc.tell(data, f"⏳ Deleting **{game.name}**: removing {len(doomed)} snapshot(s)…")
    for snapshot_id in doomed:
        ec2.delete_snapshot(snapshot_id)
    return {"kept": keep, "deleted": doomed}


@STEPS.step("delete.volumes")
def delete_volumes(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Delete any volume (and instance) of the game left over, e.g. the one a failed stop kept."""
    _, _, ec2 = _deleting(ctx)
    left = ec2.leftovers()
    for instance_id in left["instances"]:
        ec2.terminate(instance_id)
    for volume_id in left["volumes"]:
        ec2.detach_and_delete_volume(volume_id)
    return left


@STEPS.step("delete.group")
def delete_group(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Delete the game's security group (every group tagged for it), once no instance uses it any more,
    and its log group (whose failure is only told: the logs expire anyway)."""
    lc, game, _ = _deleting(ctx)
    try:
        deleted = lc.gateways.security_groups(game, actor=_ACTOR).delete()
    except GroupInUse as exc:
        raise StepFailed(NOT_YET, exc.message) from exc
    problem = lc.gateways.logs(game, actor=_ACTOR).delete()
    return {"deleted": deleted, "logs": problem}


@STEPS.step("delete.forget")
def delete_forget(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Delete the game's row (only while it is DELETING); a redelivery finds it gone and is fine."""
    lc = ctx.lifecycle
    lc.games.delete(ctx.tenant_id, ctx.game, state=GameState.DELETING)
    kept = data.get("snapshots", {}).get("kept")
    logs = data.get("group", {}).get("logs")
    lc.tell(
        data,
        f"🗑️ Deleted **{ctx.game}**"
        + (
            f". Its last snapshot `{kept}` stays in the AWS account; delete it there once you no "
            "longer need it."
            if kept
            else " and all its snapshots."
        )
        + (f" Note: {logs}." if logs else ""),
    )
    return {"deleted": ctx.game, "kept": kept}


@STEPS.step("delete.failed")
def delete_failed(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Undo a failed delete: the row stays, STOPPED, pointing at its newest remaining snapshot."""
    lc = ctx.lifecycle
    game = lc.games.get(ctx.tenant_id, ctx.game)
    if game is None:  # the row went after all: nothing to put back
        return {"state": "gone"}
    deleted = set(data.get("snapshots", {}).get("deleted", []))
    try:
        snapshots = _owned(list(lc.gateways.ec2(game, actor=_ACTOR).snapshots()), ctx.tenant_id, ctx.game)
        complete = {s["SnapshotId"] for s in snapshots if s.get("State") == "completed"}
        # The row's snapshot if it survived (what the next start uses), else the newest that did.
        snapshot_id = (
            game.resources.snapshot_id
            if game.resources.snapshot_id in complete
            else newest_complete(snapshots)
        )
    except Exception:
        log.warning("delete of %s/%s: could not list snapshots", ctx.tenant_id, ctx.game, exc_info=True)
        snapshot_id = None if game.resources.snapshot_id in deleted else game.resources.snapshot_id
    if snapshot_id != game.resources.snapshot_id:
        game = lc.games.snapshot_kept(ctx.tenant_id, ctx.game, snapshot_id)
    if game.state is GameState.DELETING:
        game = lc.games.move(game, to=GameState.STOPPED)
    error = data.get("error", {})
    why = failure_cause(error)
    lc.tell(
        data,
        f"❌ **{ctx.game}** could not be deleted: {why}. It is still here, stopped"
        + (f", with its snapshot `{snapshot_id}`" if snapshot_id else "")
        + ". Run `/deletegame` again to retry.",
    )
    return {"state": game.state.value, "snapshot_id": snapshot_id}

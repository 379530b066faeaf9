"""Backups of running games: /backupnow and the BackupGame workflow (workflows/backup-game.asl.json).

The agent saves and syncs the world (`game.save`; no answer in time → snapshot anyway), then a manual
snapshot of the data volume is taken and waited for. The game stays RUNNING throughout: a claim on the
game row (`backup`, one conditional write) lets one backup run at a time. Manual backups are tagged
`gangway:role=manual-backup`, which StopGame's retention never deletes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Final

from chalicelib.games import Game, GameState
from chalicelib.instances import Ec2Gateway
from chalicelib.lifecycle.deps import Lifecycle
from chalicelib.lifecycle.progress import tell
from chalicelib.workflows import STEPS, StepContext, StepFailed

__all__ = [
    "BACKUP_SAVE_TIMEOUT_SECONDS",
    "BACKUP_STALE_SECONDS",
    "backup_execution",
    "begin_backup",
    "save_request_id",
]

log = logging.getLogger(__name__)

BACKUP_SAVE_TIMEOUT_SECONDS: Final = 120
# Longer than a backup can run (save wait + snapshot wait + steps): an older claim is a dead workflow's.
BACKUP_STALE_SECONDS: Final = 3 * 3600
NOT_YET: Final = "gangway.NotYet"
NOT_RUNNING: Final = "gangway.NotRunning"
_ACTOR: Final = "workflow:backup"


def backup_execution(tenant_id: str, game: str, interaction_id: str) -> str:
    """The execution's name: idempotent per interaction, within AWS's 80 characters."""
    return f"backup-{tenant_id}-{game}-{interaction_id}"[:80]


def save_request_id(execution: str) -> str:
    """The id of the backup's `game.save` request, so its reply (same id, agent contract) is recognised
    even if it arrives before anything could be noted, and a stale reply of an older backup is not."""
    return f"{execution}-save"


def begin_backup(
    lc: Lifecycle, game: Game, *, interaction_id: str, reply: Mapping[str, Any] | None, save_timeout: int = 0
) -> str:
    """Claim the running game for one backup and start the BackupGame execution; returns its ARN.

    Raises:
        Conflict: the game is not running, or a backup of it is already under way.
    """
    name = backup_execution(game.tenant_id, game.name, interaction_id)
    lc.games.claim_backup(game.tenant_id, game.name, execution=name, stale_after=BACKUP_STALE_SECONDS)
    try:
        return lc.workflows.start(
            "backup-game",
            name=name,
            input={
                "tenant": game.tenant_id,
                "game": game.name,
                "execution": name,
                "save_timeout": save_timeout or BACKUP_SAVE_TIMEOUT_SECONDS,
                "reply": dict(reply or {}),
            },
        )
    except Exception:
        # No workflow will ever release the claim: release it now so /backupnow can be tried again.
        lc.games.release_backup(game.tenant_id, game.name, execution=name)
        raise


def _deps(ctx: StepContext) -> Lifecycle:
    deps: Lifecycle = ctx.services.lifecycle()
    return deps


def _claimed(ctx: StepContext) -> Game:
    """The game, if it is still running and this execution still holds its backup claim."""
    game = _deps(ctx).games.get(ctx.tenant_id, ctx.game)
    if game is None or game.state is not GameState.RUNNING or not game.volume_id:
        raise StepFailed(NOT_RUNNING, f"{ctx.game} stopped during the backup")
    if game.backup != ctx.execution:
        raise StepFailed(NOT_RUNNING, f"{ctx.game} is claimed by another backup ({game.backup})")
    return game


def _mine(ec2: Ec2Gateway, execution: str) -> list[Mapping[str, Any]]:
    """This execution's snapshots (its name is in their description): a redelivered step finds its own."""
    return [s for s in ec2.snapshots() if f"({execution})" in str(s.get("Description", ""))]


@STEPS.step("backup.save")
def backup_save(ctx: StepContext, data: Mapping[str, Any]) -> None:
    """Ask the agent to save and sync the world; its `game.save.reply` finishes this step."""
    deps, game = _deps(ctx), _claimed(ctx)
    deps.games.record(ctx.tenant_id, ctx.game, backup_token=ctx.token)
    tell(deps, data, f"⏳ Backing up **{game.name}**: saving the world…")
    deps.ask_agent(game, "game.save", {}, request_id=save_request_id(ctx.execution))


@STEPS.step("backup.snapshot")
def backup_snapshot(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """A manual snapshot of the data volume (saved or not: a crash-consistent copy beats none)."""
    deps, game = _deps(ctx), _claimed(ctx)
    if game.backup_token:
        deps.games.record(ctx.tenant_id, ctx.game, backup_token=None)
    ec2 = deps.ec2(game, actor=_ACTOR)
    saved = "save_error" not in data
    mine = _mine(ec2, ctx.execution)
    if mine:
        return {"snapshot_id": str(mine[0]["SnapshotId"]), "saved": saved}
    tell(deps, data, f"⏳ Backing up **{game.name}**: taking a snapshot of its data…")
    snap = ec2.snapshot(
        game.volume_id or "",
        description=f"gangway manual backup {ctx.tenant_id}/{ctx.game} ({ctx.execution})",
        manual=True,
    )
    return {"snapshot_id": snap, "saved": saved}


@STEPS.step("backup.snapshot_ready")
def backup_snapshot_ready(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    game = _deps(ctx).games.get(ctx.tenant_id, ctx.game)
    if game is None:
        raise StepFailed("gangway.Gone", f"the game {ctx.game} no longer exists")
    state = _deps(ctx).ec2(game, actor=_ACTOR).snapshot_state(data["snapshot"]["snapshot_id"])
    if state == "pending":
        raise StepFailed(NOT_YET, "the snapshot is still being taken")
    if state != "completed":
        raise StepFailed("gangway.SnapshotFailed", f"the snapshot is {state}")
    return {"state": state}


@STEPS.step("backup.done")
def backup_done(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    deps = _deps(ctx)
    snap = str(data["snapshot"]["snapshot_id"])
    deps.games.release_backup(ctx.tenant_id, ctx.game, execution=ctx.execution)
    caveat = (
        ""
        if data["snapshot"].get("saved")
        else " The server did not confirm a save, so it holds what was on disk."
    )
    tell(
        deps,
        data,
        f"💾 **{ctx.game}** is backed up: snapshot `{snap}` (<t:{int(time.time())}:R>), a manual backup kept "
        f"until you delete it; the game kept running.{caveat}",
    )
    return {"snapshot_id": snap}


@STEPS.step("backup.failed")
def backup_failed(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Undo a failed backup: no unfinished snapshot left behind, the claim released, the user told.
    The game itself was never touched, so it keeps running (or stopping, if /stop came meanwhile)."""
    deps = _deps(ctx)
    game = deps.games.get(ctx.tenant_id, ctx.game)
    kept = _clean_up(deps, game, ctx.execution, data) if game is not None else None
    deps.games.release_backup(ctx.tenant_id, ctx.game, execution=ctx.execution)
    error = data.get("error", {})
    why = str(error.get("Cause", error.get("Error", "an unknown error")))[:300]
    if kept:
        tell(deps, data, f"⚠️ **{ctx.game}**: the backup `{kept}` was taken, but finishing up failed ({why}).")
    else:
        state = game.state.word if game is not None else "gone"
        tell(
            deps,
            data,
            f"❌ **{ctx.game}** could not be backed up: {why}. Nothing was left behind and the game is "
            f"{state} as before. Try `/backupnow` again in a few minutes.",
        )
    return {"kept": kept}


def _clean_up(deps: Lifecycle, game: Game, execution: str, data: Mapping[str, Any]) -> str | None:
    """Delete this backup's snapshot unless it completed; returns the id of a completed one."""
    ec2 = deps.ec2(game, actor=_ACTOR)
    snap = data.get("snapshot", {}).get("snapshot_id")
    try:
        ids = [str(snap)] if snap else [str(s["SnapshotId"]) for s in _mine(ec2, execution)]
    except Exception:
        log.warning("backup %s: could not list its snapshots", execution, exc_info=True)
        return None
    kept = None
    for snapshot_id in ids:
        try:
            if ec2.snapshot_state(snapshot_id) == "completed":
                kept = snapshot_id
                continue
        except Exception:
            log.warning("backup %s: could not read %s; deleting it", execution, snapshot_id, exc_info=True)
        ec2.delete_snapshot(snapshot_id)
    return kept

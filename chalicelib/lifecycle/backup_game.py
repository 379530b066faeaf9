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

from chalicelib.agents.events import AGENT_EVENTS, AgentEvent
from chalicelib.games import Game, GameState
from chalicelib.instances import Ec2Gateway
from chalicelib.lifecycle.collaborators import Lifecycle
from chalicelib.lifecycle.workflow import (
    GONE,
    SNAPSHOT_FAILED,
    failure_cause,
    finish_wait,
    reached,
    start_workflow,
)
from chalicelib.workflows import STEPS, StepContext, StepFailed

__all__ = [
    "BACKUP_SAVE_TIMEOUT_SECONDS",
    "BACKUP_STALE_SECONDS",
    "backup_execution",
    "begin_backup",
    "on_save_reply",
    "save_request_id",
]

log = logging.getLogger(__name__)

BACKUP_SAVE_TIMEOUT_SECONDS: Final = 120
# Longer than a backup can run (save wait + snapshot wait + steps): an older claim is a dead workflow's.
BACKUP_STALE_SECONDS: Final = 3 * 3600
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
    lc: Lifecycle,
    game: Game,
    *,
    interaction_id: str,
    reply: Mapping[str, Any] | None,
    save_timeout: int = 0,
    install_after: bool = False,
) -> str:
    """Claim the running game for one backup and start the BackupGame execution; returns its ARN.
    With `install_after` (/updategame), its last step asks the agent to install the game again.

    Raises:
        Conflict: the game is not running, or a backup of it is already under way.
    """
    name = backup_execution(game.tenant_id, game.name, interaction_id)
    lc.games.claim_backup(game.tenant_id, game.name, execution=name, stale_after=BACKUP_STALE_SECONDS)
    # The game's own execution stays the start's or stop's: a backup runs beside it, not instead.
    return start_workflow(
        lc,
        "backup-game",
        game,
        execution=name,
        reply=reply,
        # No workflow will ever release the claim: release it now so /backupnow can be tried again.
        undo=lambda: lc.games.release_backup(game.tenant_id, game.name, execution=name),
        save_timeout=save_timeout or BACKUP_SAVE_TIMEOUT_SECONDS,
        install_after=install_after,
    )


def _claimed(ctx: StepContext) -> Game:
    """The game, if it is still running and this execution still holds its backup claim."""
    game = ctx.lifecycle.games.get(ctx.tenant_id, ctx.game)
    if game is None or game.state is not GameState.RUNNING or not game.resources.volume_id:
        raise StepFailed(NOT_RUNNING, f"{ctx.game} stopped during the backup")
    if game.wait.backup != ctx.execution:
        raise StepFailed(NOT_RUNNING, f"{ctx.game} is claimed by another backup ({game.wait.backup})")
    return game


def _mine(ec2: Ec2Gateway, execution: str) -> list[Mapping[str, Any]]:
    """This execution's snapshots (its name is in their description): a redelivered step finds its own."""
    return [s for s in ec2.snapshots() if f"({execution})" in str(s.get("Description", ""))]


@STEPS.step("backup.save")
def backup_save(ctx: StepContext, data: Mapping[str, Any]) -> None:
    """Ask the agent to save and sync the world; its `game.save.reply` finishes this step."""
    lc, game = ctx.lifecycle, _claimed(ctx)
    lc.games.wait_for_save(ctx.tenant_id, ctx.game, ctx.token)
    lc.tell(data, f"⏳ Backing up **{game.name}**: saving the world…")
    lc.ask_agent(game, "game.save", {}, request_id=save_request_id(ctx.execution))


@STEPS.step("backup.snapshot")
def backup_snapshot(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """A manual snapshot of the data volume (saved or not: a crash-consistent copy beats none)."""
    lc, game = ctx.lifecycle, _claimed(ctx)
    if game.wait.backup_token:
        lc.games.wait_for_save(ctx.tenant_id, ctx.game, None)
    ec2 = lc.gateways.ec2(game, actor=_ACTOR)
    saved = "save_error" not in data
    mine = _mine(ec2, ctx.execution)
    if mine:
        return {"snapshot_id": str(mine[0]["SnapshotId"]), "saved": saved}
    lc.tell(data, f"⏳ Backing up **{game.name}**: taking a snapshot of its data…")
    snap = ec2.snapshot(
        game.resources.volume_id or "",
        description=f"gangway manual backup {ctx.tenant_id}/{ctx.game} ({ctx.execution})",
        manual=True,
    )
    return {"snapshot_id": snap, "saved": saved}


@STEPS.step("backup.snapshot_ready")
def backup_snapshot_ready(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    game = ctx.lifecycle.games.get(ctx.tenant_id, ctx.game)
    if game is None:
        raise StepFailed(GONE, f"the game {ctx.game} no longer exists")
    state = ctx.lifecycle.gateways.ec2(game, actor=_ACTOR).snapshot_state(data["snapshot"]["snapshot_id"])
    return reached(state, ready="completed", pending="pending", what="the snapshot", failed=SNAPSHOT_FAILED)


@STEPS.step("backup.done")
def backup_done(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    lc = ctx.lifecycle
    snap = str(data["snapshot"]["snapshot_id"])
    lc.games.release_backup(ctx.tenant_id, ctx.game, execution=ctx.execution)
    caveat = (
        ""
        if data["snapshot"].get("saved")
        else " The server did not confirm a save, so it holds what was on disk."
    )
    if data.get("install_after"):
        # /updategame: the world is safe in the snapshot; the agent saves, stops, reinstalls and restarts
        # the game, telling its progress as `install.progress` (lifecycle/catalogue_game.py).
        game = lc.games.get(ctx.tenant_id, ctx.game)
        if game is not None and game.state is GameState.RUNNING:
            lc.games.start_told(ctx.tenant_id, ctx.game, {"reply": data.get("reply")}, restart=True)
            lc.ask_agent(game, "game.install", {"force": True})
            lc.tell(
                data,
                f"⏳ **{ctx.game}** is backed up (snapshot `{snap}`, kept until you delete it); now the "
                "server reinstalls the game and starts it again. This message says when it is playable."
                + caveat,
            )
            return {"snapshot_id": snap}
    lc.tell(
        data,
        f"💾 **{ctx.game}** is backed up: snapshot `{snap}` (<t:{int(time.time())}:R>), a manual backup kept "
        f"until you delete it; the game kept running.{caveat}",
    )
    return {"snapshot_id": snap}


@STEPS.step("backup.failed")
def backup_failed(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Undo a failed backup: no unfinished snapshot left behind, the claim released, the user told.
    The game itself was never touched, so it keeps running (or stopping, if /stop came meanwhile)."""
    lc = ctx.lifecycle
    game = lc.games.get(ctx.tenant_id, ctx.game)
    kept = _clean_up(lc, game, ctx.execution, data) if game is not None else None
    lc.games.release_backup(ctx.tenant_id, ctx.game, execution=ctx.execution)
    error = data.get("error", {})
    why = failure_cause(error)
    if kept:
        lc.tell(data, f"⚠️ **{ctx.game}**: the backup `{kept}` was taken, but finishing up failed ({why}).")
    else:
        state = game.state.word if game is not None else "gone"
        lc.tell(
            data,
            f"❌ **{ctx.game}** could not be backed up: {why}. Nothing was left behind and the game is "
            f"{state} as before. Try `/backupnow` again in a few minutes.",
        )
    return {"kept": kept}


def _clean_up(lc: Lifecycle, game: Game, execution: str, data: Mapping[str, Any]) -> str | None:
    """Delete this backup's snapshot unless it completed; returns the id of a completed one."""
    ec2 = lc.gateways.ec2(game, actor=_ACTOR)
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


# -- what the agent says about saving ----------------------------------------------------------------


@AGENT_EVENTS.on("game.save.reply")
@AGENT_EVENTS.on("error")
def on_save_reply(event: AgentEvent, lc: Lifecycle) -> None:
    """The agent saved the world for a backup, or could not: either way the snapshot goes ahead.
    Only the reply to this backup's own request counts (its id), never a late one of an older backup."""
    game = lc.games.get(event.tenant_id, event.game)
    if (
        game is None
        or not game.wait.backup
        or not game.wait.backup_token
        or event.id != save_request_id(game.wait.backup)
    ):
        return
    lc.games.wait_for_save(event.tenant_id, event.game, None)
    finish_wait(
        lc,
        event,
        game.wait.backup_token,
        {"saved": bool(event.body.get("saved")), "synced": bool(event.body.get("synced"))},
    )

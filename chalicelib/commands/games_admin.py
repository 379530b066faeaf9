"""/backupnow and /deletegame: a manual backup of a running game, and deleting a stopped one."""

from __future__ import annotations

from chalicelib.commands.catalogue import GameName, jobs, registry
from chalicelib.commands.context import Context
from chalicelib.discord import ActionRow, Button, ButtonStyle, Deferred, Job, Level, Reply, Update
from chalicelib.errors import Conflict, ValidationError
from chalicelib.games import Game, GameState

__all__ = ["backupnow", "delete_confirmed", "deletegame", "latest_snapshot"]


@registry.command(level=Level.ADMIN)
def backupnow(ctx: Context, game: GameName) -> Reply | Deferred:
    """Back up a game now: a running one is saved and snapshotted while it keeps running.

    Args:
        game: The game to back up
    """
    from chalicelib.lifecycle import begin_backup, reply_ref

    found = ctx.game(game)
    if found.state is GameState.STOPPED:
        # Finding the snapshot asks EC2 (through the tenant's role): the jobs Lambda answers that.
        return Deferred(Job("games.latest_snapshot", {"game": found.name}))
    if found.state is not GameState.RUNNING:
        raise Conflict(
            f"**{found.name}** is {found.state.word}; only a running game can be backed up "
            "(a stopped one already is: its latest snapshot)."
        )
    it = ctx.interaction
    begin_backup(ctx.lifecycle, found, interaction_id=it.id, reply=reply_ref(it.application_id, it.token))
    return Reply(content=f"⏳ Backing up **{found.name}**…")


@jobs.job("games.latest_snapshot")
def latest_snapshot(ctx: Context, game: str) -> Reply:
    """A stopped game is its newest snapshot: say which one, and when it was taken."""
    from chalicelib.lifecycle import newest_complete

    found = ctx.game(game)
    if found.state is not GameState.STOPPED:
        return Reply(
            content=f"**{found.name}** is {found.state.word} now; run `/backupnow` again once it is running.",
            ephemeral=True,
        )
    snapshots = ctx.services.gateways().ec2(found, actor=ctx.interaction.user_id).snapshots()
    newest_id = newest_complete(snapshots, prefer=found.resources.snapshot_id)
    newest = next((s for s in snapshots if s["SnapshotId"] == newest_id), None)
    kept_volume = (
        " Its data volume from the last run (whose snapshot failed) is kept too, and is snapshotted at the "
        "next stop."
        if found.resources.volume_id
        else ""
    )
    if newest is None:
        return Reply(
            content=f"**{found.name}** is stopped and has no snapshot yet, so there is nothing to back up: "
            f"it gets one the first time it stops after running.{kept_volume}",
            ephemeral=True,
        )
    when = int(newest["StartTime"].timestamp())
    return Reply(
        content=f"💾 **{found.name}** is stopped, so its latest snapshot already is its backup: "
        f"`{newest['SnapshotId']}`, taken <t:{when}:R> (<t:{when}:f>). Nothing changes while it is stopped; "
        f"`/backupnow` takes a new one while it runs.{kept_volume}",
        ephemeral=True,
    )


def _deletable(game: Game) -> None:
    if game.state is not GameState.STOPPED:
        hint = " Stop it first with `/stop`." if game.state is GameState.RUNNING else ""
        raise Conflict(f"**{game.name}** is {game.state.word}; only a stopped game can be deleted.{hint}")


@registry.command(level=Level.ADMIN)
def deletegame(ctx: Context, game: GameName) -> Reply:
    """Delete a stopped game (asks first; keeps its last snapshot unless asked).

    Args:
        game: The game to delete
    """
    found = ctx.game(game)
    _deletable(found)
    return Reply(
        content=f"**Delete {found.name}?** Its settings and its older snapshots are deleted. Its last "
        "snapshot stays in the AWS account (so the world can be restored by hand) unless you choose "
        "to delete every snapshot too. This can't be undone.",
        components=(
            ActionRow(
                (
                    Button(f"Delete {found.name}", f"games:delete:{found.name}", ButtonStyle.DANGER),
                    Button(
                        "Delete it and every snapshot", f"games:delete:{found.name}:all", ButtonStyle.DANGER
                    ),
                )
            ),
        ),
        ephemeral=True,
    )


@registry.route("games:delete", level=Level.ADMIN)
def delete_confirmed(ctx: Context, *args: str) -> Update:
    """A /deletegame button: `games:delete:<game>[:all]`, the game looked up in the clicking guild."""
    from chalicelib.lifecycle import begin_delete, reply_ref

    if not 1 <= len(args) <= 2 or args[1:] not in ((), ("all",)):
        raise ValidationError("That button isn't one gangway made; run `/deletegame` again.")
    found = ctx.game(args[0])
    _deletable(found)
    it = ctx.interaction
    every = args[1:] == ("all",)
    begin_delete(ctx.lifecycle, found, reply=reply_ref(it.application_id, it.token), all_snapshots=every)
    return Update(content=f"⏳ Deleting **{found.name}**" + (" and every snapshot…" if every else "…"))

"""Creating games: /newgame's claim and the CreateGame workflow (workflows/create-game.asl.json).

The form claims the name with one conditional write (a row in CREATING: of two /newgame of one name at
once, one wins), then the workflow makes the game's security group in the tenant's account, records
it, and moves the game to STOPPED. A failure deletes the group and the row and says so: a create is
all or nothing, so /newgame can simply be run again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from chalicelib.games import Game, GameState, SettingChanges
from chalicelib.lifecycle.collaborators import Lifecycle
from chalicelib.lifecycle.workflow import start_workflow, why
from chalicelib.workflows import STEPS, StepContext, StepFailed

__all__ = ["STALE_CLAIM_SECONDS", "begin_create"]

log = logging.getLogger(__name__)

_ACTOR: Final = "workflow:create"
# Longer than CreateGame can run (4 Tasks of at most 120 s, each tried 3 times): a CREATING row this old
# has no workflow left to finish or undo it, so a new /newgame of its name takes it over.
STALE_CLAIM_SECONDS: Final = 30 * 60


def begin_create(
    lc: Lifecycle,
    tenant_id: str,
    name: str,
    *,
    description: str,
    created_by: str,
    interaction_id: str,
    reply: Mapping[str, Any] | None,
    settings: SettingChanges | None = None,
) -> Game:
    """Claim `name` (a CREATING row) and start CreateGame; returns the claimed game. `settings` are
    chosen with it (a catalogue game: its entry, recommended size, ports and form values).

    The execution is named after the interaction, so a redelivered form starts nothing twice, and a
    game deleted and created again under its old name gets a new execution.

    Raises:
        ValidationError: bad name.  Conflict: the tenant already has (or is creating) a game of that name.
    """
    claimed = lc.games.create(
        tenant_id,
        name,
        description=description,
        created_by=created_by,
        state=GameState.CREATING,
        stale_claim_after=STALE_CLAIM_SECONDS,
        settings=settings,
    )
    arn = start_workflow(
        lc,
        "create-game",
        claimed,
        execution=f"create-{interaction_id}-{tenant_id}-{name}",
        reply=reply,
        # Nothing would ever finish this create: give the name back (DESIGN.md section 2, no stuck games).
        undo=lambda: lc.games.delete(tenant_id, name, state=GameState.CREATING),
    )
    return lc.games.owned_by(tenant_id, name, arn)


def _creating(ctx: StepContext) -> tuple[Lifecycle, Game]:
    lc = ctx.lifecycle
    game = lc.games.get(ctx.tenant_id, ctx.game)
    if game is None or game.state is not GameState.CREATING:
        state = game.state.word if game else "gone"
        raise StepFailed("gangway.NotCreating", f"{ctx.game} is {state}, not being created")
    return lc, game


@STEPS.step("create.group")
def create_group(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The game's security group in the default VPC: its open ports and SFTP (found first if a retry
    already made it)."""
    lc, game = _creating(ctx)
    group_id = lc.gateways.security_groups(game, actor=_ACTOR).ensure(game.settings.ports)
    return {"group_id": group_id}


@STEPS.step("create.record")
def create_record(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Record the group on the game, so StartGame launches into it and DeleteGame removes it."""
    lc, _ = _creating(ctx)
    group_id = str(data["group"]["group_id"])
    lc.games.group_made(ctx.tenant_id, ctx.game, group_id)
    return {"security_group_id": group_id}


@STEPS.step("create.ready")
def create_ready(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """CREATING → STOPPED (a redelivery finds it STOPPED and is fine), then say so in /newgame's reply."""
    lc = ctx.lifecycle
    game = lc.games.get(ctx.tenant_id, ctx.game)
    if game is not None and game.state is GameState.CREATING:
        game = lc.games.move(game, to=GameState.STOPPED)
    if game is None or game.state is not GameState.STOPPED:
        state = game.state.word if game else "gone"
        raise StepFailed("gangway.NotCreating", f"{ctx.game} is {state}, not being created")
    then = (
        "its first start installs the game, and `/start`'s reply says when it is playable"
        if game.settings.catalogue_id
        else "then install the server through `/files` or `/terminal`"
    )
    lc.tell(
        data,
        f"✅ Created **{game.name}**"
        + (f" ({game.settings.description})" if game.settings.description else "")
        + f". Start it with `/start game:{game.name}`: {then}. The choices below can still be changed "
        "until then.",
        keep_components=True,
    )
    return {"state": game.state.value}


@STEPS.step("create.failed")
def create_failed(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Undo a failed create: no group and no row left (unless the game made it to STOPPED after all)."""
    lc = ctx.lifecycle
    game = lc.games.get(ctx.tenant_id, ctx.game)
    if game is not None and game.state is not GameState.CREATING:
        return {"state": game.state.value}  # created after all (a late success): nothing to undo
    note = ""
    if game is not None:
        try:
            lc.gateways.security_groups(game, actor=_ACTOR).delete()
        except Exception:
            # The row goes anyway (a stuck CREATING name is worse): the group keeps its tag, so a new game
            # of this name adopts it (SecurityGroups.ensure finds it), and an admin can delete it.
            log.warning("create of %s/%s: could not delete its group", ctx.tenant_id, ctx.game, exc_info=True)
            note = (
                f" Its security group `gangway-{ctx.tenant_id}-{ctx.game}` could not be removed; a new "
                "game of this name reuses it, or delete it in the EC2 console."
            )
        lc.games.delete(ctx.tenant_id, ctx.game, state=GameState.CREATING)
    because = _why(data.get("error", {}))
    lc.tell(
        data,
        f"❌ **{ctx.game}** could not be created: {because}. Nothing was kept; run `/newgame` again to retry."
        f"{note}",
    )
    return {"state": "gone"}


def _why(error: Mapping[str, Any]) -> str:
    """What went wrong, in words (a step that took too long is not a server that did not report)."""
    if error.get("Error") == "States.Timeout" and not error.get("Cause"):
        return "a step took too long"
    return why(error)

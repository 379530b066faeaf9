"""/editgame: bring a stopped game's host up without the game, to install or change the server on it.

The EditGame workflow (chalicelib/workflows/edit-game.asl.json) runs StartGame's steps with the
agent's autostart off and no preloading; the game ends RUNNING and marked `editing`, so `/games` says
"up for editing". `/files`, `/terminal` and `/stop` work as for any running game.

With `idle_minutes` it only changes how long the game may run without players before it is saved and
shut down (in any state; the agent reads it at the next launch), and brings nothing up; `idle_default`
gives the game back the stage's default time.
"""

from __future__ import annotations

from typing import Annotated

from chalicelib.commands.catalogue import GameName, registry
from chalicelib.commands.context import Context
from chalicelib.config import Settings
from chalicelib.discord import Level, Range, Reply
from chalicelib.errors import Conflict, ValidationError
from chalicelib.games import Game, GameState

__all__ = ["editgame", "idle_words"]


@registry.command(level=Level.ADMIN)
def editgame(
    ctx: Context,
    game: GameName,
    idle_minutes: Annotated[int, Range(5, 720)] | None = None,
    idle_default: bool | None = None,
) -> Reply:
    """Bring a game's server up without the game, to install or change it.

    Args:
        game: The game to edit
        idle_minutes: Only set how long it may run without players before it shuts down (default 30)
        idle_default: Only give it back the default time without players before it shuts down
    """
    from chalicelib.lifecycle import EDIT_HOWTO, begin_edit, reply_ref

    found = ctx.game(game)
    if idle_default and idle_minutes is not None:
        raise ValidationError(
            "Choose either `idle_minutes` or `idle_default`, not both: run `/editgame` again with one."
        )
    if idle_default is False and idle_minutes is None:
        when = idle_words(found, ctx.services.settings)
        return Reply(content=f"Nothing changed: **{found.name}** {when}.", ephemeral=True)
    if idle_minutes is not None or idle_default:
        changed = ctx.services.games.change(ctx.tenant_id, found.name, idle_minutes=idle_minutes)
        when = idle_words(changed, ctx.services.settings)
        return Reply(
            content=f"✅ From its next start, **{changed.name}** {when}.",
            ephemeral=True,
        )
    if found.state is not GameState.STOPPED:
        raise Conflict(
            f"**{found.name}** is {found.state.word}; only a stopped game can be brought up for editing"
            + (
                " (`/files` and `/terminal` already work while it runs)."
                if found.state is GameState.RUNNING
                else "."
            )
        )
    it = ctx.interaction
    begin_edit(ctx.lifecycle, found, reply=reply_ref(it.application_id, it.token))
    return Reply(
        content=f"⏳ Bringing **{found.name}** up for editing (its server, without the game)… "
        + EDIT_HOWTO.format(game=found.name)
    )


def idle_words(game: Game, settings: Settings) -> str:
    """When the game shuts down without players, in words (its own minutes, else the stage's default)."""
    from chalicelib.lifecycle import idle_after

    warn, stop = idle_after(game, settings)
    default = " (the default)" if game.settings.idle_minutes is None else ""
    return (
        f"shuts down after {_minutes(stop)} without players{default}, "
        f"with a warning in the channel {_minutes(stop - warn)} before"
    )


def _minutes(seconds: int) -> str:
    if seconds % 60:
        return f"{seconds} seconds"
    n = seconds // 60
    return f"{n} minute{'' if n == 1 else 's'}"

"""/editgame: bring a stopped game's host up without the game, to install or change the server on it.

The EditGame workflow (chalicelib/workflows/edit-game.asl.json) runs StartGame's steps with the
agent's autostart off and no preloading; the game ends RUNNING and marked `editing`, so `/games` says
"up for editing". `/files`, `/terminal` and `/stop` work as for any running game.
"""

from __future__ import annotations

from chalicelib.commands.catalogue import GameName, registry
from chalicelib.commands.context import Context
from chalicelib.discord import Level, Reply
from chalicelib.errors import Conflict
from chalicelib.games import GameState

__all__ = ["editgame"]


@registry.command(level=Level.ADMIN)
def editgame(ctx: Context, game: GameName) -> Reply:
    """Bring a game's server up without the game, to install or change it.

    Args:
        game: The game to edit
    """
    from chalicelib.lifecycle import EDIT_HOWTO, begin_edit, reply_ref

    found = ctx.game(game)
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

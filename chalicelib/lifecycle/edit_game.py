"""Editing games: /editgame and the EditGame workflow (workflows/edit-game.asl.json).

EditGame brings the game's host up without the game, so an admin can install or change the server over
SFTP or the terminal: it runs StartGame's steps (start_game.py) with `$.edit` set, which turns the
agent's autostart and preloading off and gives the host hours, not minutes, before it is idle
(host.py). What is EditGame's own is here: starting it and what it tells the admin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from chalicelib.games import Game
from chalicelib.lifecycle.collaborators import Lifecycle
from chalicelib.lifecycle.host import begin_host

__all__ = ["EDIT_HOWTO", "begin_edit", "up_for_editing"]

# What /editgame and EditGame's last message say (the agent's launch command is its data disk's
# /game/start.sh: lifecycle/bootstrap.py; SFTP's root is the data disk, starting in /game).
EDIT_HOWTO: Final = (
    "Install or change the server: upload it with `/files game:{game}` (SFTP, into `/game`) or set it up "
    "from `/terminal game:{game}` (it lives in `/srv/gangway/game`), with a `start.sh` there that runs it "
    "in the foreground. `/stop game:{game}` snapshots everything (what you installed is kept) and stops "
    "the server; `/start` then runs the game. Without players it stops by itself after 3 hours."
)


def begin_edit(lc: Lifecycle, game: Game, *, reply: Mapping[str, Any] | None, agent_timeout: int = 0) -> str:
    """STOPPED → STARTING and the EditGame execution (the host up without the game, for installing it).

    Raises:
        Conflict: the game is not stopped any more.  Forbidden: plan limit.
    """
    return begin_host(lc, game, "edit-game", reply=reply, agent_timeout=agent_timeout)


def up_for_editing(game: Game, where: str) -> str:
    """EditGame's last message: where the host is, and how to install the server on it."""
    return f"🛠️ **{game.name}** is up for editing at {where}, without the game. " + EDIT_HOWTO.format(
        game=game.name
    )

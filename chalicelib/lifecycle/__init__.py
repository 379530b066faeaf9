"""The game lifecycle: one module per workflow (named like its `workflows/*.asl.json`), each with its
`begin_*`, its steps and the agent events that end its waits; the collaborators they share."""

from __future__ import annotations

from chalicelib.discord.reply_editor import reply_ref
from chalicelib.lifecycle.backup_game import begin_backup
from chalicelib.lifecycle.collaborators import Lifecycle
from chalicelib.lifecycle.create_game import begin_create
from chalicelib.lifecycle.delete_game import begin_delete, newest_complete
from chalicelib.lifecycle.edit_game import EDIT_HOWTO, begin_edit
from chalicelib.lifecycle.host import idle_after
from chalicelib.lifecycle.start_game import begin_start
from chalicelib.lifecycle.stop_game import begin_stop

__all__ = [
    "EDIT_HOWTO",
    "Lifecycle",
    "begin_backup",
    "begin_create",
    "begin_delete",
    "begin_edit",
    "begin_start",
    "begin_stop",
    "idle_after",
    "newest_complete",
    "reply_ref",
]

"""The game lifecycle: Create/Start/Stop/Backup/DeleteGame steps, starting them, reacting to agents."""

from __future__ import annotations

from chalicelib.lifecycle import agent_events, steps, steps_backup, steps_create, steps_delete, steps_start
from chalicelib.lifecycle.control import begin_edit, begin_start, begin_stop, reply_ref
from chalicelib.lifecycle.deps import Lifecycle
from chalicelib.lifecycle.steps_backup import begin_backup
from chalicelib.lifecycle.steps_create import begin_create
from chalicelib.lifecycle.steps_delete import begin_delete, newest_complete

__all__ = [
    "Lifecycle",
    "agent_events",
    "begin_backup",
    "begin_create",
    "begin_delete",
    "begin_edit",
    "begin_start",
    "begin_stop",
    "newest_complete",
    "reply_ref",
    "steps",
    "steps_backup",
    "steps_create",
    "steps_delete",
    "steps_start",
]

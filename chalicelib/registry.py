"""Which modules declare into the app's four registries, listed once, so what is registered can be read
here without running any import.

- Commands and their jobs: the command modules (`@servers.command`, `@jobs.job`) fill
  `commands.catalogue.registry` and `commands.catalogue.jobs`.
- Workflow steps: one module per `workflows/*.asl.json`, plus web push's flow, fill `workflows.STEPS`.
- Agent events: the modules whose handlers end a workflow's wait or record what an agent says fill
  `agents.AGENT_EVENTS`.

Each Lambda loads only the list it needs, when it first needs it (wiring.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Final

__all__ = ["AGENT_EVENT_MODULES", "COMMAND_MODULES", "STEP_MODULES", "load"]

COMMAND_MODULES: Final = (
    "chalicelib.commands.access",
    "chalicelib.commands.access_admin",
    "chalicelib.commands.accounts",
    "chalicelib.commands.admin",
    "chalicelib.commands.audit",
    "chalicelib.commands.games_admin",
    "chalicelib.commands.games_admin_tools",
    "chalicelib.commands.games_catalogue",
    "chalicelib.commands.games_edit",
    "chalicelib.commands.games_lifecycle",
    "chalicelib.commands.membership",
    "chalicelib.commands.servers",
    "chalicelib.commands.welcome",
)

STEP_MODULES: Final = (
    "chalicelib.lifecycle.create_game",
    "chalicelib.lifecycle.start_game",
    "chalicelib.lifecycle.stop_game",
    "chalicelib.lifecycle.backup_game",
    "chalicelib.lifecycle.delete_game",
    "chalicelib.push.addip_push",
)

AGENT_EVENT_MODULES: Final = (
    "chalicelib.access.agent_events",
    "chalicelib.lifecycle.start_game",
    "chalicelib.lifecycle.stop_game",
    "chalicelib.lifecycle.backup_game",
    "chalicelib.lifecycle.players",
    "chalicelib.lifecycle.idle",
    "chalicelib.lifecycle.tools",
    "chalicelib.lifecycle.catalogue_game",
)


def load(modules: Iterable[str]) -> None:
    """Import each module (their decorators declare into the registries); importing twice is a no-op."""
    for module in modules:
        importlib.import_module(module)

"""Our command catalogue: the modules chalicelib/registry.py lists declare into it when loaded here."""

from __future__ import annotations

from chalicelib.commands.catalogue import GameName, jobs, registry
from chalicelib.commands.context import Context, Services, interaction_of_job
from chalicelib.registry import COMMAND_MODULES, load

load(COMMAND_MODULES)
registry.validate()

__all__ = ["Context", "GameName", "Services", "interaction_of_job", "jobs", "registry"]

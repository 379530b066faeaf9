"""The two registries our command modules declare into (commands/components, and job kinds)."""

from __future__ import annotations

from typing import Annotated, TypeAlias

from chalicelib.discord import Autocomplete, CommandRegistry, Length
from chalicelib.jobs.handlers import JobRegistry  # the registry alone: not the ledger, queue or runner

__all__ = ["GameName", "jobs", "registry"]

registry = CommandRegistry()
jobs = JobRegistry()

# The `game` option every game command takes (DESIGN.md §2a): autocompleted from the tenant's games.
GameName: TypeAlias = Annotated[str, Length(2, 32), Autocomplete("games")]

"""Our command catalogue, built by importing each module once (their decorators declare into it)."""

from __future__ import annotations

from chalicelib.commands import (
    access,
    accounts,
    admin,
    audit,
    games_admin,
    games_admin_tools,
    games_edit,
    games_lifecycle,
    membership,
    servers,
    welcome,
)
from chalicelib.commands.catalogue import GameName, jobs, registry
from chalicelib.commands.context import Context, Services, interaction_of_job

registry.validate()

__all__ = [
    "Context",
    "GameName",
    "Services",
    "access",
    "accounts",
    "admin",
    "audit",
    "games_admin",
    "games_admin_tools",
    "games_edit",
    "games_lifecycle",
    "interaction_of_job",
    "jobs",
    "membership",
    "registry",
    "servers",
    "welcome",
]

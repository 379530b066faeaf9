"""The game catalogue: one TOML file per game (games/), read into frozen entries (issue 17)."""

from __future__ import annotations

from chalicelib.catalogue.entry import Entry, FormField, Install, Launch, Ports, Query, Ready, Resolved, Sizes
from chalicelib.catalogue.load import GAMES_DIR, CatalogueError, catalogue, entry, load_entry

__all__ = [
    "GAMES_DIR",
    "CatalogueError",
    "Entry",
    "FormField",
    "Install",
    "Launch",
    "Ports",
    "Query",
    "Ready",
    "Resolved",
    "Sizes",
    "catalogue",
    "entry",
    "load_entry",
]

"""gangway agent: runs beside each game server and speaks the contract in DESIGN.md §4."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"

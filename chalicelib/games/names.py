"""What a game may be called, and which of its settings admin commands may change."""

from __future__ import annotations

import re
from typing import Final, TypedDict

from chalicelib.errors import ValidationError

__all__ = ["GAME_NAME", "SettingChanges", "check_name"]

GAME_NAME: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,30}[a-z0-9]")


def check_name(name: str) -> str:
    """The name if it is a valid game name.

    Raises:
        ValidationError: it is not 2-32 lowercase letters, digits or inner hyphens.
    """
    if not GAME_NAME.fullmatch(name):
        raise ValidationError(
            f"`{name[:40]}` isn't a valid game name: use 2-32 lowercase letters, digits or hyphens "
            "(for example `valheim` or `mc-survival`)."
        )
    return name


class SettingChanges(TypedDict, total=False):
    """The settings an admin command may change (`GameStore.change`), with their types."""

    description: str
    instance_type: str
    spot: bool
    on_demand_fallback: bool
    disk_gb: int
    preload: str
    fallback_types: list[str]
    ports: list[str]
    idle_minutes: int | None  # None: the stage's default

    catalogue_id: str
    install_version: str
    # The form values of a catalogue game, as a JSON object of strings.
    game_options: str

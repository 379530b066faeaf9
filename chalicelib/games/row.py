"""A game's stored row read without PynamoDB (the interaction path's Query, chalicelib/dynamodb).

`GameRow` holds GameRecord's attributes (games/models.py) with the same defaults; `game_of_record`
(games/game.py) turns either into a Game, so both paths give the same value. tests/test_dynamodb_client.py
checks that they agree on generated rows and that this row declares exactly the model's attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.dynamodb import values as v
from chalicelib.dynamodb.values import Item

__all__ = ["GameRow", "game_row"]


@dataclass(frozen=True)
class GameRow:
    """GameRecord's attributes as a stored item holds them (None: absent), with the model's defaults."""

    tenant_id: str
    name: str
    created_by: str
    created_at: float
    updated_at: float
    description: str = ""
    state: str = "STOPPED"
    in_transit: str | None = None  # the sparse index's key (models.py); the reconciliation pass's only
    execution: str | None = None
    instance_type: str = "t3.medium"
    spot: bool = False
    on_demand_fallback: bool = True
    disk_gb: float = 12
    preload: str = "off"
    fallback_types: list[str | None] | None = None
    ports: list[str | None] | None = None
    idle_minutes: float | None = None
    instance_id: str | None = None
    volume_id: str | None = None
    zone: str | None = None
    address: str | None = None
    snapshot_id: str | None = None
    task_token: str | None = None
    task_wait: str | None = None
    task_trace: str | None = None
    editing: bool | None = None
    agent_reply: str | None = None
    backup: str | None = None
    backup_since: float | None = None
    backup_token: str | None = None
    security_group_id: str | None = None
    players: float | None = None
    players_at: float | None = None
    channel_id: str | None = None
    player_names: list[str | None] | None = None
    catalogue_id: str | None = None
    install_version: str | None = None
    game_options: str | None = None
    start_reply: str | None = None
    playable_at: float | None = None
    version: int | None = None


def game_row(item: Item) -> GameRow:
    """A Query answer's item as a GameRow, strictly (values.py)."""
    return GameRow(
        tenant_id=v.required_text(item, "tenant_id"),
        name=v.required_text(item, "name"),
        created_by=v.required_text(item, "created_by"),
        created_at=v.required_number(item, "created_at"),
        updated_at=v.required_number(item, "updated_at"),
        description=v.text(item, "description", ""),
        state=v.text(item, "state", "STOPPED"),
        in_transit=v.text(item, "in_transit"),
        execution=v.text(item, "execution"),
        instance_type=v.text(item, "instance_type", "t3.medium"),
        spot=v.boolean(item, "spot", False),
        on_demand_fallback=v.boolean(item, "on_demand_fallback", True),
        disk_gb=v.number(item, "disk_gb", 12),
        preload=v.text(item, "preload", "off"),
        fallback_types=v.text_list(item, "fallback_types"),
        ports=v.text_list(item, "ports"),
        idle_minutes=v.number(item, "idle_minutes"),
        instance_id=v.text(item, "instance_id"),
        volume_id=v.text(item, "volume_id"),
        zone=v.text(item, "zone"),
        address=v.text(item, "address"),
        snapshot_id=v.text(item, "snapshot_id"),
        task_token=v.text(item, "task_token"),
        task_wait=v.text(item, "task_wait"),
        task_trace=v.text(item, "task_trace"),
        editing=v.boolean(item, "editing"),
        agent_reply=v.text(item, "agent_reply"),
        backup=v.text(item, "backup"),
        backup_since=v.number(item, "backup_since"),
        backup_token=v.text(item, "backup_token"),
        security_group_id=v.text(item, "security_group_id"),
        players=v.number(item, "players"),
        players_at=v.number(item, "players_at"),
        channel_id=v.text(item, "channel_id"),
        player_names=v.text_list(item, "player_names"),
        catalogue_id=v.text(item, "catalogue_id"),
        install_version=v.text(item, "install_version"),
        game_options=v.text(item, "game_options"),
        start_reply=v.text(item, "start_reply"),
        playable_at=v.number(item, "playable_at"),
        version=v.version(item, "version"),
    )

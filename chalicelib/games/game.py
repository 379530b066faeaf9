"""A game as handlers and steps see it, in three parts that change for different reasons.

- `GameSettings`: what the admin chose (at /newgame, later with /editgame, /openport…); read by the
  next start.
- `GameResources`: what runs for it now (instance, volume, address) and what it keeps (its newest
  complete snapshot, its security group); written by the workflow steps that make or remove them.
- `WorkflowWait`: which execution owns its current state, and what a step waits for from its agent
  (task tokens, a backup's claim, a tool's reply); written by the steps and the agent events.

The row stays one DynamoDB item (GameRecord); only the store (store.py) writes it, each part through
its own typed methods.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chalicelib.games.row import GameRow
from chalicelib.games.states import GameState

if TYPE_CHECKING:
    from chalicelib.games.models import GameRecord

__all__ = ["Game", "GameResources", "GameSettings", "WorkflowWait", "game_of_record"]


@dataclass(frozen=True)
class GameSettings:
    """What to run: chosen at /newgame, changed by admins; the workflows read them at the next start."""

    description: str = ""
    instance_type: str = "t3.medium"
    spot: bool = False
    on_demand_fallback: bool = True
    disk_gb: int = 12
    preload: str = "off"
    # Instance types StartGame may use, in order, when AWS has no room for `instance_type`.
    fallback_types: tuple[str, ...] = ()
    # Extra ports the game serves, normalised (`tcp:27015`, `udp:2456-2458`).
    ports: tuple[str, ...] = ()
    # Minutes without players before the agent shuts the game down (/editgame idle_minutes), warning at
    # two thirds of it; None: the stage's default (Settings.idle_warn_s / idle_stop_s).
    idle_minutes: int | None = None
    # A catalogue game: its entry's id, the install version its agent is to have, the admin's form
    # values (sorted pairs). None / empty: a custom game.
    catalogue_id: str | None = None
    install_version: str | None = None
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class GameResources:
    """What runs for the game now (empty while stopped), and what it keeps between runs."""

    instance_id: str | None = None
    volume_id: str | None = None
    zone: str | None = None
    address: str | None = None
    # The newest complete snapshot: the game's data at rest.
    snapshot_id: str | None = None
    security_group_id: str | None = None
    # Up for /editgame: the host runs without the game.
    editing: bool = False


@dataclass(frozen=True)
class WorkflowWait:
    """Who owns the game's current state and what its steps wait for."""

    # The Step Functions execution that owns the current transition.
    execution: str | None = None
    # The task token of a step waiting on the agent, and (JSON) what it waits for when that is not the
    # agent's `ready` (a preload, `game.start`), with where and how far its progress was told.
    task_token: str | None = None
    task_wait: str | None = None
    # The trace of the waiting step (tracing on): the agent event that ends the wait continues it, so a
    # /start stays one trace across the agent's `ready`.
    task_trace: str | None = None
    # The backup of a running game (its execution name), since when, and its wait for `game.save`.
    backup: str | None = None
    backup_since: float | None = None
    backup_token: str | None = None
    # The newest agent reply a command waits for (/files, /extenddisk), as JSON (lifecycle/tools.py).
    agent_reply: str | None = None
    # This run's /start reply (JSON), edited by install progress and `playable` after the start ended.
    start_reply: str | None = None


@dataclass(frozen=True)
class Game:
    """One game server of one tenant."""

    tenant_id: str
    name: str
    state: GameState
    created_at: float
    updated_at: float
    version: int
    settings: GameSettings = field(default_factory=GameSettings)
    resources: GameResources = field(default_factory=GameResources)
    wait: WorkflowWait = field(default_factory=WorkflowWait)
    # Players online as the agent last said, and when (written without a version bump).
    players: int | None = None
    players_at: float | None = None
    # The channel of its last /start, where the backend says what the agent noticed (idle warnings).
    channel_id: str | None = None
    # Their names, where the game's query protocol gives them; and when this run became playable.
    player_names: tuple[str, ...] | None = None
    playable_at: float | None = None


def _options(raw: str | None) -> tuple[tuple[str, str], ...]:
    """The stored form values (a JSON object of strings); anything else reads as none."""
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return ()
    if not isinstance(data, dict):
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in data.items()))


def _float(value: float | None) -> float | None:
    return float(value) if value is not None else None


def game_of_record(rec: GameRecord | GameRow) -> Game:
    """The row (PynamoDB's, or the reader's: games/row.py) as a Game: one conversion for both paths."""
    return Game(
        tenant_id=rec.tenant_id,
        name=rec.name,
        state=GameState(rec.state),
        created_at=float(rec.created_at),
        updated_at=float(rec.updated_at),
        version=int(rec.version or 0),
        settings=GameSettings(
            description=rec.description,
            instance_type=rec.instance_type,
            spot=bool(rec.spot),
            on_demand_fallback=bool(rec.on_demand_fallback),
            disk_gb=int(rec.disk_gb),
            preload=rec.preload,
            fallback_types=tuple(str(t) for t in rec.fallback_types or ()),
            ports=tuple(str(p) for p in rec.ports or ()),
            idle_minutes=int(rec.idle_minutes) if rec.idle_minutes is not None else None,
            catalogue_id=rec.catalogue_id,
            install_version=rec.install_version,
            options=_options(rec.game_options),
        ),
        resources=GameResources(
            instance_id=rec.instance_id,
            volume_id=rec.volume_id,
            zone=rec.zone,
            address=rec.address,
            snapshot_id=rec.snapshot_id,
            security_group_id=rec.security_group_id,
            editing=bool(rec.editing),
        ),
        wait=WorkflowWait(
            execution=rec.execution,
            task_token=rec.task_token,
            task_wait=rec.task_wait,
            task_trace=rec.task_trace,
            backup=rec.backup,
            backup_since=_float(rec.backup_since),
            backup_token=rec.backup_token,
            agent_reply=rec.agent_reply,
            start_reply=rec.start_reply,
        ),
        players=int(rec.players) if rec.players is not None else None,
        players_at=_float(rec.players_at),
        channel_id=rec.channel_id,
        player_names=tuple(str(n) for n in rec.player_names) if rec.player_names is not None else None,
        playable_at=_float(rec.playable_at),
    )

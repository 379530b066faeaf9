"""PynamoDB model of a game; the partition key is the tenant, the sort key the game's name."""

from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.config import settings
from chalicelib.storage import TableMeta, share_one_session

__all__ = ["GameRecord", "InTransit"]

_S = settings()


class InTransit(GlobalSecondaryIndex["GameRecord"]):  # type: ignore[no-untyped-call]  # pynamodb's hook is untyped
    """Every tenant's games in a transitional state, by when they last changed, for the reconciliation
    pass: a sparse index (only rows with `in_transit` are in it), so the pass reads what may be stuck and
    never the whole table."""

    class Meta:
        index_name = "in-transit"
        projection = AllProjection()

    in_transit = UnicodeAttribute(hash_key=True)
    updated_at = NumberAttribute(range_key=True)


class GameRecord(Model):
    """One game server of one tenant."""

    class Meta(TableMeta):
        table_name = _S.games_table

    tenant_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute(range_key=True)
    description = UnicodeAttribute(default="")
    state = UnicodeAttribute(default="STOPPED")
    # The state again while it is transitional (games/states.py TRANSITIONAL), absent otherwise: the key
    # of the sparse `in_transit_index`. Written with the state, in the same request.
    in_transit = UnicodeAttribute(null=True)
    # The Step Functions execution that owns the current transition (its name is idempotent).
    execution = UnicodeAttribute(null=True)
    # What to run: chosen at /newgame, changed with /editgame later.
    instance_type = UnicodeAttribute(default="t3.medium")
    spot = BooleanAttribute(default=False)
    on_demand_fallback = BooleanAttribute(default=True)
    disk_gb = NumberAttribute(default=12)
    preload = UnicodeAttribute(default="off")
    # Instance types StartGame may use, in order, when AWS has no room for `instance_type` in any zone.
    fallback_types = ListAttribute(of=UnicodeAttribute, null=True)
    # Extra ports the game serves, normalised (`tcp:27015`, `udp:2456-2458`): /openport and /closeport.
    ports = ListAttribute(of=UnicodeAttribute, null=True)
    # Minutes without players before the idle shutdown (/editgame idle_minutes); unset: the stage's default.
    idle_minutes = NumberAttribute(null=True)
    # What runs now (empty while stopped) and the newest complete snapshot: the game's data at rest.
    instance_id = UnicodeAttribute(null=True)
    volume_id = UnicodeAttribute(null=True)
    zone = UnicodeAttribute(null=True)
    address = UnicodeAttribute(null=True)
    snapshot_id = UnicodeAttribute(null=True)
    # The task token of a workflow step waiting on this game's agent (ready, saved).
    task_token = UnicodeAttribute(null=True)
    # What task_token waits for when it is not the agent's `ready` (a preload, `game.start`), and where
    # and how far its progress was told: JSON (lifecycle/start_game.py).
    task_wait = UnicodeAttribute(null=True)
    # The X-Ray trace header of the step that keeps task_token: the agent event ending the wait joins it.
    task_trace = UnicodeAttribute(null=True)
    # Up for /editgame: the host runs without the game (for installing it); set by the EditGame launch.
    editing = BooleanAttribute(null=True)
    # The newest agent reply a command waits for (/files, /extenddisk): `{"id", "type", "body"}` as JSON,
    # cleared by the job that reads it (lifecycle/tools.py explains why it lives here).
    agent_reply = UnicodeAttribute(null=True)
    # The Backup workflow of a running game (its execution name) and since when: one at a time; and
    # the task token of its wait for the agent's `game.save` reply (apart from task_token: a /stop may
    # run meanwhile and owns that one).
    backup = UnicodeAttribute(null=True)
    backup_since = NumberAttribute(null=True)
    backup_token = UnicodeAttribute(null=True)
    # The game's own security group (instances/security.py), made by CreateGame, deleted by DeleteGame.
    security_group_id = UnicodeAttribute(null=True)
    # Players online as the agent last said (`players` and `heartbeat` events) and when: written without
    # a version bump (GameStore.note_players), so heartbeats never make a read-modify-write conflict.
    players = NumberAttribute(null=True)
    players_at = NumberAttribute(null=True)
    # The channel of the game's last /start: its idle warnings go there (written without a version bump).
    channel_id = UnicodeAttribute(null=True)
    # Their names, where the game's query protocol gives them (`players` events; issue 17).
    player_names = ListAttribute(of=UnicodeAttribute, null=True)
    # A catalogue game (chalicelib/catalogue): its entry, the install version the agent is to have (bumped
    # by /updategame), and the admin's form values as a JSON object. None: a custom game.
    catalogue_id = UnicodeAttribute(null=True)
    install_version = UnicodeAttribute(null=True)
    game_options = UnicodeAttribute(null=True)
    # This run: the /start reply (JSON reply reference) that install progress and `playable` edit, and
    # when the agent said the game is playable; both cleared at the next start.
    start_reply = UnicodeAttribute(null=True)
    playable_at = NumberAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    version = VersionAttribute()
    in_transit_index = InTransit()


share_one_session(GameRecord)

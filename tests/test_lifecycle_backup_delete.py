"""/backupnow and /deletegame on the embedded emulator: the real BackupGame and DeleteGame ASL executed by
moto, steps through the steps queue, EC2 through the credentials broker, the agent played by its events.

Games that only need to look running to a backup get their row and a real data volume directly (no
instance); the full start → backup → stop → delete path runs once, through signed interactions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from chalicelib.games import GameRecord, GameState
from chalicelib.lifecycle import begin_backup, reply_ref
from chalicelib.lifecycle.backup_game import save_request_id
from chalicelib.wiring import container
from devstack.discord_user import Who, snowflake
from tests.conftest import APPLICATION_ID
from tests.helpers import Harness
from tests.lifecycle_helpers import (
    MAIN,
    STORE,
    create_game,
    ec2_fails,
    ec2_of,
    game_row,
    pump_steps,
    start_until_running,
    stop_until_stopped,
)


@pytest.fixture
def tenant(harness: Harness) -> Iterator[str]:
    harness.command("setup")
    harness.component("setup:main", [MAIN])
    yield harness.user.who.guild_id or ""


def _tags(snapshot: Any) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in snapshot.get("Tags", [])}


def _snapshot_ids(tenant: str, name: str) -> list[str]:
    return [str(s["SnapshotId"]) for s in ec2_of(tenant, name).snapshots()]


def _last_edit(harness: Harness, payload: dict[str, Any]) -> str:
    calls = harness.calls_for(payload["token"])
    assert calls, "the workflow never told the user anything"
    content: str = calls[-1]["json"]["content"]
    return content


def _running(tenant: str, name: str) -> str:
    """A game that is RUNNING as far as a backup can tell: its row says so and its data volume exists."""
    STORE.create(tenant, name, description="", created_by="1")
    ec2 = ec2_of(tenant, name)
    zone = ec2.zones()[0]
    volume = ec2.create_volume(zone=zone, size_gb=1, snapshot_id=None, token=snowflake())
    GameRecord.get(tenant, name).update(
        actions=[
            GameRecord.state.set("RUNNING"),
            GameRecord.volume_id.set(volume),
            GameRecord.zone.set(zone),
        ]
    )
    return volume


def _stopped(tenant: str, name: str, *, snapshots: int, leftover_volume: bool = False) -> list[str]:
    """A stopped game with `snapshots` data snapshots (its row names the newest); newest first."""
    STORE.create(tenant, name, description="", created_by="1")
    ec2 = ec2_of(tenant, name)
    volume = ec2.create_volume(zone=ec2.zones()[0], size_gb=1, snapshot_id=None, token=snowflake())
    for n in range(snapshots):
        ec2.snapshot(volume, description=f"test {n}")
    if not leftover_volume:
        ec2.detach_and_delete_volume(volume)
    ids = _snapshot_ids(tenant, name)
    if ids:
        STORE.snapshot_kept(tenant, name, ids[0])
        if leftover_volume:
            STORE.volume_made(tenant, name, volume)
    return ids


def _backup(harness: Harness, tenant: str, name: str) -> dict[str, Any]:
    """/backupnow of a running game until the agent was asked to save; returns the interaction."""
    payload, answer = harness.command("backupnow", game=name)
    assert answer["data"]["content"] == f"⏳ Backing up **{name}**…", answer
    pump_steps(lambda: bool(game_row(tenant, name).wait.backup_token))
    return payload


def _agent_says(tenant: str, name: str, kind: str, body: dict[str, Any], request_id: str | None) -> None:
    """The agent replies to request `request_id` (as the IoT rule delivers it: envelope plus topic)."""
    message = {"id": request_id, "type": kind, "body": body, "topic": f"gangway/{tenant}/{name}/evt"}
    container().agent_events.run(json.dumps(message))


def _saved(tenant: str, name: str) -> None:
    """The agent saved the world for the game's current backup."""
    backup = game_row(tenant, name).wait.backup
    assert backup
    _agent_says(tenant, name, "game.save.reply", {"saved": True, "synced": True}, save_request_id(backup))


@contextmanager
def _games_table_fails(operation: str) -> Iterator[None]:
    """DynamoDB refusing `operation` on the games table, at the botocore seam of PynamoDB's client."""
    client: Any = GameRecord._get_connection().connection.client

    def deny(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        body = {"Error": {"Code": "AccessDeniedException", "Message": f"injected: {operation} refused"}}
        return AWSResponse("https://dynamodb", 400, {}, None), body  # type: ignore[arg-type]

    client.meta.events.register(f"before-call.dynamodb.{operation}", deny)
    try:
        yield
    finally:
        client.meta.events.unregister(f"before-call.dynamodb.{operation}", deny)


def _click(harness: Harness, custom_id: str, who: Who | None = None) -> tuple[dict[str, Any], Any]:
    payload = harness.user.component(custom_id, who=who)
    status, answer = harness.post(payload)
    assert status == 200, answer
    return payload, answer


def _manual(tenant: str, name: str) -> list[Any]:
    return [s for s in ec2_of(tenant, name).snapshots() if _tags(s).get("gangway:role") == "manual-backup"]


# -- the whole path ---------------------------------------------------------------------------------------


def test_backup_while_running_retention_keeps_it_then_delete_keeps_the_newest(
    harness: Harness, tenant: str
) -> None:
    create_game(harness)
    start_until_running(harness, tenant)
    payload = _backup(harness, tenant, "valheim")
    assert game_row(tenant, "valheim").state is GameState.RUNNING
    _, again = harness.command("backupnow", game="valheim")
    assert "already under way" in again["data"]["content"]
    _saved(tenant, "valheim")
    pump_steps(lambda: game_row(tenant, "valheim").wait.backup is None)
    game = game_row(tenant, "valheim")
    assert game.state is GameState.RUNNING and not game.wait.backup_token and game.resources.instance_id
    [backup] = _manual(tenant, "valheim")
    assert backup["State"] == "completed" and backup["VolumeId"] == game.resources.volume_id
    assert f"`{backup['SnapshotId']}`" in _last_edit(harness, payload)
    assert _last_edit(harness, payload).startswith("💾 **valheim** is backed up")

    # An agent that never answers: after the input's timeout the snapshot is taken anyway.
    begin_backup(
        container().lifecycle,
        game,
        interaction_id=snowflake(),
        reply=reply_ref(APPLICATION_ID, payload["token"]),
        save_timeout=1,
    )
    pump_steps(lambda: game_row(tenant, "valheim").wait.backup is None)
    assert len(_manual(tenant, "valheim")) == 2
    assert "did not confirm a save" in _last_edit(harness, payload)

    # Retention (StopGame) keeps the newest data snapshots up to the plan's number, and every manual backup.
    ec2 = ec2_of(tenant, "valheim")
    for n in range(4):
        ec2.snapshot(game.resources.volume_id or "", description=f"older {n}")
    manual = {s["SnapshotId"] for s in _manual(tenant, "valheim")}
    time.sleep(1.1)  # the emulator's start times have whole seconds: let the stop's snapshot be newest
    stop_until_stopped(harness, tenant)
    game = game_row(tenant, "valheim")
    left = ec2.snapshots()
    assert {s["SnapshotId"] for s in _manual(tenant, "valheim")} == manual
    data = [s["SnapshotId"] for s in left if _tags(s)["gangway:role"] == "data"]
    assert len(data) == 3 and game.resources.snapshot_id == left[0]["SnapshotId"] == data[0]

    # A stopped game's backup is its latest snapshot: /backupnow says which, from the jobs Lambda.
    asked, answer = harness.command("backupnow", game="valheim")
    assert answer["type"] == 5
    harness.run_jobs_for(asked["token"])
    said = _last_edit(harness, asked)
    assert f"`{game.resources.snapshot_id}`" in said and "<t:" in said and "already is its backup" in said

    # /deletegame asks first; the default keeps the newest snapshot (and nothing else of the game).
    _, answer = harness.command("deletegame", game="valheim")
    buttons = answer["data"]["components"][0]["components"]
    assert [b["custom_id"] for b in buttons] == ["games:delete:valheim", "games:delete:valheim:all"]
    assert {b["style"] for b in buttons} == {4}
    assert answer["data"]["flags"] == 64
    clicked, answer = _click(harness, "games:delete:valheim")
    assert answer["type"] == 7 and answer["data"]["content"] == "⏳ Deleting **valheim**…"
    pump_steps(lambda: STORE.get(tenant, "valheim") is None)
    assert _snapshot_ids(tenant, "valheim") == [game.resources.snapshot_id]
    assert ec2_of(tenant, "valheim").leftovers() == {"instances": [], "volumes": []}
    assert _last_edit(harness, clicked).startswith(
        f"🗑️ Deleted **valheim**. Its last snapshot `{game.resources.snapshot_id}`"
    )
    _, answer = harness.command("games", game="valheim")
    assert "does not exist" in answer["data"]["content"]


# -- delete ------------------------------------------------------------------------------------------------


def test_delete_with_every_snapshot_never_touches_another_game_or_tenant(
    harness: Harness, tenant: str
) -> None:
    _stopped(tenant, "ark", snapshots=3, leftover_volume=True)
    other_game = _stopped(tenant, "rust", snapshots=2)
    elsewhere = snowflake()
    other_tenant = _stopped(elsewhere, "ark", snapshots=2)  # same name, another tenant
    clicked, answer = _click(harness, "games:delete:ark:all")
    assert answer["data"]["content"] == "⏳ Deleting **ark** and every snapshot…"
    assert game_row(tenant, "ark").state is GameState.DELETING
    _, refused = harness.command("start", game="ark")
    assert "is deleting" in refused["data"]["content"]
    _, listed = harness.command("games")
    assert "🗑️ **ark** · deleting" in listed["data"]["embeds"][0]["description"]
    pump_steps(lambda: STORE.get(tenant, "ark") is None)
    assert _snapshot_ids(tenant, "ark") == []
    assert ec2_of(tenant, "ark").leftovers() == {"instances": [], "volumes": []}
    assert _snapshot_ids(tenant, "rust") == other_game and game_row(tenant, "rust").state is GameState.STOPPED
    assert (
        _snapshot_ids(elsewhere, "ark") == other_tenant and game_row(elsewhere, "ark").resources.snapshot_id
    )
    assert _last_edit(harness, clicked) == "🗑️ Deleted **ark** and all its snapshots."


def test_delete_keeps_the_newest_complete_snapshot_by_default(harness: Harness, tenant: str) -> None:
    before = _stopped(tenant, "ark", snapshots=3)
    _click(harness, "games:delete:ark")
    pump_steps(lambda: STORE.get(tenant, "ark") is None)
    assert _snapshot_ids(tenant, "ark") == before[:1]


def test_refusals_are_clear_and_change_nothing(harness: Harness, tenant: str) -> None:
    _stopped(tenant, "valheim", snapshots=1)
    _running(tenant, "factorio")
    STORE.create(tenant, "ark", description="", created_by="1")
    GameRecord.get(tenant, "ark").update(actions=[GameRecord.state.set("STARTING")])
    elsewhere = snowflake()
    theirs = _stopped(elsewhere, "palworld", snapshots=1)
    member = Who(guild_id=tenant, user_id=snowflake(), role_ids=(MAIN,), permissions=0)
    rows = {n: game_row(tenant, n) for n in ("valheim", "factorio", "ark")}
    snapshots = _snapshot_ids(tenant, "valheim")

    def says(answer: Any, *parts: str) -> None:
        content = answer["data"]["content"]
        assert answer["data"].get("flags") == 64 and all(p in content for p in parts), content

    says(harness.command("deletegame", game="factorio")[1], "is running", "only a stopped game", "/stop")
    says(_click(harness, "games:delete:factorio")[1], "only a stopped game can be deleted")
    says(harness.command("deletegame", game="ark")[1], "is starting", "only a stopped game")
    says(harness.command("backupnow", game="ark")[1], "is starting", "only a running game can be backed up")
    for answer in (
        harness.command("deletegame", game="nope")[1],
        harness.command("backupnow", game="nope")[1],
        _click(harness, "games:delete:nope")[1],
        _click(harness, "games:delete:palworld")[1],  # another tenant's game, named in a forged button
    ):
        says(answer, "does not exist on this server")
    says(_click(harness, "games:delete:valheim:everything")[1], "isn't one gangway made")
    says(_click(harness, "games:delete:Valheim;drop")[1], "isn't a valid game name")
    for answer in (
        harness.command("deletegame", who=member, game="valheim")[1],
        harness.command("backupnow", who=member, game="factorio")[1],
        _click(harness, "games:delete:valheim", who=member)[1],
    ):
        says(answer, "admin")
    assert {n: game_row(tenant, n) for n in rows} == rows
    assert _snapshot_ids(tenant, "valheim") == snapshots
    assert (
        _snapshot_ids(elsewhere, "palworld") == theirs
        and game_row(elsewhere, "palworld").state is GameState.STOPPED
    )


def _forget_fails() -> Any:
    return _games_table_fails("DeleteItem")


@pytest.mark.parametrize(
    "fault, every",
    [
        (lambda: ec2_fails("DeleteSnapshot"), False),
        (lambda: ec2_fails("DeleteVolume"), True),
        (_forget_fails, False),
    ],
    ids=["snapshots", "volumes", "forget"],
)
def test_a_failed_delete_step_leaves_the_game_stopped_and_retryable(
    harness: Harness, tenant: str, fault: Callable[[], Any], every: bool
) -> None:
    _stopped(tenant, "ark", snapshots=2, leftover_volume=True)
    with fault():
        clicked, _ = _click(harness, "games:delete:ark" + (":all" if every else ""))
        pump_steps(lambda: game_row(tenant, "ark").state is GameState.STOPPED)
    game = game_row(tenant, "ark")
    remaining = _snapshot_ids(tenant, "ark")
    assert game.resources.snapshot_id == (remaining[0] if remaining else None)
    told = _last_edit(harness, clicked)
    assert told.startswith("❌ **ark** could not be deleted: ") and "Run `/deletegame` again" in told
    if fault is _forget_fails:  # and it can simply be retried (once is enough to show it)
        _click(harness, "games:delete:ark:all")
        pump_steps(lambda: STORE.get(tenant, "ark") is None)
        assert _snapshot_ids(tenant, "ark") == [] and ec2_of(tenant, "ark").leftovers()["volumes"] == []


# -- backup failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "operation, when",
    [("CreateSnapshot", ""), ("DescribeSnapshots", "SnapshotId")],
    ids=["snapshot", "ready"],
)
def test_a_failed_backup_step_leaves_no_snapshot_and_the_game_running(
    harness: Harness, tenant: str, operation: str, when: str
) -> None:
    volume = _running(tenant, "valheim")
    payload = _backup(harness, tenant, "valheim")
    with ec2_fails(operation, when):
        _saved(tenant, "valheim")
        pump_steps(lambda: game_row(tenant, "valheim").wait.backup is None)
    game = game_row(tenant, "valheim")
    assert (
        game.state is GameState.RUNNING and game.resources.volume_id == volume and not game.wait.backup_token
    )
    assert _manual(tenant, "valheim") == []
    told = _last_edit(harness, payload)
    assert told.startswith("❌ **valheim** could not be backed up: ") and "running as before" in told
    if operation == "CreateSnapshot":  # the claim was released: a new backup may run
        _backup(harness, tenant, "valheim")
        _saved(tenant, "valheim")
        pump_steps(lambda: game_row(tenant, "valheim").wait.backup is None)
        assert len(_manual(tenant, "valheim")) == 1


def test_an_agent_error_reply_still_snapshots_and_a_stale_reply_is_ignored(
    harness: Harness, tenant: str
) -> None:
    _running(tenant, "valheim")
    payload = _backup(harness, tenant, "valheim")
    token = game_row(tenant, "valheim").wait.backup_token
    _agent_says(tenant, "valheim", "game.save.reply", {"saved": True, "synced": True}, "backup-older-save")
    assert game_row(tenant, "valheim").wait.backup_token == token  # not this backup's request
    backup = game_row(tenant, "valheim").wait.backup or ""
    _agent_says(
        tenant, "valheim", "error", {"code": "failed", "message": "save failed"}, save_request_id(backup)
    )
    pump_steps(lambda: game_row(tenant, "valheim").wait.backup is None)
    assert len(_manual(tenant, "valheim")) == 1 and game_row(tenant, "valheim").state is GameState.RUNNING
    assert "did not confirm a save" in _last_edit(harness, payload)

"""/editgame: the host up without the game (EditGame: StartGame's steps with the agent's autostart off,
no preloading, no player push), RUNNING and marked for editing; /stop snapshots it as usual.

Through signed interactions (the Harness), the real ASL on moto, the agent's part played by its events.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from chalicelib.games import GameRecord, GameState
from chalicelib.wiring import container
from devstack.discord_user import Who, snowflake
from tests.helpers import Harness
from tests.lifecycle_helpers import (
    agent_event,
    create_game,
    ec2_of,
    execution_status,
    game_row,
    pump_steps,
    start_until_running,
    stop_until_stopped,
)
from tests.test_lifecycle_faults import _with_snapshot
from tests.test_lifecycle_faults import fail_ec2 as fail_ec2  # noqa: PLC0414 - re-exported fixture


def _user_data(instance_id: str | None) -> str:
    answer = (
        container().client("ec2").describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    )
    return base64.b64decode(answer["UserData"]["Value"]).decode()


def _steps_run(game: Any) -> list[str]:
    """The steps the game's current execution sent to the steps queue, in order."""
    sfn = container().client("stepfunctions")
    events = sfn.get_execution_history(executionArn=game.wait.execution, maxResults=1000)["events"]
    return [
        json.loads(e["taskScheduledEventDetails"]["parameters"])["MessageBody"]["step"]
        for e in events
        if e["type"] == "TaskScheduled"
    ]


def _edit_until_up(harness: Harness, tenant: str, name: str) -> dict[str, Any]:
    payload, answer = harness.command("editgame", game=name)
    content = answer["data"]["content"]
    assert content.startswith(f"⏳ Bringing **{name}** up for editing")
    assert f"/files game:{name}" in content and f"/terminal game:{name}" in content
    assert f"/stop game:{name}` snapshots everything" in content
    pump_steps(lambda: bool(game_row(tenant, name).wait.task_token))  # waiting for the agent
    assert game_row(tenant, name).resources.editing
    agent_event(tenant, name, "ready", {"version": "test", "game_running": False})
    pump_steps(lambda: game_row(tenant, name).state is GameState.RUNNING)
    return payload


def test_editgame_brings_the_host_up_without_the_game_and_stop_snapshots_it(
    harness: Harness, tenant: str
) -> None:
    create_game(harness, "valheim")
    payload = _edit_until_up(harness, tenant, "valheim")
    game = game_row(tenant, "valheim")
    assert game.resources.editing and game.resources.instance_id and game.resources.volume_id and game.resources.address
    config = _user_data(game.resources.instance_id)
    assert "autostart = false" in config
    # nobody plays on an editing host: hours, not the game's minutes, before the agent calls it idle
    assert "warn_after_s = 7200" in config and "stop_after_s = 10800" in config
    told = [c["json"]["content"] for c in harness.calls_for(payload["token"])][-1]
    assert told.startswith("🛠️ **valheim** is up for editing at") and "without the game" in told
    assert "/files game:valheim" in told and "/stop game:valheim" in told
    steps = _steps_run(game)
    assert steps[-1] == "start.running" and "push.game_started" not in steps
    assert not {"start.preload_read", "start.game_start", "start.fsr_on"} & set(steps)
    pump_steps(lambda: execution_status(game) == "SUCCEEDED")

    _, answer = harness.command("games", game="valheim")
    status = {f["name"]: f["value"] for f in answer["data"]["embeds"][0]["fields"]}["Status"]
    assert status == "running (up for editing, without the game)"
    _, answer = harness.command("games")
    assert "**valheim** · running (up for editing" in answer["data"]["embeds"][0]["description"]

    stop_until_stopped(harness, tenant, "valheim")
    game = game_row(tenant, "valheim")
    assert game.resources.snapshot_id and not game.resources.instance_id and not game.resources.volume_id
    assert ec2_of(tenant, "valheim").leftovers() == {"instances": [], "volumes": []}

    # The next /start runs the game, from what was installed, and is no edit.
    start_until_running(harness, tenant, "valheim")
    game = game_row(tenant, "valheim")
    assert not game.resources.editing and "autostart = true" in _user_data(game.resources.instance_id)
    volume = container().client("ec2").describe_volumes(VolumeIds=[game.resources.volume_id])["Volumes"][0]
    assert volume["SnapshotId"] == game_row(tenant, "valheim").resources.snapshot_id


def test_an_edit_never_preloads(harness: Harness, tenant: str) -> None:
    create_game(harness, "ark")
    _with_snapshot(tenant, "ark")
    GameRecord.get(tenant, "ark").update(actions=[GameRecord.preload.set("read")])
    _edit_until_up(harness, tenant, "ark")  # RUNNING right after `ready`: no disk.preload, no game.start
    game = game_row(tenant, "ark")
    assert "autostart = false" in _user_data(game.resources.instance_id)
    assert not {"start.preload_read", "start.game_start"} & set(_steps_run(game))


def test_a_failed_edit_is_undone_and_leaves_nothing(
    harness: Harness, tenant: str, fail_ec2: set[str]
) -> None:
    create_game(harness, "rust")
    snapshot = _with_snapshot(tenant, "rust")
    fail_ec2.add("AttachVolume")
    payload, _ = harness.command("editgame", game="rust")
    pump_steps(lambda: game_row(tenant, "rust").state is GameState.STOPPED, timeout=60)
    game = game_row(tenant, "rust")
    assert (game.resources.instance_id, game.resources.volume_id, game.resources.editing, game.resources.snapshot_id) == (None, None, False, snapshot)
    assert ec2_of(tenant, "rust").leftovers() == {"instances": [], "volumes": []}
    assert "could not start" in [c["json"]["content"] for c in harness.calls_for(payload["token"])][-1]
    pump_steps(lambda: execution_status(game) == "FAILED")


def test_editgame_refuses_a_game_that_is_not_stopped(harness: Harness, tenant: str) -> None:
    create_game(harness, "mc")
    start_until_running(harness, tenant, "mc")
    before = game_row(tenant, "mc")
    _, answer = harness.command("editgame", game="mc")
    assert "only a stopped game can be brought up for editing" in answer["data"]["content"]
    assert "`/files` and `/terminal` already work" in answer["data"]["content"]
    after = game_row(tenant, "mc")
    assert (after.state, after.version, after.resources.editing) == (before.state, before.version, False)


@pytest.mark.parametrize("name", ["nosuchgame", "../etc", "x" * 33, "Valheim; DROP"])
def test_editgame_for_a_game_that_does_not_exist_or_a_malformed_name_changes_nothing(
    harness: Harness, tenant: str, name: str
) -> None:
    create_game(harness, "palworld")
    _, answer = harness.command("editgame", game=name)
    assert answer["data"]["flags"] & 64  # ephemeral
    content = answer["data"]["content"]
    assert content.startswith("⚠️") and any(
        why in content for why in ("does not exist", "must be 2-32 characters", "isn't a valid game name")
    )
    assert game_row(tenant, "palworld").state is GameState.STOPPED


def test_editgame_is_for_admins(harness: Harness, tenant: str) -> None:
    create_game(harness, "terraria")
    member = Who(guild_id=tenant, user_id=snowflake(), permissions=0)
    _, answer = harness.command("editgame", who=member, game="terraria")
    assert "admin" in answer["data"]["content"].lower()
    assert game_row(tenant, "terraria").state is GameState.STOPPED

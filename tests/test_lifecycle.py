"""The game lifecycle on the embedded emulator: real ASL executed by moto, steps through the steps
queue, EC2/EBS in moto through the credentials broker, the agent's part played by its events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

import app as app_module
from chalicelib.games import GameRecord, GameState
from chalicelib.lifecycle import begin_start
from chalicelib.wiring import container
from devstack.discord_user import Who, snowflake
from devstack.pump import LambdaContext
from tests.helpers import Harness
from tests.lifecycle_helpers import (
    agent_event,
    create_game,
    ec2_of,
    execution_status,
    game_row,
    pump_steps,
    start_until_running,
    stop_reply,
    stop_until_stopped,
)


def test_newgame_start_stop_start_again_from_the_snapshot(harness: Harness, tenant: str) -> None:
    create_game(harness)
    started = start_until_running(harness, tenant)
    game = game_row(tenant, "valheim")
    assert game.resources.instance_id and game.resources.volume_id and game.resources.address
    assert ec2_of(tenant, "valheim").leftovers() == {
        "instances": [game.resources.instance_id],
        "volumes": [game.resources.volume_id],
    }
    edits = [c["json"]["content"] for c in harness.calls_for(started["token"])]
    assert any("preparing its disk" in e for e in edits) and edits[-1].startswith("🟢 **valheim** is up at")

    stopped = stop_until_stopped(harness, tenant)
    game = game_row(tenant, "valheim")
    assert game.resources.snapshot_id and not game.resources.instance_id and not game.resources.volume_id
    assert ec2_of(tenant, "valheim").leftovers() == {"instances": [], "volumes": []}
    assert harness.calls_for(stopped["token"])[-1]["json"]["content"].startswith(
        "⚪ **valheim** stopped and saved"
    )
    first_snapshot = game.resources.snapshot_id

    start_until_running(harness, tenant)
    volume = container().client("ec2").describe_volumes(VolumeIds=[game_row(tenant, "valheim").resources.volume_id])
    assert volume["Volumes"][0]["SnapshotId"] == first_snapshot
    stop_until_stopped(harness, tenant)
    assert game_row(tenant, "valheim").resources.snapshot_id != first_snapshot


def test_two_concurrent_starts_start_one_workflow(harness: Harness, tenant: str) -> None:
    create_game(harness, "factorio")
    game = game_row(tenant, "factorio")
    lc = container().lifecycle
    begin_start(lc, game, reply=None)
    from chalicelib.errors import Conflict

    with pytest.raises(Conflict):
        begin_start(lc, game, reply=None)  # same expected version: the second loses
    _, answer = harness.command("start", game="factorio")
    assert "is starting" in answer["data"]["content"]
    executions = (
        container().client("stepfunctions").list_executions(stateMachineArn=lc.workflows.arn("start-game"))
    )
    mine = [e for e in executions["executions"] if f"-{tenant}-factorio-" in e["name"]]
    assert len(mine) == 1


def test_an_agent_that_never_reports_in_is_undone_and_nothing_is_left(harness: Harness, tenant: str) -> None:
    create_game(harness, "ark")
    game = game_row(tenant, "ark")
    begin_start(container().lifecycle, game, reply=None, agent_timeout=2)
    pump_steps(lambda: game_row(tenant, "ark").state is GameState.STOPPED, timeout=40)
    game = game_row(tenant, "ark")
    assert not game.resources.instance_id and not game.resources.volume_id and not game.wait.task_token
    assert ec2_of(tenant, "ark").leftovers() == {"instances": [], "volumes": []}
    pump_steps(lambda: execution_status(game) == "FAILED")


@pytest.fixture
def no_spot_capacity() -> Iterator[None]:
    """EC2 answering InsufficientInstanceCapacity to Spot launches, at the botocore seam."""

    def deny(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if "InstanceMarketOptions" not in str(params.get("body", "")):
            return None
        body = {"Error": {"Code": "InsufficientInstanceCapacity", "Message": "no Spot capacity"}}
        return AWSResponse("https://ec2", 500, {}, None), body  # type: ignore[arg-type]

    def hook(client: Any) -> None:
        client.meta.events.register("before-call.ec2.RunInstances", deny)

    container().broker.hooks.append(hook)
    yield
    container().broker.hooks.remove(hook)


def test_spot_without_capacity_falls_back_to_on_demand(
    harness: Harness, tenant: str, no_spot_capacity: None
) -> None:
    create_game(harness, "rust")
    GameRecord.get(tenant, "rust").update(actions=[GameRecord.spot.set(True)])
    start_until_running(harness, tenant, "rust")
    instance = ec2_of(tenant, "rust").instance(game_row(tenant, "rust").resources.instance_id)
    assert instance is not None and instance.get("InstanceLifecycle") != "spot"


def test_spot_without_capacity_and_no_fallback_is_undone(
    harness: Harness, tenant: str, no_spot_capacity: None
) -> None:
    create_game(harness, "terraria")
    GameRecord.get(tenant, "terraria").update(
        actions=[GameRecord.spot.set(True), GameRecord.on_demand_fallback.set(False)]
    )
    payload, _ = harness.command("start", game="terraria")
    pump_steps(lambda: game_row(tenant, "terraria").state is GameState.STOPPED)
    assert ec2_of(tenant, "terraria").leftovers() == {"instances": [], "volumes": []}
    assert "AWS had no capacity" in harness.calls_for(payload["token"])[-1]["json"]["content"]


def test_a_spot_interruption_notice_stops_the_game_with_a_fresh_snapshot(
    harness: Harness, tenant: str
) -> None:
    create_game(harness, "vrising")
    start_until_running(harness, tenant, "vrising")
    agent_event(
        tenant,
        "vrising",
        "spot.notice",
        {"action": "terminate", "time": "now", "saved": True, "game_stopped": True},
    )
    assert game_row(tenant, "vrising").state is GameState.STOPPING
    pump_steps(lambda: bool(game_row(tenant, "vrising").wait.task_token))
    stop_reply(tenant, "vrising")
    pump_steps(lambda: game_row(tenant, "vrising").state is GameState.STOPPED)
    assert game_row(tenant, "vrising").resources.snapshot_id
    assert ec2_of(tenant, "vrising").leftovers() == {"instances": [], "volumes": []}


def test_start_and_stop_refuse_games_in_the_wrong_state(harness: Harness, tenant: str) -> None:
    create_game(harness, "skyrim")
    _, answer = harness.command("stop", game="skyrim")
    assert "only a running game can be stopped" in answer["data"]["content"]
    member = Who(guild_id=tenant, user_id=snowflake(), permissions=0)
    _, answer = harness.command("start", who=member, game="skyrim")
    assert "main** role" in answer["data"]["content"]


def test_the_eventbridge_spot_warning_starts_the_stop_path(harness: Harness, tenant: str) -> None:
    create_game(harness, "palworld")
    start_until_running(harness, tenant, "palworld")
    game = game_row(tenant, "palworld")
    event = {
        "version": "0",
        "id": snowflake(),
        "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-11-27T06:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:ec2:us-east-1:123456789012:instance/{game.resources.instance_id}"],
        "detail": {"instance-id": game.resources.instance_id, "instance-action": "terminate"},
    }
    app_module.ec2_events(event, LambdaContext("ec2_events"))
    assert game_row(tenant, "palworld").state is GameState.STOPPING
    pump_steps(lambda: bool(game_row(tenant, "palworld").wait.task_token))
    stop_reply(tenant, "palworld")
    pump_steps(lambda: game_row(tenant, "palworld").state is GameState.STOPPED)
    assert game_row(tenant, "palworld").resources.snapshot_id


@pytest.mark.parametrize(
    "detail",
    [{}, {"instance-id": 42}, {"instance-id": "not-an-instance"}, {"instance-id": "i-0000000000000dead"}],
)
def test_spot_warnings_that_name_no_running_game_change_nothing(
    emulator: Any, detail: dict[str, Any]
) -> None:
    from chalicelib.lifecycle.ec2_events import on_ec2_event

    event = {"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning", "detail": detail}
    outcome = on_ec2_event(event, container().lifecycle, container().client("ec2"))
    assert outcome in {"malformed", "unknown-instance", "not-ours"}
    assert (
        on_ec2_event({"source": "aws.ec2", "detail-type": "Other"}, container().lifecycle, None) == "ignored"
    )


def test_newgame_offers_choices_that_save_at_once_and_respect_the_plan(harness: Harness, tenant: str) -> None:
    _, answer = harness.post(harness.user.modal_submit("games:create", {"name": "satisfactory"}))
    custom_ids = [row["components"][0]["custom_id"] for row in answer["data"]["components"]]
    assert custom_ids == [
        f"games:set:satisfactory:{f}" for f in ("type", "market", "disk", "preload", "fallback")
    ]
    answer = harness.component("games:set:satisfactory:market", ["spot"])
    assert answer["type"] == 7 and "Spot, else on-demand" in answer["data"]["content"]
    game = game_row(tenant, "satisfactory")
    assert game.settings.spot and game.settings.on_demand_fallback
    answer = harness.component("games:set:satisfactory:type", ["m6i.2xlarge"])
    assert "allows instances up to `t3.large`" in answer["data"]["content"]  # the free plan
    answer = harness.component("games:set:satisfactory:disk", ["9999"])
    assert "isn't one gangway offers" in answer["data"]["content"]
    assert game_row(tenant, "satisfactory").settings.instance_type == "t3.medium"

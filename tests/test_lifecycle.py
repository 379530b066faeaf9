"""The game lifecycle on the embedded emulator: real ASL executed by moto, steps through the steps
queue, EC2/EBS in moto through the credentials broker, the agent's part played by its events."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

import app as app_module
from chalicelib.games import GameRecord, GameState, GameStore
from chalicelib.instances import Ec2Gateway
from chalicelib.lifecycle import begin_start
from chalicelib.lifecycle.steps import stop_request_id
from chalicelib.wiring import container
from devstack.discord_user import Who, snowflake
from devstack.pump import LambdaContext, sqs_event
from tests.helpers import Harness

STORE = GameStore()
MAIN = "400000000000000001"


def _event(
    tenant: str, game: str, kind: str, body: dict[str, Any] | None = None, *, reply_to: str | None = None
) -> None:
    """The agent says something (as the IoT rule delivers it: envelope plus topic); a reply carries
    the id of the request it answers."""
    message = {
        "id": reply_to or snowflake(),
        "type": kind,
        "body": body or {},
        "topic": f"gangway/{tenant}/{game}/evt",
    }
    container().agent_events.run(json.dumps(message))


def _stop_reply(tenant: str, game: str) -> None:
    """The agent answers StopGame's `game.stop` request (by its id, as the contract says)."""
    execution = (_game(tenant, game).execution or "").rsplit(":", 1)[-1]
    _event(
        tenant,
        game,
        "game.stop.reply",
        {"was_running": True, "exit_code": 0, "killed": False},
        reply_to=stop_request_id(execution),
    )


def _pump_steps(until: Callable[[], bool], timeout: float = 30) -> None:
    """Run the steps Lambda on queued steps until `until()` holds."""
    c = container()
    sqs = c.sqs()
    url = sqs.get_queue_url(QueueName=c.settings.steps_queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until():
            return
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=5, WaitTimeSeconds=1, VisibilityTimeout=60
        )
        for message in got.get("Messages", []):
            app_module.steps(sqs_event(dict(message), arn, c.settings.region), LambdaContext("steps"))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    raise AssertionError("the workflow did not get there in time: " + _history())


def _history() -> str:
    """The newest executions' last events, to say where a workflow stopped."""
    sfn = container().client("stepfunctions")
    out = []
    for machine in sfn.list_state_machines()["stateMachines"]:
        listed = sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]
        for ex in sorted(listed, key=lambda e: e["startDate"])[-2:]:
            events = sfn.get_execution_history(executionArn=ex["executionArn"])["events"][-8:]
            out.append(
                f"{ex['name']} {ex['status']}: "
                + "; ".join(
                    f"{e['type']} {json.dumps(e.get('taskFailedEventDetails') or e.get('executionFailedEventDetails') or {})[:300]}"
                    for e in events
                )
            )
    return "\n".join(out)


def _game(tenant: str, name: str) -> Any:
    game = STORE.get(tenant, name)
    assert game is not None
    return game


def _ec2(tenant: str, name: str) -> Ec2Gateway:
    return Ec2Gateway(container().client("ec2"), tenant_id=tenant, game=name)


def _execution_status(game: Any) -> str:
    status: str = (
        container().client("stepfunctions").describe_execution(executionArn=game.execution)["status"]
    )
    return status


@pytest.fixture
def tenant(harness: Harness) -> Iterator[str]:
    harness.command("setup")
    harness.component("setup:main", [MAIN])
    yield harness.user.who.guild_id or ""


def _create(harness: Harness, name: str = "valheim") -> None:
    status, answer = harness.post(harness.user.command("newgame", {"name": name}))
    assert status == 200 and answer["type"] == 9 and answer["data"]["custom_id"] == "games:create"
    status, answer = harness.post(
        harness.user.modal_submit("games:create", {"name": name, "description": "Vikings"})
    )
    assert status == 200 and f"Creating **{name}**" in answer["data"]["content"]
    tenant = harness.user.who.guild_id or ""
    _pump_steps(lambda: _game(tenant, name).state is GameState.STOPPED)  # CreateGame made its group


def _start_until_running(harness: Harness, tenant: str, name: str = "valheim") -> dict[str, Any]:
    payload, answer = harness.command("start", game=name)
    assert answer["data"]["content"] == f"⏳ Starting **{name}**…"
    assert _game(tenant, name).state is GameState.STARTING
    _pump_steps(lambda: bool(_game(tenant, name).task_token))  # waiting for the agent
    _event(tenant, name, "ready", {"version": "test", "game_running": True})
    _pump_steps(lambda: _game(tenant, name).state is GameState.RUNNING)
    return payload


def _stop_until_stopped(harness: Harness, tenant: str, name: str = "valheim") -> dict[str, Any]:
    payload, answer = harness.command("stop", game=name)
    assert answer["data"]["content"] == f"⏳ Stopping **{name}**…"
    _pump_steps(lambda: bool(_game(tenant, name).task_token))  # the agent was asked to stop the game
    _stop_reply(tenant, name)
    _pump_steps(lambda: _game(tenant, name).state is GameState.STOPPED)
    return payload


def test_newgame_start_stop_start_again_from_the_snapshot(harness: Harness, tenant: str) -> None:
    _create(harness)
    started = _start_until_running(harness, tenant)
    game = _game(tenant, "valheim")
    assert game.instance_id and game.volume_id and game.address
    assert _ec2(tenant, "valheim").leftovers() == {
        "instances": [game.instance_id],
        "volumes": [game.volume_id],
    }
    edits = [c["json"]["content"] for c in harness.calls_for(started["token"])]
    assert any("preparing its disk" in e for e in edits) and edits[-1].startswith("🟢 **valheim** is up at")

    stopped = _stop_until_stopped(harness, tenant)
    game = _game(tenant, "valheim")
    assert game.snapshot_id and not game.instance_id and not game.volume_id
    assert _ec2(tenant, "valheim").leftovers() == {"instances": [], "volumes": []}
    assert harness.calls_for(stopped["token"])[-1]["json"]["content"].startswith(
        "⚪ **valheim** stopped and saved"
    )
    first_snapshot = game.snapshot_id

    _start_until_running(harness, tenant)
    volume = container().client("ec2").describe_volumes(VolumeIds=[_game(tenant, "valheim").volume_id])
    assert volume["Volumes"][0]["SnapshotId"] == first_snapshot
    _stop_until_stopped(harness, tenant)
    assert _game(tenant, "valheim").snapshot_id != first_snapshot


def test_two_concurrent_starts_start_one_workflow(harness: Harness, tenant: str) -> None:
    _create(harness, "factorio")
    game = _game(tenant, "factorio")
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
    _create(harness, "ark")
    game = _game(tenant, "ark")
    begin_start(container().lifecycle, game, reply=None, agent_timeout=2)
    _pump_steps(lambda: _game(tenant, "ark").state is GameState.STOPPED, timeout=40)
    game = _game(tenant, "ark")
    assert not game.instance_id and not game.volume_id and not game.task_token
    assert _ec2(tenant, "ark").leftovers() == {"instances": [], "volumes": []}
    _pump_steps(lambda: _execution_status(game) == "FAILED")


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
    _create(harness, "rust")
    GameRecord.get(tenant, "rust").update(actions=[GameRecord.spot.set(True)])
    _start_until_running(harness, tenant, "rust")
    instance = _ec2(tenant, "rust").instance(_game(tenant, "rust").instance_id)
    assert instance is not None and instance.get("InstanceLifecycle") != "spot"


def test_spot_without_capacity_and_no_fallback_is_undone(
    harness: Harness, tenant: str, no_spot_capacity: None
) -> None:
    _create(harness, "terraria")
    GameRecord.get(tenant, "terraria").update(
        actions=[GameRecord.spot.set(True), GameRecord.on_demand_fallback.set(False)]
    )
    payload, _ = harness.command("start", game="terraria")
    _pump_steps(lambda: _game(tenant, "terraria").state is GameState.STOPPED)
    assert _ec2(tenant, "terraria").leftovers() == {"instances": [], "volumes": []}
    assert "AWS had no capacity" in harness.calls_for(payload["token"])[-1]["json"]["content"]


def test_a_spot_interruption_notice_stops_the_game_with_a_fresh_snapshot(
    harness: Harness, tenant: str
) -> None:
    _create(harness, "vrising")
    _start_until_running(harness, tenant, "vrising")
    _event(
        tenant,
        "vrising",
        "spot.notice",
        {"action": "terminate", "time": "now", "saved": True, "game_stopped": True},
    )
    assert _game(tenant, "vrising").state is GameState.STOPPING
    _pump_steps(lambda: bool(_game(tenant, "vrising").task_token))
    _stop_reply(tenant, "vrising")
    _pump_steps(lambda: _game(tenant, "vrising").state is GameState.STOPPED)
    assert _game(tenant, "vrising").snapshot_id
    assert _ec2(tenant, "vrising").leftovers() == {"instances": [], "volumes": []}


def test_start_and_stop_refuse_games_in_the_wrong_state(harness: Harness, tenant: str) -> None:
    _create(harness, "skyrim")
    _, answer = harness.command("stop", game="skyrim")
    assert "only a running game can be stopped" in answer["data"]["content"]
    member = Who(guild_id=tenant, user_id=snowflake(), permissions=0)
    _, answer = harness.command("start", who=member, game="skyrim")
    assert "main** role" in answer["data"]["content"]


def test_the_eventbridge_spot_warning_starts_the_stop_path(harness: Harness, tenant: str) -> None:
    _create(harness, "palworld")
    _start_until_running(harness, tenant, "palworld")
    game = _game(tenant, "palworld")
    event = {
        "version": "0",
        "id": snowflake(),
        "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-11-27T06:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:ec2:us-east-1:123456789012:instance/{game.instance_id}"],
        "detail": {"instance-id": game.instance_id, "instance-action": "terminate"},
    }
    app_module.ec2_events(event, LambdaContext("ec2_events"))
    assert _game(tenant, "palworld").state is GameState.STOPPING
    _pump_steps(lambda: bool(_game(tenant, "palworld").task_token))
    _stop_reply(tenant, "palworld")
    _pump_steps(lambda: _game(tenant, "palworld").state is GameState.STOPPED)
    assert _game(tenant, "palworld").snapshot_id


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
    game = _game(tenant, "satisfactory")
    assert game.spot and game.on_demand_fallback
    answer = harness.component("games:set:satisfactory:type", ["m6i.2xlarge"])
    assert "allows instances up to `t3.large`" in answer["data"]["content"]  # the free plan
    answer = harness.component("games:set:satisfactory:disk", ["9999"])
    assert "isn't one gangway offers" in answer["data"]["content"]
    assert _game(tenant, "satisfactory").instance_type == "t3.medium"

"""Driving the game lifecycle on the embedded emulator from tests: the steps Lambda pumped by hand,
the agent's events delivered as the IoT rule would, and the usual create → start → stop walks through
signed interactions (moto executes the real ASL)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.awsrequest import AWSResponse

import app as app_module
from chalicelib.games import GameState, GameStore
from chalicelib.instances import Ec2Gateway
from chalicelib.lifecycle.stop_game import stop_request_id
from chalicelib.wiring import container
from devstack.discord_user import snowflake
from devstack.iam import running_as
from devstack.pump import LambdaContext, sqs_event
from tests.helpers import Harness

__all__ = [
    "MAIN",
    "STORE",
    "agent_event",
    "create_game",
    "ec2_fails",
    "ec2_of",
    "execution_history",
    "execution_status",
    "game_row",
    "pump_steps",
    "start_until_running",
    "stop_reply",
    "stop_until_stopped",
]

STORE = GameStore()
MAIN = "400000000000000001"


def agent_event(
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
    with running_as("agent_events"):  # the IoT rule's queue feeds the agent_events function
        container().agent_events.run(json.dumps(message))


def stop_reply(tenant: str, game: str) -> None:
    """The agent answers StopGame's `game.stop` request (by its id, as the contract says)."""
    execution = (game_row(tenant, game).wait.execution or "").rsplit(":", 1)[-1]
    agent_event(
        tenant,
        game,
        "game.stop.reply",
        {"was_running": True, "exit_code": 0, "killed": False},
        reply_to=stop_request_id(execution),
    )


def pump_steps(until: Callable[[], bool], timeout: float = 30) -> None:
    """Run the steps Lambda on queued steps until `until()` holds."""
    c = container()
    sqs = c.sqs()
    url = sqs.get_queue_url(QueueName=c.settings.steps_queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until():
            return
        got = sqs.receive_message(  # with the system attributes (AWSTraceHeader), as Lambda's event source
            QueueUrl=url,
            MaxNumberOfMessages=5,
            WaitTimeSeconds=1,
            VisibilityTimeout=60,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        for message in got.get("Messages", []):
            app_module.steps(sqs_event(dict(message), arn, c.settings.region), LambdaContext("steps"))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    raise AssertionError("the workflow did not get there in time: " + execution_history())


def execution_history() -> str:
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


def game_row(tenant: str, name: str) -> Any:
    game = STORE.get(tenant, name)
    assert game is not None
    return game


def ec2_of(tenant: str, name: str) -> Ec2Gateway:
    return Ec2Gateway(container().client("ec2"), tenant_id=tenant, game=name)


def execution_status(game: Any) -> str:
    status: str = (
        container().client("stepfunctions").describe_execution(executionArn=game.wait.execution)["status"]
    )
    return status


def create_game(harness: Harness, name: str = "valheim") -> None:
    status, answer = harness.post(harness.user.command("newgame", {"name": name}))
    assert status == 200 and answer["type"] == 9 and answer["data"]["custom_id"] == "games:create"
    status, answer = harness.post(
        harness.user.modal_submit("games:create", {"name": name, "description": "Vikings"})
    )
    assert status == 200 and f"Creating **{name}**" in answer["data"]["content"]
    tenant = harness.user.who.guild_id or ""
    pump_steps(lambda: game_row(tenant, name).state is GameState.STOPPED)  # CreateGame made its group


def start_until_running(harness: Harness, tenant: str, name: str = "valheim") -> dict[str, Any]:
    payload, answer = harness.command("start", game=name)
    assert answer["data"]["content"] == f"⏳ Starting **{name}**…"
    assert game_row(tenant, name).state is GameState.STARTING
    pump_steps(lambda: bool(game_row(tenant, name).wait.task_token))  # waiting for the agent
    agent_event(tenant, name, "ready", {"version": "test", "game_running": True})
    pump_steps(lambda: game_row(tenant, name).state is GameState.RUNNING)
    return payload


def stop_until_stopped(harness: Harness, tenant: str, name: str = "valheim") -> dict[str, Any]:
    payload, answer = harness.command("stop", game=name)
    assert answer["data"]["content"] == f"⏳ Stopping **{name}**…"
    pump_steps(lambda: bool(game_row(tenant, name).wait.task_token))  # the agent was asked to stop the game
    stop_reply(tenant, name)
    pump_steps(lambda: game_row(tenant, name).state is GameState.STOPPED)
    return payload


@contextmanager
def ec2_fails(operation: str, when: str = "") -> Iterator[None]:
    """EC2 refusing `operation` (those whose request mentions `when`) for every client the broker makes."""

    def deny(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if when not in str(params.get("body", "")):
            return None
        body = {"Error": {"Code": "UnauthorizedOperation", "Message": f"injected: {operation} refused"}}
        return AWSResponse("https://ec2", 403, {}, None), body  # type: ignore[arg-type]

    def hook(client: Any) -> None:
        client.meta.events.register(f"before-call.ec2.{operation}", deny)

    container().broker.hooks.append(hook)
    try:
        yield
    finally:
        container().broker.hooks.remove(hook)

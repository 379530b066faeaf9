"""Races the interface invites (issue 15, item 9): a settings edit right after /newgame, repeated /start
and /stop presses, /games and agent events, interleaved with every step of every workflow. No game may
be lost or stuck, and nobody may read an error code: every refusal says what happened in words.

The property test is bounded for `make test` (`GANGWAY_RACE_EXAMPLES`, default 4, raises it)."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import app as app_module
from chalicelib.games import GameRecord, GameState
from chalicelib.wiring import container
from devstack.pump import LambdaContext, sqs_event
from tests.helpers import Harness
from tests.lifecycle_helpers import STORE, agent_event, game_row, pump_steps, stop_reply

# What a person must never read: an error's name, an exception class, a trace, a row version.
_CODE: re.Pattern[str] = re.compile(
    r"gangway\.[A-Z]|States\.[A-Z]|Traceback|\b\w+(Error|Exception)\b|\(version \d+\)"
)
_EXAMPLES = int(os.environ.get("GANGWAY_RACE_EXAMPLES", "4"))


def _submit(harness: Harness, name: str) -> dict[str, Any]:
    payload = harness.user.modal_submit("games:create", {"name": name, "description": "Vikings"})
    status, answer = harness.post(payload)
    assert status == 200 and answer["data"]["content"].startswith(f"⏳ Creating **{name}**"), answer
    return payload


def _steps_queue() -> tuple[Any, str, str]:
    c = container()
    sqs = c.sqs()
    url = sqs.get_queue_url(QueueName=c.settings.steps_queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs, url, arn


def _one_step() -> bool:
    """Run at most one queued workflow step (as the steps Lambda would); whether one ran."""
    sqs, url, arn = _steps_queue()
    got = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=0, VisibilityTimeout=60, AttributeNames=["All"]
    )
    for message in got.get("Messages", []):
        app_module.steps(sqs_event(dict(message), arn, container().settings.region), LambdaContext("steps"))
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return True
    return False


def _running_executions(tenant: str, name: str) -> list[str]:
    sfn = container().client("stepfunctions")
    out = []
    for machine in sfn.list_state_machines()["stateMachines"]:
        for ex in sfn.list_executions(stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING")[
            "executions"
        ]:
            if f"-{tenant}-{name}" in ex["name"]:
                out.append(ex["name"])
    return out


def _answer_the_agent_waits(tenant: str, name: str) -> None:
    """What a booted agent does when a step waits on it: `ready` for a start, its reply for a stop."""
    game = STORE.get(tenant, name)
    if game is None or not game.wait.task_token:
        return
    if game.state is GameState.STARTING:
        agent_event(tenant, name, "ready", {"version": "test", "game_running": True})
    elif game.state is GameState.STOPPING:
        stop_reply(tenant, name)


def _settle(tenant: str, name: str, timeout: float = 90) -> None:
    """Let every workflow of the game finish, answering for its agent; fail if the game stays stuck."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        ran = _one_step()
        _answer_the_agent_waits(tenant, name)
        game = STORE.get(tenant, name)
        settled = (
            game is not None
            and game.state in (GameState.STOPPED, GameState.RUNNING)
            and not game.wait.task_token
            and not _running_executions(tenant, name)
        )
        quiet = quiet + 1 if settled and not ran else 0
        if quiet >= 3:
            return
        if not ran:
            time.sleep(0.2)
    raise AssertionError(f"{name} is stuck: {STORE.get(tenant, name)}")


def _said(harness: Harness, since: float) -> list[str]:
    """Everything gangway sent to Discord since `since` (edits, follow-ups, channel posts), as text."""
    return [json.dumps(c["json"], ensure_ascii=False) for c in harness.standin.calls() if c["time"] >= since]


def test_a_settings_edit_between_create_ready_s_read_and_write_does_not_fail_the_create(
    harness: Harness, tenant: str
) -> None:
    """The reported race: `create.ready` read the game, a /newgame select changed the disk, and the
    step's CREATING → STOPPED write conflicted, so compensation deleted the game (2 of 5 tries)."""
    client: Any = GameRecord._get_connection().connection.client
    edited: list[bool] = []

    def edit_first(params: dict[str, Any], **_: Any) -> None:
        if not edited and '"STOPPED"' in str(params.get("body", "")):
            edited.append(True)
            STORE.change(tenant, "valheim", disk_gb=24)  # the admin's select, landing in between

    since = time.time()
    client.meta.events.register("before-call.dynamodb.UpdateItem", edit_first)
    try:
        payload = _submit(harness, "valheim")
        pump_steps(
            lambda: getattr(STORE.get(tenant, "valheim"), "state", GameState.STOPPED) is GameState.STOPPED
        )
    finally:
        client.meta.events.unregister("before-call.dynamodb.UpdateItem", edit_first)
    assert edited, "the edit never landed between the read and the write"
    game = game_row(tenant, "valheim")
    assert game.state is GameState.STOPPED and game.settings.disk_gb == 24
    last = harness.calls_for(payload["token"])[-1]["json"]["content"]
    assert last.startswith("✅ Created **valheim**")
    assert not [s for s in _said(harness, since) if _CODE.search(s)]


_ACTIONS = st.sampled_from(["edit", "games", "start", "stop", "step", "step", "step", "agent", "heartbeat"])


@pytest.fixture
def races(harness: Harness, tenant: str) -> Iterator[tuple[Harness, str, list[int]]]:
    yield harness, tenant, [0]


@settings(
    max_examples=_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=st.lists(_ACTIONS, min_size=4, max_size=14), disk=st.sampled_from(["16", "24", "32"]))
def test_interleaved_presses_edits_and_events_lose_no_game_and_show_no_error_code(
    races: tuple[Harness, str, list[int]], actions: list[str], disk: str
) -> None:
    harness, tenant, counter = races
    counter[0] += 1
    name = f"race{os.getpid() % 1000}-{counter[0]}"
    since = time.time()
    replies: list[str] = []
    _submit(harness, name)
    try:
        for action in actions:
            if action == "edit":
                answer = harness.component(f"games:set:{name}:disk", [disk])
                replies.append(json.dumps(answer, ensure_ascii=False))
            elif action in ("start", "stop", "games"):
                options: dict[str, Any] = {} if action == "games" else {"game": name}
                _, answer = harness.command(action, **options)
                replies.append(json.dumps(answer, ensure_ascii=False))
            elif action == "step":
                _one_step()
            elif action == "agent":
                _answer_the_agent_waits(tenant, name)
            else:
                agent_event(tenant, name, "heartbeat", {"game_running": True, "players": 1, "idle_s": 0})
        _settle(tenant, name)
        game = game_row(tenant, name)  # never lost
        assert game.state in (GameState.STOPPED, GameState.RUNNING) and not game.wait.task_token
        shown = [r for r in replies + _said(harness, since) if _CODE.search(r)]
        assert not shown, f"a user read an error code: {shown}"
    finally:
        # Make room under the plan's game limit for the next example (not a product path).
        GameRecord(tenant, name).delete(add_version_condition=False)

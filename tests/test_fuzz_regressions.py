"""What the door fuzzers (test_fuzz_api.py, test_fuzz_queues.py) found, one test each: each failed
before its fix (a 500, or a handler raising so SQS would retry the message into the dead-letter queue)."""

from __future__ import annotations

import json
import time
from typing import Any

import app as app_module
from chalicelib.games import GameRecord, GameState
from chalicelib.wiring import container
from devstack.aws import Emulator
from devstack.discord_user import DiscordUser, Who, snowflake
from devstack.pump import LambdaContext
from tests.access_helpers import call_api, make_tenant
from tests.conftest import APPLICATION_ID, SIGNING_KEY
from tests.fuzzing import EmulatorState, nested, sqs_event

SITE = "https://site.gangway.test"
# 2,000 levels: past Python's recursion limit, yet inside the 4 KiB the page's API accepts.
DEEP = nested(2000)


def _unchanged() -> EmulatorState:
    s = container().settings
    return EmulatorState(s.ratelimit_table, s.audit_table)


def test_deeply_nested_interaction_is_a_400_not_a_500(emulator: Emulator) -> None:
    user = DiscordUser(SIGNING_KEY, APPLICATION_ID, who=Who(guild_id=snowflake()))
    state = _unchanged()
    before = state.take()
    answer = call_api("POST", "/discord/interactions", body=DEEP, headers=user.sign(DEEP.encode()))
    assert answer.status == 400, answer
    assert state.diff(before, state.take()) == []


def test_deeply_nested_ipauth_body_is_a_400_not_a_500(emulator: Emulator) -> None:
    answer = call_api("POST", "/ipauth/authorize", body=DEEP, headers={"Origin": SITE}, source_ip="192.0.2.44")
    assert answer.status == 400, answer
    assert "JSON" in answer.json["error"]["message"]


def test_deeply_nested_push_body_is_a_400_not_a_500(emulator: Emulator) -> None:
    for method in ("POST", "DELETE"):
        answer = call_api(method, "/push/subscribe", body=DEEP, headers={"Origin": SITE}, source_ip="192.0.2.45")
        assert answer.status == 400, (method, answer)


def _drops(handler: Any, body: str, name: str) -> None:
    """The handler returns (no SQS retry) and the message changed nothing."""
    state = _unchanged()
    before = state.take()
    handler(sqs_event(body), LambdaContext(name))
    assert state.diff(before, state.take()) == []


def test_deeply_nested_queue_messages_are_dropped_not_retried(emulator: Emulator) -> None:
    deep = nested(20000)
    _drops(app_module.jobs, deep, "jobs")
    _drops(app_module.steps, deep, "steps")
    _drops(app_module.agent_events, deep, "agent_events")
    assert container().agent_events.run(deep) == "malformed"
    assert container().step_runner.run(deep) == "malformed"
    assert container().job_runner.run(deep) == "malformed"


def test_a_job_whose_arguments_do_not_fit_is_dropped_not_retried(emulator: Emulator) -> None:
    guild = snowflake()
    make_tenant(guild)
    job = {
        "interaction_id": snowflake(),
        "application_id": APPLICATION_ID,
        "token": "fuzz-token",
        "tenant_id": guild,
        "channel_id": "300000000000000003",
        "user_id": "200000000000000002",
        "role_ids": [],
        "permissions": 8,
        "kind": "status",
        "args": {},  # `status` takes `queued_at`: TypeError on every receive before
        "created_at": time.time(),
    }
    _drops(app_module.jobs, json.dumps(job), "jobs")
    assert container().job_runner.run(json.dumps(job | {"interaction_id": snowflake()})) == "malformed"
    extra = job | {"interaction_id": snowflake(), "args": {"queued_at": 1.0, "surprise": 1}}
    assert container().job_runner.run(json.dumps(extra)) == "malformed"
    # A value of the wrong type failed inside the job (TypeError) on every receive but the last.
    for wrong in (None, "soon", True, [1.0]):
        typed = job | {"interaction_id": snowflake(), "args": {"queued_at": wrong}}
        _drops(app_module.jobs, json.dumps(typed), "jobs")


def _starting_with_preload(guild: str) -> None:
    """A game whose start waits on its agent's preload, with a task token nothing waits on any more."""
    now = int(time.time())
    GameRecord(
        guild, "preload", description="", state=GameState.STARTING.value, created_by="1",
        created_at=now, updated_at=now, task_token="a-token-whose-execution-ended",
        task_wait=json.dumps({"for": "preload", "request": "c0ffee00c0ffee00c0ffee00c0ffee00"}),
    ).save(add_version_condition=False)


def _event(guild: str, kind: str, body: dict[str, Any]) -> str:
    return json.dumps({"id": "c0ffee00c0ffee00c0ffee00c0ffee00", "type": kind, "body": body,
                       "topic": f"gangway/{guild}/preload/evt"})


def test_an_agent_answer_for_an_ended_wait_is_logged_not_retried(emulator: Emulator) -> None:
    guild = snowflake()
    make_tenant(guild)
    for kind, body in (
        ("preload.done", {"device": "/dev/nvme1n1", "bytes_read": 1, "seconds": 1.0}),
        ("error", {"code": "failed", "message": "preload: the disk is gone"}),
    ):
        _starting_with_preload(guild)
        # InvalidToken from SendTaskSuccess/Failure raised before: SQS delivered the event again.
        app_module.agent_events(sqs_event(_event(guild, kind, body)), LambdaContext("agent_events"))


def test_a_preload_progress_of_infinity_or_a_huge_size_is_ignored_not_retried(emulator: Emulator) -> None:
    guild = snowflake()
    make_tenant(guild)
    for body in (
        {"percent": float("inf"), "bytes_read": 1, "bytes_total": 2},
        {"percent": float("-inf"), "bytes_read": 1, "bytes_total": 2},
        {"percent": float("nan"), "bytes_read": 1, "bytes_total": 2},
        {"percent": 50.0, "bytes_read": 1, "bytes_total": 10**4000},
    ):
        _starting_with_preload(guild)
        app_module.agent_events(sqs_event(_event(guild, "preload.progress", body)), LambdaContext("agent_events"))


def test_a_forged_setup_outside_a_server_is_refused_before_any_write(emulator: Emulator) -> None:
    """A signed `/setup` without a guild, but carrying a member's Manage Server permission (Discord
    sends neither together), reached the tenant store with the tenant id ""."""
    user = DiscordUser(SIGNING_KEY, APPLICATION_ID, who=Who(guild_id=None))
    payload = user.command("setup", {})
    payload["member"] = {"user": payload.get("user") or {"id": snowflake()}, "roles": [], "permissions": "32"}
    state = _unchanged()
    before = state.take()
    body = json.dumps(payload)
    answer = call_api("POST", "/discord/interactions", body=body, headers=user.sign(body.encode()))
    assert answer.status == 200, answer
    content = answer.json["data"]["content"]
    assert "run it in the server you want to use gangway in" in content, content
    assert state.diff(before, state.take()) == []

"""What the door fuzzers (test_fuzz_api.py, test_fuzz_queues.py) found, one test each: each failed
before its fix (a 500, or a handler raising so SQS would retry the message into the dead-letter queue)."""

from __future__ import annotations

import json
import time
from typing import Any

import app as app_module
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

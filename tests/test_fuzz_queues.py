"""The queue and event doors under generated hostile input, through the Lambda entry points app.py binds
(called with SQS and EventBridge events as Lambda delivers them): jobs, workflow steps, the agent-events
intake, agent events, EC2's Spot warning.

Property: the handler returns (a raise would have SQS redeliver the message, up to a retry storm into
the dead-letter queue), and a message it drops as malformed changes no row and queues nothing.
`GANGWAY_FUZZ_EXAMPLES` sets the inputs per door (docs/security.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

import app as app_module
from chalicelib.games import GameRecord, GameState
from chalicelib.jobs import JobMessage
from chalicelib.wiring import container
from devstack.aws import Emulator
from devstack.discord_api import DiscordStandIn
from devstack.discord_user import snowflake
from devstack.pump import LambdaContext
from tests.access_helpers import add_game, make_tenant
from tests.conftest import APPLICATION_ID
from tests.fuzzing import Door, EmulatorState, bodies, fuzz_settings, sqs_event

CONTRACT = Path(__file__).resolve().parents[1] / "agent" / "contract"


def _state() -> EmulatorState:
    s = container().settings
    return EmulatorState(s.ratelimit_table, s.audit_table)


class Drops(logging.Handler):
    """Counts the log lines that say a message was dropped as malformed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "dropping malformed" in record.getMessage():
            self.count += 1


@pytest.fixture
def drops() -> Any:
    handler = Drops()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def _door(name: str, handler: Any, drops: Drops, *, reset: Any = None) -> Any:
    """A check that delivers one body to `handler` and holds the property; returns the door's tally."""
    door, state = Door(name), _state()

    def deliver(body: str) -> None:
        if reset is not None:
            reset()
        before = state.take()
        dropped = drops.count
        handler(body)  # a raise here is the finding: SQS would deliver it again, and again
        if drops.count > dropped:
            changed = state.diff(before, state.take())
            assert not changed, f"dropped {body[:200]!r} but changed:\n" + "\n".join(changed)
            door.seen("dropped")
        else:
            door.seen("handled")

    return door, deliver


# -- jobs -------------------------------------------------------------------------------------------------


def test_jobs_door(emulator: Emulator, standin: DiscordStandIn, drops: Drops) -> None:
    guild = snowflake()
    make_tenant(guild)
    add_game(guild, "valheim")
    base = {
        "interaction_id": snowflake(),
        "application_id": APPLICATION_ID,
        "token": "fuzz-token",
        "tenant_id": guild,
        "channel_id": "300000000000000003",
        "user_id": "200000000000000002",
        "user_name": "fuzz",
        "role_ids": [],
        "permissions": 8,
        "kind": "status",
        "args": {"queued_at": time.time()},
        "ephemeral": True,
        "update": False,
        "created_at": time.time(),
        "command": "/status",
    }
    bases = [base, base | {"kind": "games", "args": {"game": "valheim"}}, base | {"kind": "nosuch"}]
    ctx = LambdaContext("jobs")

    def handle(body: str) -> None:
        app_module.jobs(sqs_event(body), ctx)

    door, deliver = _door("SQS jobs", handle, drops)

    @fuzz_settings()
    @given(body=bodies(bases))
    def run(body: str) -> None:
        # Each input is its own interaction, as each real one is (the ledger runs one job per id once).
        try:
            raw = json.loads(body)
        except (ValueError, RecursionError):
            raw = None
        if isinstance(raw, dict) and raw.get("interaction_id") == base["interaction_id"]:
            body = json.dumps(raw | {"interaction_id": snowflake()})
        deliver(body)

    run()
    door.write()


def test_job_message_parser_only_raises_its_own_error() -> None:
    """The parser the jobs door relies on: anything refused is a ValidationError (never a crash)."""

    @fuzz_settings()
    @given(body=bodies([{"interaction_id": "1", "tenant_id": "1", "kind": "status", "created_at": 1}]))
    def run(body: str) -> None:
        from chalicelib.errors import ValidationError

        with contextlib.suppress(ValidationError):
            JobMessage.from_json(body)

    run()


# -- workflow steps ------------------------------------------------------------------------------------------


def test_steps_door(emulator: Emulator, standin: DiscordStandIn, drops: Drops) -> None:
    guild = snowflake()
    make_tenant(guild)
    names = sorted(container().step_registry.steps)
    bases = [
        {"step": name, "input": {"tenant": guild, "game": "ghost", "execution": "x"}, "token": "fuzz-token"}
        for name in names
    ]

    def handle(body: str) -> None:
        app_module.steps(sqs_event(body), LambdaContext("steps"))

    door, deliver = _door("SQS steps", handle, drops)

    @fuzz_settings()
    @given(body=bodies(bases))
    def run(body: str) -> None:
        deliver(body)

    run()
    door.write()


# -- agent events --------------------------------------------------------------------------------------------


def _contract_messages() -> list[dict[str, Any]]:
    out = []
    for folder in ("events", "replies"):
        for path in sorted((CONTRACT / folder).glob("*.json")):
            msg = json.loads(path.read_text())
            if folder == "replies" and msg.get("type") != "error" and not str(msg.get("type")).endswith(".reply"):
                msg["type"] = f"{path.stem}.reply"
            out.append(msg)
    return out


def test_agent_events_door(emulator: Emulator, standin: DiscordStandIn, drops: Drops) -> None:
    guild = snowflake()
    make_tenant(guild)
    add_game(guild, "valheim")  # stopped
    now = int(time.time())

    def starting() -> None:
        """A game waiting on its agent's preload (reset before each input: handlers may end the wait)."""
        GameRecord(
            guild, "preload", description="", state=GameState.STARTING.value, created_by="1",
            created_at=now, updated_at=now, task_token="fuzz-token",
            task_wait=json.dumps({"for": "preload", "request": "c0ffee00c0ffee00c0ffee00c0ffee00"}),
        ).save(add_version_condition=False)

    bases = [
        msg | {"topic": f"gangway/{guild}/{game}/evt"}
        for msg in _contract_messages()
        for game in ("valheim", "preload")
    ]

    def handle(body: str) -> None:
        app_module.agent_events(sqs_event(body), LambdaContext("agent_events"))

    door, deliver = _door("SQS agent-events", handle, drops, reset=starting)

    @fuzz_settings()
    @given(body=bodies(bases))
    def run(body: str) -> None:
        deliver(body)

    run()
    door.write()


def test_agent_intake_door(emulator: Emulator, drops: Drops) -> None:
    """The IoT rule's queue (issue 15.4): every body is dropped or forwarded, never named for redelivery
    (a retry storm) unless SQS refused it, and nothing but the fair queue changes."""
    guild = snowflake()
    bases = [msg | {"topic": f"gangway/{guild}/valheim/evt"} for msg in _contract_messages()]
    c = container()
    events = c.sqs().get_queue_url(QueueName=c.settings.agent_events_queue)["QueueUrl"]

    def handle(body: str) -> None:
        result = app_module.agent_intake(sqs_event(body), LambdaContext("agent_intake"))
        assert result == {"batchItemFailures": []}, body[:200]

    door, deliver = _door("SQS agent-intake", handle, drops)

    def forwarded() -> list[str]:
        """What reached the fair queue, taken off it (agent_events' to handle, not this door's): an
        emptied queue also keeps each input's cost flat over 10,000 of them."""
        bodies: list[str] = []
        while got := c.sqs().receive_message(QueueUrl=events, MaxNumberOfMessages=10).get("Messages", []):
            for m in got:
                c.sqs().delete_message(QueueUrl=events, ReceiptHandle=m["ReceiptHandle"])
                bodies.append(m["Body"])
        return bodies

    forwarded()  # what earlier tests left there

    @fuzz_settings()
    @given(body=bodies(bases))
    def run(body: str) -> None:
        dropped = drops.count
        deliver(body)
        # A dropped body goes nowhere; any other goes on unchanged, once.
        assert forwarded() == ([] if drops.count > dropped else [body]), body[:200]

    run()
    door.write()


# -- EC2's Spot interruption warning ----------------------------------------------------------------------


ENVELOPE = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}


def test_ec2_events_door(emulator: Emulator, drops: Drops) -> None:
    base = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"],
        "detail": {"instance-id": "i-0123456789abcdef0", "instance-action": "terminate"},
    }

    def handle(body: str) -> None:
        app_module.ec2_events(json.loads(body), LambdaContext("ec2_events"))

    door, deliver = _door("EventBridge ec2-events", handle, drops)

    @fuzz_settings()
    @given(body=bodies([base]).filter(lambda b: b.lstrip().startswith("{")))
    def run(body: str) -> None:
        try:
            event = json.loads(body)
        except (ValueError, RecursionError):
            event = None
        if not isinstance(event, dict) or not event.keys() >= ENVELOPE:
            door.seen("not an event")  # EventBridge always delivers its whole envelope
            return
        deliver(body)

    run()
    door.write()

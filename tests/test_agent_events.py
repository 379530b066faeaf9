"""Agent events: what the agent_events Lambda accepts, routes and drops, and the IoT rule's stand-in.

The Lambda is called through app.py's real binding with SQS events as Lambda delivers them; what it sends
to agents is recorded by a publisher standing in for IoT Core (the MQTT path is tested end to end in
test_local_agents.py).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import app as app_module
from chalicelib.access import Grant, GrantStore, LinkKind
from chalicelib.agents import AGENT_EVENTS, AgentEvent, AgentEventRouter, Outgoing, parse_agent_event
from chalicelib.agents.events import MAX_EVENT_BYTES
from chalicelib.games import GameRecord, GameState
from chalicelib.lifecycle import Lifecycle
from devstack.aws import Emulator
from devstack.bridge import MAX_IOT_PAYLOAD_BYTES, rule_message
from devstack.discord_user import snowflake
from devstack.pump import LambdaContext, sqs_event
from tests.access_helpers import add_game, make_tenant
from tests.conftest import container_for_tests


class RecordingPublisher:
    """IoT Core's data API as the handlers see it: every publish is kept."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    def publish(self, messages: Sequence[Outgoing]) -> None:
        self.sent.extend(messages)


@pytest.fixture
def published(emulator: Emulator) -> Iterator[RecordingPublisher]:
    c = container_for_tests()
    recorder = RecordingPublisher()
    c.__dict__["publisher"] = recorder
    yield recorder
    c.__dict__.pop("publisher", None)


def _evt(tenant: str, game: str, kind: str = "ready", body: Any = None, **extra: Any) -> str:
    envelope = {"id": uuid.uuid4().hex, "type": kind, "body": body if body is not None else {}}
    return json.dumps({**envelope, "topic": f"gangway/{tenant}/{game}/evt", **extra})


def _deliver(body: str) -> None:
    """One queue message into the agent_events Lambda, as its SQS event source hands it over."""
    message = {"MessageId": str(uuid.uuid4()), "ReceiptHandle": "r", "Body": body, "Attributes": {}}
    event = sqs_event(message, "arn:aws:sqs:us-east-1:123456789012:test-agent-events", "us-east-1")
    app_module.agent_events(event, LambdaContext(function_name="agent_events"))


def _tenant_with_game(name: str = "valheim", *addresses: str) -> str:
    tenant = snowflake()
    make_tenant(tenant)
    add_game(tenant, name, GameState.RUNNING)
    now = int(time.time())
    for address in addresses:
        GrantStore().put(Grant(tenant, address, LinkKind.MEMBER, "user#1", now, now + 3600))
    return tenant


def _rows(tenant: str) -> list[str]:
    """Everything the tenant has in the games and grants tables, to prove a message wrote nothing."""
    games = [r.attribute_values for r in GameRecord.query(tenant, consistent_read=True)]
    grants = [dataclasses.asdict(g) for g in GrantStore().all(tenant)]
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in [*games, *grants])


# -- parsing -----------------------------------------------------------------------------------------


def test_a_well_formed_event_names_its_tenant_and_game_by_topic_only() -> None:
    event = parse_agent_event(
        json.dumps(
            {
                "id": "a" * 32,
                "type": "ready",
                "body": {"version": "1", "tenant": "999", "game": "other"},
                "topic": "gangway/123456789012345678/valheim/evt",
            }
        )
    )
    assert (event.tenant_id, event.game, event.type) == ("123456789012345678", "valheim", "ready")
    assert not event.is_reply
    assert parse_agent_event(_evt("1", "ab", "status.reply")).is_reply


HOSTILE = {
    "not JSON": "{not json",
    "a JSON array": json.dumps([{"type": "ready", "topic": "gangway/1/ab/evt"}]),
    "no topic": json.dumps({"id": "1", "type": "ready", "body": {}}),
    "a cmd topic": _evt("1", "ab").replace("/evt", "/cmd"),
    "a wildcard topic": json.dumps({"id": "1", "type": "ready", "body": {}, "topic": "gangway/+/ab/evt"}),
    "a tenant that is not a guild id": _evt("acme", "valheim"),
    "a tenant path in the game": _evt("1", "valheim/../../2/x"),
    "an uppercase game": _evt("1", "Valheim"),
    "a one-letter game": _evt("1", "v"),
    "an extra topic level": json.dumps({"id": "1", "type": "ready", "topic": "gangway/1/ab/c/evt"}),
    "a topic with a trailing newline": _evt("1", "ab").replace('/evt"', '/evt\\n"'),
    "a type that is a number": json.dumps({"id": "1", "type": 7, "body": {}, "topic": "gangway/1/ab/evt"}),
    "a type with spaces": _evt("1", "ab", "ready now"),
    "an id that is a number": json.dumps({"id": 7, "type": "ready", "body": {}, "topic": "gangway/1/ab/evt"}),
    "an overlong id": json.dumps({"id": "x" * 129, "type": "ready", "topic": "gangway/1/ab/evt"}),
    "a body that is a list": _evt("1", "ab", "ready", ["x"]),
    "a body that is a string": json.dumps(
        {"id": "1", "type": "ready", "body": "{}", "topic": "gangway/1/ab/evt"}
    ),
    "an oversized message": _evt("1", "ab", "heartbeat", {"pad": "x" * (MAX_EVENT_BYTES + 1024)}),
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_malformed_messages_are_refused(body: str) -> None:
    with pytest.raises(ValueError):
        parse_agent_event(body)


def test_the_router_calls_handlers_by_type_and_catch_alls_and_drops_malformed_messages() -> None:
    router = AgentEventRouter()
    seen: list[tuple[str, Lifecycle]] = []

    lc = container_for_tests().lifecycle

    @router.on("ready")
    def on_ready(event: AgentEvent, given: Lifecycle) -> None:
        seen.append(("ready", given))

    @router.on("*")
    def on_any(event: AgentEvent, given: Lifecycle) -> None:
        seen.append((event.type, given))

    assert router.bind(lc).run(_evt("1", "ab")) == "ready:2"
    assert router.run(_evt("1", "ab", "heartbeat"), lc) == "heartbeat:1"
    assert seen == [("ready", lc), ("ready", lc), ("heartbeat", lc)]
    for body in HOSTILE.values():
        assert router.run(body, lc) == "malformed"
    assert len(seen) == 3


def test_the_app_declares_the_ready_handler_when_the_lambda_first_runs(emulator: Emulator) -> None:
    container_for_tests().agent_events  # noqa: B018 - building it imports the declaring modules
    assert [h.__name__ for h in AGENT_EVENTS.handlers["ready"]].count("send_firewall_on_ready") == 1


# -- through the Lambda ------------------------------------------------------------------------------


def test_ready_sends_that_agent_the_full_firewall_set(published: RecordingPublisher) -> None:
    tenant = _tenant_with_game("valheim", "198.51.100.7", "2001:db8::7")
    other = _tenant_with_game("valheim", "203.0.113.9")
    _deliver(_evt(tenant, "valheim", body={"version": "0.1.0", "game_running": True}))
    assert [m.topic for m in published.sent] == [f"gangway/{tenant}/valheim/cmd"]
    request = json.loads(published.sent[0].payload)
    assert request["type"] == "firewall.sync" and request["body"]["mode"] == "full"
    # Only this tenant's grants: the other tenant's address never reaches this firewall.
    assert [g["address"] for g in request["body"]["grants"]] == ["198.51.100.7", "2001:db8::7"]
    _deliver(_evt(other, "valheim"))
    assert [g["address"] for g in json.loads(published.sent[1].payload)["body"]["grants"]] == ["203.0.113.9"]


def test_a_body_cannot_move_an_event_to_another_tenant(published: RecordingPublisher) -> None:
    victim = _tenant_with_game("valheim", "198.51.100.8")
    # The attacker's agent claims the victim's identity inside its body; the topic (set by IoT) wins.
    _deliver(_evt("1", "valheim", body={"tenant": victim, "game": "valheim", "topic": victim}))
    assert published.sent == []


HOSTILE_FOR_A_REAL_GAME = {
    "a cmd topic": lambda t: _evt(t, "valheim").replace("/evt", "/cmd"),
    "a game of another shape": lambda t: _evt(t, "Valheim"),
    "a game that does not exist": lambda t: _evt(t, "minecraft"),
    "a tenant that is not a guild id": lambda t: _evt(f"x{t}", "valheim"),
    "a wrongly typed body": lambda t: _evt(t, "valheim", "ready", ["game_running"]),
    "a wrongly typed type": lambda t: _evt(t, "valheim").replace('"ready"', '["ready"]'),
    "an oversized ready": lambda t: _evt(t, "valheim", "ready", {"pad": "x" * (MAX_EVENT_BYTES + 1024)}),
    "a ready reply": lambda t: _evt(t, "valheim", "ready.reply"),
}


@pytest.mark.parametrize("make", HOSTILE_FOR_A_REAL_GAME.values(), ids=HOSTILE_FOR_A_REAL_GAME.keys())
def test_hostile_messages_are_dropped_and_change_nothing(published: RecordingPublisher, make: Any) -> None:
    tenant = _tenant_with_game("valheim", "198.51.100.9")
    before = _rows(tenant)
    _deliver(make(tenant))  # returns normally: a malformed message is not redelivered
    assert published.sent == []
    assert _rows(tenant) == before


# -- the IoT rule's stand-in (devstack/bridge.py) ----------------------------------------------------


def test_the_rule_adds_the_topic_and_overrides_one_the_agent_wrote() -> None:
    payload = json.dumps({"id": "1", "type": "ready", "body": {}, "topic": "gangway/2/other/evt"}).encode()
    body = rule_message("gangway/1/valheim/evt", payload)
    assert body is not None
    assert json.loads(body) == {"id": "1", "type": "ready", "body": {}, "topic": "gangway/1/valheim/evt"}


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b"\xff\xfe", b"[1, 2]", b'"ready"', b"null", b"{}" + b" " * MAX_IOT_PAYLOAD_BYTES],
    ids=["not JSON", "not UTF-8", "an array", "a string", "null", "over IoT Core's limit"],
)
def test_the_rule_skips_what_is_not_a_json_object(payload: bytes) -> None:
    assert rule_message("gangway/1/valheim/evt", payload) is None

"""The agent contract at the backend's boundary (issue 15, item 4): every example in agent/contract
passes, every type a handler listens for is in the table, and a body that breaks the contract is
dropped with a log line, not retried: before, `percent: Infinity` raised in the preload handler and
sent the message through five receives to the dead-letter queue."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

import app as app_module
from chalicelib.agents import AGENT_EVENTS, parse_agent_event
from chalicelib.agents.contract import BODIES, check_body
from chalicelib.games import GameRecord, GameState
from devstack.aws import Emulator
from devstack.discord_user import snowflake
from devstack.pump import LambdaContext, sqs_event
from tests.access_helpers import add_game, make_tenant

CONTRACT = Path(__file__).resolve().parent.parent / "agent" / "contract"
EXAMPLES = sorted([*CONTRACT.glob("events/*.json"), *CONTRACT.glob("replies/*.json")])


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_of_the_contract_passes(path: Path) -> None:
    message = json.loads(path.read_text())
    check_body(message["type"], message["body"])


def test_the_table_and_the_examples_name_the_same_types_and_cover_every_handler() -> None:
    examples = {json.loads(p.read_text())["type"] for p in EXAMPLES}
    assert examples == set(BODIES)
    app_module.agent_events  # noqa: B018 - importing app declares every handler
    assert set(AGENT_EVENTS.handlers) - {"*"} <= set(BODIES)


def _evt(kind: str, body: str, tenant: str = "1", game: str = "valheim") -> str:
    """An envelope whose body is raw JSON text (so it can hold what json.dumps would not write)."""
    return (
        f'{{"id": "{uuid.uuid4().hex}", "type": "{kind}", "body": {body}, '
        f'"topic": "gangway/{tenant}/{game}/evt"}}'
    )


BREAKING = {
    "percent Infinity": ("preload.progress", '{"bytes_read": 1, "bytes_total": 2, "percent": Infinity}'),
    "percent NaN": ("preload.progress", '{"percent": NaN}'),
    "percent 1e400": ("preload.progress", '{"percent": 1e400}'),
    "percent over 100": ("preload.progress", '{"percent": 250}'),
    "percent as text": ("preload.progress", '{"percent": "25"}'),
    "a negative player count": ("players", '{"count": -3, "previous": 1}'),
    "a fractional player count": ("heartbeat", '{"game_running": true, "players": 1.5, "idle_s": 0}'),
    "players as true": ("heartbeat", '{"game_running": true, "players": true, "idle_s": 0}'),
    "a nested infinity": ("status.reply", '{"game": {"uptime_s": -Infinity}}'),
    "game_running as text": ("ready", '{"version": "1", "game_running": "yes"}'),
    "an overlong version": ("ready", '{"version": "' + "v" * 65 + '", "game_running": true}'),
    "an exit code that is text": (
        "game.stop.reply",
        '{"was_running": true, "exit_code": "0", "killed": false}',
    ),
    "an unknown type": ("game.explode", "{}"),
    "names that are not a list": ("players", '{"count": 1, "previous": 0, "names": "ana"}'),
    "65 names": ("players", '{"count": 65, "previous": 0, "names": [' + ",".join(['"p"'] * 65) + "]}"),
    "an empty name": ("players", '{"count": 1, "previous": 0, "names": [""]}'),
    "a 65-character name": ("players", '{"count": 1, "previous": 0, "names": ["' + "n" * 65 + '"]}'),
    "a name that is a number": ("players", '{"count": 1, "previous": 0, "names": [7]}'),
    "an unknown install phase": ("install.progress", '{"phase": "dancing", "percent": 1, "version": "1"}'),
    "an install percent over 100": ("install.progress", '{"phase": "install", "percent": 101}'),
    "an overlong install message": (
        "install.progress",
        '{"phase": "failed", "message": "' + "m" * 301 + '"}',
    ),
    "an unknown ready signal": ("playable", '{"after_s": 1, "signal": "vibes"}'),
    "a negative playable time": ("playable", '{"after_s": -1, "signal": "port"}'),
    "an install version that is a number": ("game.install.reply", '{"installed": true, "version": 2}'),
}


@pytest.mark.parametrize("kind,body", BREAKING.values(), ids=BREAKING.keys())
def test_a_body_that_breaks_the_contract_is_refused_at_the_boundary(kind: str, body: str) -> None:
    with pytest.raises(ValueError):
        parse_agent_event(_evt(kind, body))


def test_unlisted_keys_and_missing_optional_keys_still_pass() -> None:
    event = parse_agent_event(_evt("heartbeat", '{"players": 3, "set_version": 7}'))
    assert event.body == {"players": 3, "set_version": 7}


def _deliver(body: str) -> None:
    message = {"MessageId": str(uuid.uuid4()), "ReceiptHandle": "r", "Body": body, "Attributes": {}}
    event = sqs_event(message, "arn:aws:sqs:us-east-1:123456789012:test-agent-events", "us-east-1")
    app_module.agent_events(event, LambdaContext(function_name="agent_events"))


def test_an_infinite_preload_percentage_is_dropped_not_retried(emulator: Emulator) -> None:
    """The reported fault: a starting game waiting on its preload, and the agent says `Infinity`."""
    tenant = snowflake()
    make_tenant(tenant)
    add_game(tenant, "valheim", GameState.STARTING)
    wait = json.dumps({"for": "preload", "reply": {}})
    GameRecord.get(tenant, "valheim").update(
        actions=[GameRecord.task_token.set("token"), GameRecord.task_wait.set(wait)]
    )
    before = GameRecord.get(tenant, "valheim", consistent_read=True).attribute_values
    body = '{"bytes_read": 1, "bytes_total": 2, "percent": Infinity}'
    _deliver(_evt("preload.progress", body, tenant))  # returns: the queue deletes it, no retry
    assert GameRecord.get(tenant, "valheim", consistent_read=True).attribute_values == before

"""Players online: the agent's `players` and `heartbeat` events through the agent-events path, shown by
/games, and /stop asking before it stops a game people are playing on (signed interactions, moto)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from chalicelib.games import GameRecord, GameState, GameStore
from chalicelib.lifecycle.players import FRESH_SECONDS, online
from chalicelib.wiring import container
from devstack.discord_user import Who, snowflake
from tests.helpers import Harness
from tests.lifecycle_helpers import (
    MAIN,
    agent_event,
    create_game,
    game_row,
    pump_steps,
    start_until_running,
    stop_reply,
)

STORE = GameStore()
EPHEMERAL = 64
DANGER = 4


def _running(tenant: str, name: str) -> None:
    """A game the agent reports on, without a workflow (for what only reads the state)."""
    STORE.create(tenant, name, description="", created_by="t")
    GameRecord.get(tenant, name).update(actions=[GameRecord.state.set(GameState.RUNNING.value)])


def _players(tenant: str, name: str) -> tuple[int | None, float | None]:
    game = game_row(tenant, name)
    return game.players, game.players_at


def _details(harness: Harness, name: str) -> dict[str, str]:
    _, answer = harness.command("games", game=name)
    return {f["name"]: f["value"] for f in answer["data"]["embeds"][0]["fields"]}


def test_players_and_heartbeats_record_the_count_and_games_shows_it(harness: Harness, tenant: str) -> None:
    _running(tenant, "valheim")
    assert "Players" not in _details(harness, "valheim")  # nothing heard yet
    before = int(time.time())
    agent_event(tenant, "valheim", "players", {"count": 2, "previous": 1})
    count, at = _players(tenant, "valheim")
    assert count == 2 and at is not None and before <= at <= time.time() + 1
    assert _details(harness, "valheim")["Players"] == f"2 players online, <t:{int(at)}:R>"

    agent_event(tenant, "valheim", "heartbeat", {"game_running": True, "players": 1, "idle_s": 0})
    assert _players(tenant, "valheim")[0] == 1
    assert _details(harness, "valheim")["Players"].startswith("1 player online, <t:")
    # The contract's "not counted yet" changes nothing.
    agent_event(tenant, "valheim", "heartbeat", {"game_running": True, "players": None, "idle_s": 0})
    assert _players(tenant, "valheim")[0] == 1


def test_recording_players_never_moves_the_games_version(harness: Harness, tenant: str) -> None:
    _running(tenant, "valheim")
    version = game_row(tenant, "valheim").version
    for n in range(3):
        agent_event(tenant, "valheim", "heartbeat", {"game_running": True, "players": n, "idle_s": 0})
    assert game_row(tenant, "valheim").version == version  # a /stop read before them still wins its write


@pytest.mark.parametrize(
    "body",
    [
        {"count": -1},
        {"count": 10_001},
        {"count": 10**30},
        {"count": "3"},
        {"count": 2.5},
        {"count": True},
        {"count": [1]},
        {"count": {"n": 1}},
        {},
    ],
    ids=["negative", "huge", "enormous", "string", "float", "bool", "list", "object", "missing"],
)
def test_hostile_player_counts_change_nothing(harness: Harness, tenant: str, body: dict[str, Any]) -> None:
    _running(tenant, "valheim")
    agent_event(tenant, "valheim", "players", {"count": 2})
    before = game_row(tenant, "valheim")
    agent_event(tenant, "valheim", "players", body)
    agent_event(tenant, "valheim", "heartbeat", {"players": body.get("count"), "game_running": True})
    assert game_row(tenant, "valheim") == before


def test_events_for_other_games_or_stopped_ones_change_nothing(harness: Harness, tenant: str) -> None:
    _running(tenant, "valheim")
    create_game(harness, "stopped")
    elsewhere = snowflake()
    agent_event(elsewhere, "valheim", "players", {"count": 5})  # another tenant's topic, same game name
    agent_event(tenant, "nosuch", "players", {"count": 5})  # a game this tenant does not have
    agent_event(tenant, "stopped", "players", {"count": 5})  # an agent that outlived its game's stop
    assert STORE.get(elsewhere, "valheim") is None and STORE.get(tenant, "nosuch") is None
    assert _players(tenant, "stopped") == (None, None) and _players(tenant, "valheim") == (None, None)
    # A topic that names no game, or a body that is not an object, is dropped before any handler.
    for bad in (
        {"id": "1", "type": "players", "body": {"count": 1}, "topic": f"gangway/{tenant}/valheim/cmd"},
        {"id": "1", "type": "players", "body": [1], "topic": f"gangway/{tenant}/valheim/evt"},
    ):
        assert container().agent_events.run(json.dumps(bad)) == "malformed"
    assert _players(tenant, "valheim") == (None, None)


def test_a_count_is_trusted_for_three_heartbeats_only() -> None:
    from chalicelib.games import Game

    now = 1_800_000_000.0
    game = Game("1", "g", GameState.RUNNING, 0, 0, 1, players=3, players_at=now - FRESH_SECONDS)
    assert online(game, now=now) == 3
    assert online(game, now=now + 1) is None
    from dataclasses import replace

    assert online(replace(game, state=GameState.STOPPING), now=now) is None
    assert online(replace(game, players=None), now=now) is None


# -- /stop asks first -----------------------------------------------------------------------------------


def test_stop_with_players_online_asks_and_the_button_runs_the_same_stop(
    harness: Harness, tenant: str
) -> None:
    create_game(harness)
    start_until_running(harness, tenant)
    agent_event(tenant, "valheim", "players", {"count": 2, "previous": 0})
    member = Who(guild_id=tenant, user_id=snowflake(), role_ids=(MAIN,), permissions=0)
    _, answer = harness.command("stop", who=member, game="valheim")
    data = answer["data"]
    assert data["flags"] & EPHEMERAL and data["content"].startswith("**2 players are online** on **valheim**")
    [danger, cancel] = data["components"][0]["components"]
    assert (danger["custom_id"], danger["style"]) == ("games:stop:valheim", DANGER)
    assert cancel["custom_id"] == "games:keep:valheim"
    assert game_row(tenant, "valheim").state is GameState.RUNNING  # nothing happened yet

    clicked = harness.user.component("games:stop:valheim", who=member)
    status, answer = harness.post(clicked)
    assert (status, answer["type"], answer["data"]["content"]) == (200, 7, "⏳ Stopping **valheim**…")
    assert answer["data"]["components"] == []
    pump_steps(lambda: bool(game_row(tenant, "valheim").wait.task_token))
    stop_reply(tenant, "valheim")
    pump_steps(lambda: game_row(tenant, "valheim").state is GameState.STOPPED)
    told = [c["json"]["content"] for c in harness.calls_for(clicked["token"])]
    assert told[-1].startswith("⚪ **valheim** stopped and saved")

    # The button again, now the game is stopped: a clear answer, and nothing starts.
    answer = harness.component("games:stop:valheim", who=member)
    assert answer["type"] == 7 and answer["data"]["content"] == (
        "**valheim** is stopped now, so there is nothing to stop."
    )
    # A new run starts with no count: the last run's players say nothing about it.
    start_until_running(harness, tenant)
    assert _players(tenant, "valheim") == (None, None)


def test_cancel_leaves_the_game_running(harness: Harness, tenant: str) -> None:
    _running(tenant, "valheim")
    agent_event(tenant, "valheim", "players", {"count": 1})
    _, answer = harness.command("stop", game="valheim")
    assert answer["data"]["content"].startswith("**1 player is online** on **valheim**")
    answer = harness.component("games:keep:valheim")
    assert answer["type"] == 7 and "keeps running" in answer["data"]["content"]
    assert answer["data"]["components"] == [] and game_row(tenant, "valheim").state is GameState.RUNNING


@pytest.mark.parametrize("count, age", [(0, 0), (4, FRESH_SECONDS + 5)], ids=["nobody", "stale"])
def test_stop_without_fresh_players_stops_at_once(
    harness: Harness, tenant: str, count: int, age: int
) -> None:
    create_game(harness)
    start_until_running(harness, tenant)
    GameRecord.get(tenant, "valheim").update(
        actions=[GameRecord.players.set(count), GameRecord.players_at.set(int(time.time()) - age)]
    )
    _, answer = harness.command("stop", game="valheim")
    assert answer["data"]["content"] == "⏳ Stopping **valheim**…"
    assert game_row(tenant, "valheim").state is GameState.STOPPING


@pytest.mark.parametrize(
    "custom_id, said",
    [
        ("games:stop", "isn't one gangway made"),
        ("games:stop:valheim:now", "isn't one gangway made"),
        ("games:keep:a:b", "isn't one gangway made"),
        ("games:stop:nosuch", "does not exist"),
        ("games:stop:Bad Name", "valid game name"),
    ],
)
def test_forged_stop_buttons_get_a_clear_answer_and_stop_nothing(
    harness: Harness, tenant: str, custom_id: str, said: str
) -> None:
    _running(tenant, "valheim")
    answer = harness.component(custom_id)
    assert said in answer["data"]["content"] and answer["data"]["flags"] & EPHEMERAL
    assert game_row(tenant, "valheim").state is GameState.RUNNING


def test_stop_buttons_need_the_main_role(harness: Harness, tenant: str) -> None:
    _running(tenant, "valheim")
    stranger = Who(guild_id=tenant, user_id=snowflake(), permissions=0)
    answer = harness.component("games:stop:valheim", who=stranger)
    assert answer["data"]["flags"] & EPHEMERAL and game_row(tenant, "valheim").state is GameState.RUNNING

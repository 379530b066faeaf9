"""Idle shutdown, backend side: `/editgame idle_minutes` and the stage's defaults reach the agent's
config in the user data at each launch; the agent's idle events are told in the game's channel, and its
`idle.shutdown` saves and stops the game.

Through signed interactions (the Harness), the real ASL on moto, the agent's part played by its events
(tests/test_booted_lifecycle.py runs the same on a booted instance with its real agent).
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Iterator

import pytest

from chalicelib.config import Settings
from chalicelib.games import GameState
from chalicelib.wiring import container
from devstack.discord_user import Who, snowflake
from tests.helpers import Harness
from tests.lifecycle_helpers import (
    agent_event,
    create_game,
    game_row,
    pump_steps,
    start_until_running,
    stop_reply,
    stop_until_stopped,
)
from tests.test_lifecycle_faults import fail_ec2 as fail_ec2  # noqa: PLC0414 - re-exported fixture

# What the container built from its settings: rebuilt when a test changes them.
_BUILT = (
    "endpoint",
    "services",
    "dispatcher",
    "job_runner",
    "lifecycle",
    "agent_events",
    "game_api",
    "access",
)
CHANNEL = "300000000000000003"  # the channel the test user's interactions come from (devstack Who)


def _idle_lines(tenant: str, game: str) -> dict[str, str]:
    """The [idle] section of the agent.toml in the running game's user data."""
    instance = game_row(tenant, game).resources.instance_id
    answer = container().client("ec2").describe_instance_attribute(InstanceId=instance, Attribute="userData")
    script = base64.b64decode(answer["UserData"]["Value"]).decode()
    section = script.split("[idle]\n", 1)[1].split("\n\n", 1)[0]
    return dict(line.split(" = ", 1) for line in section.splitlines())


def _said_in_channel(harness: Harness) -> list[str]:
    return [str((c.get("json") or {}).get("content", "")) for c in harness.channel_calls(CHANNEL)]


@pytest.fixture
def short_idle() -> Iterator[Settings]:
    """The stage's idle defaults as an operator sets them (IDLE_* variables), for this test's launches."""
    c = container()
    saved = c.settings
    for name in _BUILT:
        c.__dict__.pop(name, None)
    c.settings = dataclasses.replace(saved, idle_check_s=5, idle_grace_s=30, idle_warn_s=240, idle_stop_s=360)
    try:
        yield c.settings
    finally:
        c.settings = saved
        for name in _BUILT:
            c.__dict__.pop(name, None)


def test_a_games_idle_minutes_reach_its_agent_at_the_next_launch_and_show_in_games(
    harness: Harness, tenant: str, short_idle: Settings
) -> None:
    create_game(harness, "valheim")
    _, answer = harness.command("games", game="valheim")
    shown = {f["name"]: f["value"] for f in answer["data"]["embeds"][0]["fields"]}
    assert shown["Idle shutdown"] == (
        "It shuts down after 6 minutes without players (the default), with a warning in the channel "
        "2 minutes before."
    )
    _, answer = harness.command("editgame", game="valheim", idle_minutes=45)
    assert answer["data"]["flags"] & 64
    assert answer["data"]["content"] == (
        "✅ From its next start, **valheim** shuts down after 45 minutes without players, with a warning "
        "in the channel 15 minutes before."
    )
    game = game_row(tenant, "valheim")
    assert (game.state, game.settings.idle_minutes) == (GameState.STOPPED, 45)  # nothing brought up
    start_until_running(harness, tenant, "valheim")
    assert _idle_lines(tenant, "valheim") == {
        "warn_after_s": "1800",
        "stop_after_s": "2700",
        "startup_grace_s": "30",
        "check_interval_s": "5",
    }
    _, answer = harness.command("games", game="valheim")
    shown = {f["name"]: f["value"] for f in answer["data"]["embeds"][0]["fields"]}
    assert "after 45 minutes without players" in shown["Idle shutdown"]


def test_without_its_own_minutes_a_game_gets_the_stages_idle_defaults(
    harness: Harness, tenant: str, short_idle: Settings
) -> None:
    create_game(harness, "mc")
    start_until_running(harness, tenant, "mc")
    assert _idle_lines(tenant, "mc") == {
        "warn_after_s": "240",
        "stop_after_s": "360",
        "startup_grace_s": "30",
        "check_interval_s": "5",
    }


def test_idle_default_gives_a_game_back_the_stages_time(
    harness: Harness, tenant: str, short_idle: Settings
) -> None:
    create_game(harness, "quake")
    harness.command("editgame", game="quake", idle_minutes=45)
    _, answer = harness.command("editgame", game="quake", idle_default=True)
    assert answer["data"]["content"] == (
        "✅ From its next start, **quake** shuts down after 6 minutes without players (the default), "
        "with a warning in the channel 2 minutes before."
    )
    game = game_row(tenant, "quake")
    assert (game.state, game.settings.idle_minutes) == (GameState.STOPPED, None)  # nothing brought up
    _, answer = harness.command("editgame", game="quake", idle_default=False)
    assert answer["data"]["content"].startswith("Nothing changed: **quake** shuts down after 6 minutes")
    assert game_row(tenant, "quake").version == game.version


def test_idle_minutes_and_idle_default_together_are_refused_and_change_nothing(
    harness: Harness, tenant: str
) -> None:
    create_game(harness, "doom")
    harness.command("editgame", game="doom", idle_minutes=45)
    before = game_row(tenant, "doom")
    _, answer = harness.command("editgame", game="doom", idle_minutes=60, idle_default=True)
    assert answer["data"]["flags"] & 64
    assert "either `idle_minutes` or `idle_default`" in answer["data"]["content"]
    after = game_row(tenant, "doom")
    assert (after.version, after.settings.idle_minutes) == (before.version, 45)


@pytest.mark.parametrize("minutes", [0, 4, 721, -30])
def test_idle_minutes_out_of_range_are_refused_in_words_and_change_nothing(
    harness: Harness, tenant: str, minutes: int
) -> None:
    create_game(harness, "rust")
    before = game_row(tenant, "rust")
    _, answer = harness.command("editgame", game="rust", idle_minutes=minutes)
    content = answer["data"]["content"]
    assert answer["data"]["flags"] & 64 and "`idle_minutes` must be between 5 and 720" in content, content
    after = game_row(tenant, "rust")
    assert (after.version, after.settings.idle_minutes, after.state) == (
        before.version,
        None,
        GameState.STOPPED,
    )


def test_idle_minutes_are_for_admins(harness: Harness, tenant: str) -> None:
    create_game(harness, "terraria")
    member = Who(guild_id=tenant, user_id=snowflake(), permissions=0)
    _, answer = harness.command("editgame", who=member, game="terraria", idle_minutes=60)
    assert "admin" in answer["data"]["content"].lower()
    assert game_row(tenant, "terraria").settings.idle_minutes is None


def test_idle_warning_is_told_in_the_channel_and_idle_shutdown_saves_and_stops_the_game(
    harness: Harness, tenant: str
) -> None:
    create_game(harness, "valheim")
    start_until_running(harness, tenant, "valheim")
    assert game_row(tenant, "valheim").channel_id == CHANNEL
    agent_event(tenant, "valheim", "idle.warning", {"idle_s": 1200, "shutdown_in_s": 600})
    assert _said_in_channel(harness)[-1] == (
        "💤 Nobody has played on **valheim** for 20 minutes: it will be saved and shut down in about "
        "10 minutes. Join the game to keep it running, or change the time with "
        "`/editgame game:valheim idle_minutes:`."
    )
    agent_event(tenant, "valheim", "idle.cleared", {"players": 2})
    assert _said_in_channel(harness)[-1] == "🟢 Players are back on **valheim**: it keeps running."
    agent_event(tenant, "valheim", "idle.shutdown", {"idle_s": 1800})
    assert game_row(tenant, "valheim").state is GameState.STOPPING
    assert "is being saved and shut down now" in _said_in_channel(harness)[-1]
    pump_steps(lambda: bool(game_row(tenant, "valheim").wait.task_token))  # the agent is asked to save
    stop_reply(tenant, "valheim")
    pump_steps(lambda: game_row(tenant, "valheim").state is GameState.STOPPED)
    game = game_row(tenant, "valheim")
    assert game.resources.snapshot_id and not game.resources.instance_id
    said = _said_in_channel(harness)[-1]
    assert re.fullmatch(
        r"⚪ \*\*valheim\*\* stopped and saved \(snapshot `snap-[0-9a-f]+`\) after nobody played\.", said
    )
    # A late or repeated shutdown for a stopped game changes and says nothing.
    told = len(_said_in_channel(harness))
    agent_event(tenant, "valheim", "idle.shutdown", {"idle_s": 1900})
    agent_event(tenant, "valheim", "idle.warning", {"idle_s": 1200, "shutdown_in_s": 600})
    assert len(_said_in_channel(harness)) == told and game_row(tenant, "valheim").state is GameState.STOPPED


def test_an_idle_stop_whose_snapshot_fails_says_so_in_the_channel(
    harness: Harness, tenant: str, fail_ec2: set[str]
) -> None:
    create_game(harness, "palworld")
    start_until_running(harness, tenant, "palworld")
    fail_ec2.add("CreateSnapshot")
    agent_event(tenant, "palworld", "idle.shutdown", {"idle_s": 1800})
    pump_steps(lambda: bool(game_row(tenant, "palworld").wait.task_token))
    stop_reply(tenant, "palworld")
    pump_steps(lambda: game_row(tenant, "palworld").state is GameState.STOPPED)
    said = _said_in_channel(harness)[-1]
    assert said.startswith("⚠️ **palworld** stopped, but its snapshot failed") and "kept" in said, said
    assert game_row(tenant, "palworld").resources.volume_id  # the only copy of its newest data


def test_a_stop_by_hand_is_not_announced_in_the_channel(harness: Harness, tenant: str) -> None:
    create_game(harness, "mc")
    start_until_running(harness, tenant, "mc")
    told = len(_said_in_channel(harness))  # the stand-in keeps the whole session's calls
    stop_until_stopped(harness, tenant, "mc")
    assert len(_said_in_channel(harness)) == told


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"IDLE_CHECK_S": "0"}, "IDLE_CHECK_S must be at least 1 second"),
        ({"IDLE_CHECK_S": "soon"}, "IDLE_CHECK_S must be a whole number of seconds"),
        ({"IDLE_GRACE_S": "-1"}, "IDLE_GRACE_S must be 0 or more seconds"),
        ({"IDLE_WARN_S": "1800"}, "the warning comes before the shutdown"),
        ({"IDLE_WARN_S": "0"}, "must be at least 1 second"),
    ],
)
def test_bad_idle_settings_fail_at_startup_naming_the_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Settings.from_env(env)


def test_idle_settings_come_from_the_environment() -> None:
    s = Settings.from_env(
        {"IDLE_CHECK_S": "2", "IDLE_GRACE_S": "0", "IDLE_WARN_S": "20", "IDLE_STOP_S": "30"}
    )
    assert (s.idle_check_s, s.idle_grace_s, s.idle_warn_s, s.idle_stop_s) == (2, 0, 20, 30)
    d = Settings.from_env({})
    assert (d.idle_check_s, d.idle_grace_s, d.idle_warn_s, d.idle_stop_s) == (60, 600, 1200, 1800)

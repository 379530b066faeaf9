"""Catalogue games through the path a user takes (issue 17): signed interactions against the embedded
emulator (moto executes the real ASL), the agent's events delivered as the IoT rule would, and its
requests read from a real Mosquitto. /newgame offers the catalogue, fills the form from the entry and
proposes its size; /start's reply follows the install and says playable only at `playable`; /games,
/ip and /help show the join line and the players by name; /updategame backs up, then reinstalls."""

from __future__ import annotations

import base64
import json
import queue
import time
import tomllib
from typing import Any

from chalicelib.games import GameState
from chalicelib.lifecycle.backup_game import save_request_id
from chalicelib.wiring import container
from tests.access_helpers import Subscriber
from tests.helpers import Harness
from tests.lifecycle_helpers import agent_event, game_row, pump_steps

MODAL = 9
AUTOCOMPLETE_RESULT = 8


def _told(harness: Harness, payload: dict[str, Any]) -> list[str]:
    return [str(c["json"].get("content")) for c in harness.calls_for(payload["token"])]


def _new_openarena(harness: Harness, tenant: str, name: str = "arena", **fields: str) -> dict[str, Any]:
    """/newgame game_type:openarena, its form submitted, until CreateGame finished."""
    _, form = harness.post(harness.user.command("newgame", {"name": name, "game_type": "openarena"}))
    assert form["type"] == MODAL and form["data"]["custom_id"] == "games:create:openarena"
    values = {"name": name, "description": "Friday frags", **fields}
    status, answer = harness.post(harness.user.modal_submit("games:create:openarena", values))
    assert status == 200, answer
    pump_steps(lambda: game_row(tenant, name).state is GameState.STOPPED)
    return dict(answer)


def _agent_toml(instance_id: str | None) -> dict[str, Any]:
    """The agent's config as the instance's user data writes it."""
    answer = (
        container().client("ec2").describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    )
    script = base64.b64decode(answer["UserData"]["Value"]).decode()
    body = script.split("/etc/gangway/agent.toml\" <<'TOML'\n", 1)[1].split("\nTOML\n", 1)[0]
    parsed: dict[str, Any] = tomllib.loads(body)
    return parsed


def _start(harness: Harness, tenant: str, name: str) -> dict[str, Any]:
    payload, answer = harness.command("start", game=name)
    assert answer["data"]["content"] == f"⏳ Starting **{name}**…"
    pump_steps(lambda: bool(game_row(tenant, name).wait.task_token))
    agent_event(tenant, name, "ready", {"version": "test", "game_running": False})
    pump_steps(lambda: game_row(tenant, name).state is GameState.RUNNING)
    return payload


def _wait_for(sub: Subscriber, kind: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, message = sub.next(timeout=max(deadline - time.monotonic(), 0.1))
        except queue.Empty:
            break
        if message["type"] == kind:
            return dict(message)
    raise AssertionError(f"no {kind} request reached the agent")


def test_newgame_offers_the_catalogue_with_descriptions_and_custom(harness: Harness, tenant: str) -> None:
    status, answer = harness.post(
        harness.user.command("newgame", {"game_type": "arena"}, focused="game_type")
    )
    assert status == 200 and answer["type"] == AUTOCOMPLETE_RESULT
    choices = answer["data"]["choices"]
    assert choices[0] == {
        "name": "OpenArena: Fast arena shooter on the Quake III engine (open source, from Debian)",
        "value": "openarena",
    }
    assert choices[-1]["value"] == "custom"
    status, answer = harness.post(harness.user.command("newgame", {"game_type": ""}, focused="game_type"))
    listed = [c["value"] for c in answer["data"]["choices"]]
    assert listed[0] == "custom" and {"minecraft-java", "valheim", "luanti", "openttd"} <= set(listed)
    assert all(len(c["name"]) <= 100 for c in answer["data"]["choices"])
    _, custom = harness.post(harness.user.command("newgame", {"name": "mine", "game_type": "custom"}))
    assert custom["data"]["custom_id"] == "games:create"  # today's empty server


def test_newgame_fills_the_form_from_the_entry_and_proposes_its_size(harness: Harness, tenant: str) -> None:
    _, form = harness.post(harness.user.command("newgame", {"name": "arena", "game_type": "openarena"}))
    labels = [c["label"] for c in form["data"]["components"]]
    assert len(labels) == 5  # Discord's limit: name, description and the entry's first three settings
    assert labels[2:] == ["Server name", "Max players", "Password (empty: anyone can join)"]
    assert form["data"]["components"][3]["component"]["value"] == "12"

    answer = _new_openarena(harness, tenant, max_players="16", server_name="Frag night")
    content = answer["data"]["content"]
    assert content.startswith("⏳ Creating **arena**: OpenArena, recommended size `t3.small`")
    assert "`t4g.small` on Arm" in content and "/h on-demand" in content and "`/gameoption`" in content
    game = game_row(tenant, "arena")
    assert game.settings.catalogue_id == "openarena" and game.settings.install_version == "1"
    assert dict(game.settings.options) == {
        "server_name": "Frag night",
        "max_players": "16",
        "password": "",
        "map": "oa_dm1",
    }
    assert game.settings.instance_type == "t3.small" and game.settings.ports == ("udp:27960",)
    group = container().client("ec2").describe_security_groups(GroupIds=[game.resources.security_group_id])
    opened = {(p["IpProtocol"], p["FromPort"]) for p in group["SecurityGroups"][0]["IpPermissions"]}
    assert ("udp", 27960) in opened


def test_bad_form_values_and_unknown_games_are_refused_and_change_nothing(
    harness: Harness, tenant: str
) -> None:
    status, answer = harness.post(
        harness.user.modal_submit("games:create:openarena", {"name": "arena", "max_players": "99"})
    )
    assert status == 200
    assert "Max players must be from 2 to 32, not 99. Nothing was created" in answer["data"]["content"]
    assert container().lifecycle.games.get(tenant, "arena") is None
    _, unknown = harness.command("newgame", game_type="quake9")
    assert "isn't a game in gangway's catalogue" in unknown["data"]["content"]
    status, answer = harness.post(harness.user.modal_submit("games:create:quake9", {"name": "q"}))
    assert "isn't a game in gangway's catalogue" in answer["data"]["content"]
    assert container().lifecycle.games.get(tenant, "q") is None


def test_start_installs_then_says_playable_only_when_the_agent_does(harness: Harness, tenant: str) -> None:
    _new_openarena(harness, tenant)
    payload = _start(harness, tenant, "arena")
    game = game_row(tenant, "arena")
    config = _agent_toml(game.resources.instance_id)
    assert config["install"] == {"method": "apt", "version": "1", "packages": ["openarena-server"]}
    assert config["query"] == {"protocol": "quake3", "host": "127.0.0.1", "port": 27960, "interval_s": 30}
    assert config["ready"] == {"signal": "query", "timeout_s": 600}
    launch = config["launch"]
    assert launch["command"][:3] == ["/usr/games/openarena-server", "+set", "dedicated"]
    assert "gangway arena" in launch["command"] and launch["console_stop"] == "quit"
    assert launch["ports"] == {"tcp": [], "udp": [27960]}

    up = _told(harness, payload)[-1]
    assert "Not ready to join yet" in up and "installing and starting OpenArena" in up
    _, listed = harness.command("games")
    assert "not playable yet" in listed["data"]["embeds"][0]["description"]

    agent_event(tenant, "arena", "install.progress", {"phase": "download", "percent": 40.0, "version": "1"})
    agent_event(tenant, "arena", "install.progress", {"phase": "download", "percent": 45.0, "version": "1"})
    agent_event(tenant, "arena", "install.progress", {"phase": "done", "percent": 100, "version": "1"})
    told = _told(harness, payload)
    assert "⏳ **arena**: downloading OpenArena (version 1)… 40 % Not ready to join yet" in told[-2]
    assert not any("45 %" in t for t in told)  # throttled: under 10 % more within 20 s
    assert told[-1].startswith("⏳ **arena**: installed; starting the game OpenArena")

    agent_event(tenant, "arena", "playable", {"after_s": 3.5, "signal": "query"})
    address = game_row(tenant, "arena").resources.address
    assert _told(harness, payload)[-1] == (
        f"🟢 **arena** is playable. Join with `openarena +connect {address}:27960`. "
        "`/help game:arena` says how to join; use `/addip` if you can't connect."
    )
    agent_event(tenant, "arena", "players", {"count": 2, "previous": 0, "names": ["ana", "bo"]})
    _, details = harness.command("games", game="arena")
    fields = {f["name"]: f["value"] for f in details["data"]["embeds"][0]["fields"]}
    assert fields["Players"].startswith("2 players online") and fields["Players"].endswith(": ana, bo")
    assert f"join with `openarena +connect {address}:27960`" in fields["Joining"]
    _, ip = harness.command("ip")
    assert (
        f"join with `openarena +connect {address}:27960` · playing: ana, bo"
        in ip["data"]["embeds"][0]["description"]
    )
    agent_event(tenant, "arena", "players", {"count": 1, "previous": 2, "names": None})
    assert game_row(tenant, "arena").player_names is None  # the protocol gave no names this time

    _, helped = harness.command("help", game="arena")
    text = helped["data"]["content"]
    assert text.startswith("**How to join arena** (OpenArena): Install OpenArena")
    assert f"Join at `openarena +connect {address}:27960`." in text


def test_a_failed_install_says_what_to_do(harness: Harness, tenant: str) -> None:
    _new_openarena(harness, tenant)
    payload = _start(harness, tenant, "arena")
    agent_event(
        tenant,
        "arena",
        "install.progress",
        {
            "phase": "failed",
            "percent": None,
            "version": "1",
            "message": "the package archive was unreachable",
        },
    )
    assert _told(harness, payload)[-1] == (
        "❌ **arena**: installing OpenArena failed: the package archive was unreachable. The server keeps "
        "running without the game: run `/updategame game:arena` to try the install again, or `/stop` it."
    )
    assert game_row(tenant, "arena").playable_at is None


def test_gameoption_changes_a_setting_the_form_had_no_room_for(harness: Harness, tenant: str) -> None:
    _new_openarena(harness, tenant)
    _, answer = harness.command("gameoption", game="arena", setting="map", value="oa_ctf2")
    assert (
        answer["data"]["content"]
        == "✅ **arena**: First map is now `oa_ctf2`. It applies at the next `/start`."
    )
    assert dict(game_row(tenant, "arena").settings.options)["map"] == "oa_ctf2"
    _, refused = harness.command("gameoption", game="arena", setting="max_players", value="1")
    assert refused["data"]["content"].endswith(
        "Max players must be from 2 to 32, not 1; nothing was changed."
    )
    _, unknown = harness.command("gameoption", game="arena", setting="rcon", value="x")
    assert "OpenArena has no setting `rcon`" in unknown["data"]["content"]
    assert dict(game_row(tenant, "arena").settings.options)["max_players"] == "12"


def test_updategame_of_a_stopped_game_installs_at_the_next_start(harness: Harness, tenant: str) -> None:
    _new_openarena(harness, tenant)
    _, answer = harness.command("updategame", game="arena")
    assert answer["data"]["content"].startswith("✅ **arena** (OpenArena) will update at its next `/start`")
    assert game_row(tenant, "arena").settings.install_version == "2"
    _start(harness, tenant, "arena")
    assert _agent_toml(game_row(tenant, "arena").resources.instance_id)["install"]["version"] == "2"


def test_updategame_of_a_running_game_backs_up_then_reinstalls(
    harness: Harness, tenant: str, agent_link: Subscriber
) -> None:
    _new_openarena(harness, tenant)
    _start(harness, tenant, "arena")
    payload, answer = harness.command("updategame", game="arena")
    assert answer["data"]["content"].startswith("⏳ Updating **arena** (OpenArena): backing it up first")
    assert game_row(tenant, "arena").settings.install_version == "2"
    pump_steps(lambda: bool(game_row(tenant, "arena").wait.backup_token))
    backup = game_row(tenant, "arena").wait.backup or ""
    agent_event(
        tenant, "arena", "game.save.reply", {"saved": True, "synced": True}, reply_to=save_request_id(backup)
    )
    pump_steps(lambda: game_row(tenant, "arena").wait.backup is None)
    request = _wait_for(agent_link, "game.install")
    assert request["body"] == {"force": True}
    assert "now the server reinstalls the game" in _told(harness, payload)[-1]
    agent_event(tenant, "arena", "install.progress", {"phase": "install", "percent": 10, "version": "1"})
    assert "installing OpenArena (version 1)… 10 %" in _told(harness, payload)[-1]


def test_catalogue_commands_refuse_custom_games_in_words(harness: Harness, tenant: str) -> None:
    harness.post(harness.user.modal_submit("games:create", {"name": "mine", "description": ""}))
    pump_steps(lambda: game_row(tenant, "mine").state is GameState.STOPPED)
    _, updated = harness.command("updategame", game="mine")
    assert "is a custom game: update its server through `/files` or `/terminal`" in updated["data"]["content"]
    _, option = harness.command("gameoption", game="mine", setting="map", value="x")
    assert "is a custom game" in option["data"]["content"]
    _, helped = harness.command("help", game="mine")
    assert "custom game" in helped["data"]["content"] and "`/start`" in helped["data"]["content"]
    assert json.loads(json.dumps(helped))  # a plain reply


def test_install_progress_before_the_host_is_up_is_told_in_the_start_reply(
    harness: Harness, tenant: str
) -> None:
    """The agent installs as soon as it runs: its first progress comes before the start's last step."""
    _new_openarena(harness, tenant)
    payload, _ = harness.command("start", game="arena")
    pump_steps(lambda: bool(game_row(tenant, "arena").wait.task_token))  # launched; waiting for the agent
    assert game_row(tenant, "arena").state is GameState.STARTING
    agent_event(tenant, "arena", "install.progress", {"phase": "download", "percent": 5.0, "version": "1"})
    assert "⏳ **arena**: downloading OpenArena (version 1)… 5 % Not ready to join yet" in _told(
        harness, payload
    )[-1]


def test_playable_before_the_start_finished_still_ends_in_playable(harness: Harness, tenant: str) -> None:
    """A second start skips the install: `playable` may come before the start's last step ran."""
    _new_openarena(harness, tenant)
    payload, _ = harness.command("start", game="arena")
    pump_steps(lambda: bool(game_row(tenant, "arena").wait.task_token))
    agent_event(tenant, "arena", "ready", {"version": "test", "game_running": False})
    agent_event(tenant, "arena", "install.progress", {"phase": "skipped", "percent": None, "version": "1"})
    agent_event(tenant, "arena", "playable", {"after_s": 0.5, "signal": "query"})
    pump_steps(lambda: game_row(tenant, "arena").state is GameState.RUNNING)
    assert _told(harness, payload)[-1].startswith("🟢 **arena** is playable. Join with `openarena +connect ")
    _, listed = harness.command("games")
    assert "join with `openarena +connect" in listed["data"]["embeds"][0]["description"]

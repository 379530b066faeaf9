"""/addip, /addguestip, /ip and /ipsettings as signed interactions."""

from __future__ import annotations

import re
import time
from typing import Any

from chalicelib.discord import MessageFlag
from chalicelib.discord.payloads import ButtonStyle, ComponentType
from chalicelib.games import GameState
from chalicelib.wiring import container
from devstack.discord_user import snowflake
from tests.access_helpers import MAIN_ROLE, a_member, add_game, authorize, make_tenant, setup_roles
from tests.helpers import Harness


def _link(answer: dict[str, Any]) -> str:
    button = answer["data"]["components"][0]["components"][0]
    assert button["type"] == ComponentType.BUTTON and button["style"] == ButtonStyle.LINK
    url: str = button["url"]
    return url


def test_addip_answers_privately_with_a_personal_link_in_the_fragment(harness: Harness) -> None:
    setup_roles(harness)
    who = a_member(harness)
    _, answer = harness.command("addip", who=who)
    data = answer["data"]
    assert data["flags"] == int(MessageFlag.EPHEMERAL)
    url = _link(answer)
    site = container().settings.site_url
    assert url.startswith(site + "/#g2.")
    assert "?" not in url  # the token is never in the path or query, so never in a server log
    assert url in data["content"] and "replaces" in data["content"]
    assert re.search(r"<t:\d+:R>", data["content"])
    assert authorize(url.split("#", 1)[1], "198.51.100.44").json["kind"] == "member"


def test_addip_needs_a_set_up_server(harness: Harness) -> None:
    _, answer = harness.command("addip")
    assert "/setup" in answer["data"]["content"]


def test_addguestip_is_for_the_main_role_and_gives_a_shareable_guest_link(harness: Harness) -> None:
    setup_roles(harness)
    _, refused = harness.command("addguestip", who=a_member(harness))
    assert "main** role" in refused["data"]["content"]
    _, answer = harness.command("addguestip", who=a_member(harness, MAIN_ROLE), uses=2)
    assert answer["data"]["flags"] == int(MessageFlag.EPHEMERAL)
    assert "up to **2** addresses" in answer["data"]["content"]
    token = _link(answer).split("#", 1)[1]
    assert authorize(token, "203.0.113.61").json["kind"] == "guest"
    assert authorize(token, "203.0.113.62").status == 200
    assert authorize(token, "203.0.113.63").json["error"]["code"] == "used_up"


def test_ip_says_no_games_are_running_and_that_you_have_no_address_yet(harness: Harness) -> None:
    setup_roles(harness)
    _, answer = harness.command("ip", who=a_member(harness))
    embed = answer["data"]["embeds"][0]
    assert "No games are running" in embed["description"]
    assert "/addip" in embed["fields"][0]["value"]


def test_ip_lists_running_games_and_your_current_grant(harness: Harness) -> None:
    guild = setup_roles(harness)
    add_game(guild, "valheim", GameState.RUNNING)
    add_game(guild, "factorio", GameState.STOPPED)
    who = a_member(harness)
    _, linked = harness.command("addip", who=who)
    authorize(_link(linked).split("#", 1)[1], "198.51.100.80")
    _, answer = harness.command("ip", who=who)
    embed = answer["data"]["embeds"][0]
    assert "**valheim** · running" in embed["description"] and "factorio" not in embed["description"]
    value = embed["fields"][0]["value"]
    assert "`198.51.100.80`" in value and re.search(r"<t:\d+:R>", value)


def test_ipsettings_shows_and_changes_the_tenants_access_policy(harness: Harness) -> None:
    guild = setup_roles(harness)
    _, refused = harness.command("ipsettings", who=a_member(harness, MAIN_ROLE), guest_days=5)
    assert "admin** role" in refused["data"]["content"]
    _, answer = harness.command("ipsettings")
    fields = {f["name"]: f["value"] for f in answer["data"]["embeds"][0]["fields"]}
    assert fields == {
        "Members": "90 days",
        "Guests": "3 days",
        "Most addresses": "200",
        "Guest link uses": "10",
    }
    _, answer = harness.command("ipsettings", guest_days=5, max_grants=50)
    assert "Saved" in answer["data"]["embeds"][0]["description"]
    policy = container().access.grants.policy(guild)
    assert (policy.guest_days, policy.max_grants, policy.member_days) == (5, 50, 90)
    link = container().access.guest_link(guild, int(time.time()))
    assert link.claims.expires_at - link.claims.issued_at == 5 * 86400


def test_links_from_another_server_do_not_touch_this_one(harness: Harness) -> None:
    guild = setup_roles(harness)
    other = snowflake()
    make_tenant(other)
    _, answer = harness.command("addip", who=a_member(harness))
    authorize(_link(answer).split("#", 1)[1], "198.51.100.90")
    assert container().access.grants.all(other) == []
    assert [g.address for g in container().access.grants.all(guild)] == ["198.51.100.90"]

"""/setup with role selects, access levels re-checked at dispatch, and /games, all as signed interactions."""

from __future__ import annotations

import json

from chalicelib.discord import CallbackType, MessageFlag
from chalicelib.discord.payloads import ComponentType
from chalicelib.games import GameStore
from chalicelib.tenancy import TenantStore
from devstack.discord_user import Who, snowflake
from tests.helpers import Harness

MAIN_ROLE = "400000000000000001"
ADMIN_ROLE = "400000000000000002"


def _setup(harness: Harness) -> None:
    _, answer = harness.command("setup")
    assert answer["type"] == CallbackType.CHANNEL_MESSAGE
    harness.component("setup:main", [MAIN_ROLE])
    harness.component("setup:admin", [ADMIN_ROLE])


def _member(harness: Harness, *roles: str) -> Who:
    return Who(guild_id=harness.user.who.guild_id, user_id=snowflake(), role_ids=roles, permissions=0)


def test_setup_registers_the_guild_and_offers_role_selects(harness: Harness) -> None:
    _, answer = harness.command("setup")
    data = answer["data"]
    assert data["flags"] == int(MessageFlag.EPHEMERAL)
    assert "now connected" in data["embeds"][0]["description"]
    selects = [row["components"][0] for row in data["components"][:2]]
    assert [s["custom_id"] for s in selects] == ["setup:main", "setup:admin"]
    assert all(s["type"] == ComponentType.ROLE_SELECT for s in selects)
    buttons = [b["custom_id"] for b in data["components"][2]["components"]]
    assert buttons == ["setup:connect", "setup:hosting", "setup:remove"]
    tenant = TenantStore(default_region="us-east-1").read(harness.user.who.guild_id or "")
    assert tenant is not None and tenant.created_by == harness.user.who.user_id


def test_setup_again_shows_current_settings_without_recreating(harness: Harness) -> None:
    _setup(harness)
    _, answer = harness.command("setup")
    embed = answer["data"]["embeds"][0]
    assert "is connected" in embed["description"]
    assert f"<@&{MAIN_ROLE}>" in json.dumps(embed)
    defaults = answer["data"]["components"][0]["components"][0]["default_values"]
    assert defaults == [{"id": MAIN_ROLE, "type": "role"}]


def test_role_select_saves_roles_and_updates_the_message(harness: Harness) -> None:
    harness.command("setup")
    answer = harness.component("setup:main", [MAIN_ROLE])
    assert answer["type"] == CallbackType.UPDATE_MESSAGE
    assert "Saved the main role" in answer["data"]["embeds"][0]["description"]
    answer = harness.component("setup:admin", [ADMIN_ROLE])
    assert "Setup is complete" in answer["data"]["embeds"][0]["description"]
    tenant = TenantStore(default_region="us-east-1").read(harness.user.who.guild_id or "")
    assert tenant is not None
    assert tenant.main_role_ids == {MAIN_ROLE} and tenant.admin_role_ids == {ADMIN_ROLE}


def test_a_role_select_value_that_is_no_role_id_is_refused_and_saves_nothing(harness: Harness) -> None:
    """Found by `make fuzz`: `[""]` was saved as the main role, and the redrawn select then named a role
    id Discord refuses (its default_values ids are snowflakes)."""
    _setup(harness)
    for values in ([""], ["role"], [MAIN_ROLE, "-1"]):
        answer = harness.component("setup:main", values)
        assert answer["type"] == CallbackType.CHANNEL_MESSAGE
        assert "isn't one Discord sent" in answer["data"]["content"]
    tenant = TenantStore(default_region="us-east-1").read(harness.user.who.guild_id or "")
    assert tenant is not None and tenant.main_role_ids == {MAIN_ROLE}


def test_setup_needs_manage_server(harness: Harness) -> None:
    _, answer = harness.command("setup", who=_member(harness, MAIN_ROLE))
    assert "Manage Server" in answer["data"]["content"]
    assert TenantStore(default_region="us-east-1").read(harness.user.who.guild_id or "") is None


def test_role_select_from_a_member_without_manage_server_changes_nothing(harness: Harness) -> None:
    _setup(harness)
    answer = harness.component("setup:admin", ["400000000000000009"], who=_member(harness, ADMIN_ROLE))
    assert answer["type"] == CallbackType.CHANNEL_MESSAGE
    assert "Manage Server" in answer["data"]["content"]
    tenant = TenantStore(default_region="us-east-1").read(harness.user.who.guild_id or "")
    assert tenant is not None and tenant.admin_role_ids == {ADMIN_ROLE}


def test_games_is_refused_to_members_without_the_main_role(harness: Harness) -> None:
    _setup(harness)
    _, answer = harness.command("games", who=_member(harness))
    assert "main** role" in answer["data"]["content"]


def test_games_with_no_games_says_how_to_create_one(harness: Harness) -> None:
    _setup(harness)
    _, answer = harness.command("games", who=_member(harness, MAIN_ROLE))
    assert (
        answer["data"]["content"] == "This server has no games yet. An admin can create one with `/newgame`."
    )
    _, answer = harness.command("games", who=_member(harness, ADMIN_ROLE))
    assert answer["data"]["content"] == "This server has no games yet. Create one with `/newgame`."


def test_games_lists_this_tenants_games_with_their_states(harness: Harness) -> None:
    _setup(harness)
    guild = harness.user.who.guild_id or ""
    store = GameStore()
    store.create(guild, "valheim", description="Vikings", created_by="1")
    store.create(guild, "factorio", description="", created_by="1")
    store.create(snowflake(), "other-tenant", description="", created_by="1")
    _, answer = harness.command("games", who=_member(harness, MAIN_ROLE))
    embed = answer["data"]["embeds"][0]
    assert embed["title"] == "Games (2: 2 stopped)"
    assert "**factorio** · stopped" in embed["description"]
    assert "**valheim** · stopped · Vikings" in embed["description"]
    assert "other-tenant" not in json.dumps(answer)


def test_games_shows_one_game_with_its_state_in_words(harness: Harness) -> None:
    _setup(harness)
    GameStore().create(harness.user.who.guild_id or "", "valheim", description="Vikings", created_by="1")
    _, answer = harness.command("games", who=_member(harness, MAIN_ROLE), game="valheim")
    embed = answer["data"]["embeds"][0]
    assert "valheim" in embed["title"]
    assert {"name": "Status", "value": "stopped", "inline": True} in embed["fields"]
    assert embed["fields"][1]["value"].startswith("<t:")


def test_games_for_unknown_game_says_it_does_not_exist(harness: Harness) -> None:
    _setup(harness)
    _, answer = harness.command("games", game="skyrim")
    assert "does not exist" in answer["data"]["content"]
    assert answer["data"]["flags"] == int(MessageFlag.EPHEMERAL)


def test_games_rejects_an_invalid_name_clearly(harness: Harness) -> None:
    _setup(harness)
    _, answer = harness.command("games", game="Bad Name!")
    assert "isn't a valid game name" in answer["data"]["content"]


def test_game_autocomplete_suggests_only_this_tenants_matching_games(harness: Harness) -> None:
    _setup(harness)
    guild = harness.user.who.guild_id or ""
    for name in ("valheim", "vrising", "factorio"):
        GameStore().create(guild, name, description="", created_by="1")
    GameStore().create(snowflake(), "vintage", description="", created_by="1")
    payload = harness.user.command("games", {"game": "v"}, focused="game")
    _, answer = harness.post(payload)
    assert [c["value"] for c in answer["data"]["choices"]] == ["valheim", "vrising"]


def test_game_autocomplete_suggests_nothing_to_members_without_access(harness: Harness) -> None:
    _setup(harness)
    GameStore().create(harness.user.who.guild_id or "", "valheim", description="", created_by="1")
    payload = harness.user.command("games", {"game": ""}, who=_member(harness), focused="game")
    _, answer = harness.post(payload)
    assert answer == {"type": CallbackType.AUTOCOMPLETE_RESULT, "data": {"choices": []}}


def test_help_lists_only_what_the_caller_may_use(harness: Harness) -> None:
    _setup(harness)
    _, answer = harness.command("help", who=_member(harness))
    text = json.dumps(answer["data"]["embeds"])
    assert "/help" in text and "/games" not in text
    _, answer = harness.command("help", who=_member(harness, MAIN_ROLE))
    text = json.dumps(answer["data"]["embeds"])
    assert "/games" in text and "**main**" in text

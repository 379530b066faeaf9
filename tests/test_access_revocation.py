"""Taking access back (issue 15), as signed interactions: /access lists who is let in, by whom and until
when, paged; its menu revokes a member's address or a guest link (and every address it let in), its
button everything (after asking); /revokeip a member's own. Each revocation reaches the running games'
agents at once over the real broker."""

from __future__ import annotations

import time
from typing import Any

from chalicelib.access import Grant, GrantStore, LinkKind
from chalicelib.discord import MessageFlag
from chalicelib.discord.payloads import ComponentType
from chalicelib.games import GameState
from chalicelib.wiring import container
from tests.access_helpers import MAIN_ROLE, Subscriber, a_member, add_game, authorize, setup_roles
from tests.helpers import Harness

UPDATE_MESSAGE = 7


def _token(answer: dict[str, Any]) -> str:
    url: str = answer["data"]["components"][0]["components"][0]["url"]
    return url.split("#", 1)[1]


def _components(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["custom_id"]: c for row in data["components"] for c in row["components"] if "custom_id" in c}


def _addresses(guild: str) -> set[str]:
    return {g.address for g in GrantStore().all(guild)}


def _revoked_on_agent(sub: Subscriber) -> set[str]:
    """Every address the running game's agent was told to revoke (deltas on its `cmd` topic)."""
    out: set[str] = set()
    for _, msg in sub.drain(wait=0.5):
        if msg["type"] == "firewall.sync" and msg["body"]["mode"] == "delta":
            out.update(msg["body"]["revoke"])
    return out


def test_an_admin_sees_who_is_let_in_and_revokes_a_member_and_a_guest_link(
    harness: Harness, agent_link: Subscriber
) -> None:
    guild = setup_roles(harness)
    add_game(guild, "valheim", GameState.RUNNING)
    member, host = a_member(harness), a_member(harness, MAIN_ROLE)
    _, mine = harness.command("addip", who=member)
    assert authorize(_token(mine), "198.51.100.11").status == 200
    _, guest = harness.command("addguestip", who=host, uses=3)
    guest_token = _token(guest)
    link_id = guest["data"]["content"].split("This is link `", 1)[1].split("`", 1)[0]
    assert "`/access`" in guest["data"]["content"]
    for address in ("203.0.113.1", "203.0.113.2"):
        assert authorize(guest_token, address).status == 200
    agent_link.drain(wait=0.3)

    _, listing = harness.command("access")
    data = listing["data"]
    assert data["flags"] == int(MessageFlag.EPHEMERAL)
    lines = data["embeds"][0]["description"].splitlines()
    assert lines[0].startswith(f"`198.51.100.11` · member <@{member.user_id}> · until <t:")
    assert f"`203.0.113.1` · guest of link `{link_id}`, made by <@{host.user_id}> · until <t:" in lines[1]
    assert "Page 1 of 1 · 3 addresses" in data["embeds"][0]["footer"]["text"]
    menu = _components(data)["access:revoke:0"]
    assert menu["type"] == ComponentType.STRING_SELECT
    assert [o["value"] for o in menu["options"]] == [f"user#{member.user_id}", f"link#{link_id}"]

    # the guest link: withdrawn, and both addresses it let in are off the running game's firewall at once
    answer = harness.component("access:revoke:0", [f"link#{link_id}"])
    assert answer["type"] == UPDATE_MESSAGE
    text = answer["data"]["embeds"][0]["description"]
    assert f"✅ Withdrew guest link `{link_id}`: it lets nobody in any more" in text
    assert "took **2** addresses off the firewall" in text and "(**valheim**) stopped letting them in" in text
    assert _addresses(guild) == {"198.51.100.11"}
    assert _revoked_on_agent(agent_link) == {"203.0.113.1", "203.0.113.2"}
    refused = authorize(guest_token, "203.0.113.3")
    assert refused.json["error"]["code"] == "revoked" and "withdrawn" in refused.json["error"]["message"]
    assert _addresses(guild) == {"198.51.100.11"}

    # the member's address
    answer = harness.component("access:revoke:0", [f"user#{member.user_id}"])
    assert (
        f"✅ Revoked <@{member.user_id}>: took **1** address off the firewall"
        in (answer["data"]["embeds"][0]["description"])
    )
    assert _addresses(guild) == set()
    assert _revoked_on_agent(agent_link) == {"198.51.100.11"}
    assert "Nobody is let in right now" in answer["data"]["embeds"][0]["description"]


def test_revoking_everything_asks_first_then_takes_every_address_and_link(
    harness: Harness, agent_link: Subscriber
) -> None:
    guild = setup_roles(harness)
    add_game(guild, "valheim", GameState.RUNNING)
    _, mine = harness.command("addip", who=a_member(harness))
    authorize(_token(mine), "198.51.100.21")
    _, unused = harness.command("addguestip", who=a_member(harness, MAIN_ROLE))
    agent_link.drain(wait=0.3)

    sure = harness.component("access:sure")
    assert sure["type"] == UPDATE_MESSAGE and sure["data"]["embeds"][0]["title"] == "Revoke everything?"
    assert "all **1** address" in sure["data"]["embeds"][0]["description"]
    assert set(_components(sure["data"])) == {"access:everything", "access:page:0"}
    assert _addresses(guild) == {"198.51.100.21"}  # asking changed nothing

    done = harness.component("access:everything")
    text = done["data"]["embeds"][0]["description"]
    assert "✅ Revoked everything: took **1** address off the firewall" in text
    assert "withdrew 1 guest link" in text
    assert _addresses(guild) == set()
    assert _revoked_on_agent(agent_link) == {"198.51.100.21"}
    # a guest link nobody had used yet is withdrawn too
    assert authorize(_token(unused), "203.0.113.9").json["error"]["code"] == "revoked"


def test_a_member_revokes_their_own_address_and_only_theirs(harness: Harness, agent_link: Subscriber) -> None:
    guild = setup_roles(harness)
    add_game(guild, "valheim", GameState.RUNNING)
    me, other = a_member(harness), a_member(harness)
    for who, address in ((me, "198.51.100.31"), (other, "198.51.100.32")):
        _, answer = harness.command("addip", who=who)
        authorize(_token(answer), address)
    agent_link.drain(wait=0.3)
    _, answer = harness.command("revokeip", who=me)
    assert answer["data"]["flags"] == int(MessageFlag.EPHEMERAL)
    assert "✅ Done: took **1** address off the firewall (`198.51.100.31`)" in answer["data"]["content"]
    assert _addresses(guild) == {"198.51.100.32"}
    assert _revoked_on_agent(agent_link) == {"198.51.100.31"}
    _, again = harness.command("revokeip", who=me)
    assert "nothing to revoke" in again["data"]["content"]


def test_the_list_pages_and_bad_or_foreign_clicks_change_nothing(harness: Harness) -> None:
    guild = setup_roles(harness)
    now = int(time.time())
    store = GrantStore()
    for i in range(23):
        store.put(Grant(guild, f"198.51.100.{100 + i}", LinkKind.MEMBER, f"user#{1000 + i}", now, now + 3600))
    _, listing = harness.command("access")
    assert "Page 1 of 3 · 23 addresses" in listing["data"]["embeds"][0]["footer"]["text"]
    assert _components(listing["data"])["access:page:-1"]["disabled"] is True
    page3 = harness.component("access:page:2")
    assert len(page3["data"]["embeds"][0]["description"].splitlines()) == 3
    assert _components(page3["data"])["access:page:3"]["disabled"] is True
    # a damaged menu value, a damaged page, and a member who is not an admin: a clear answer, nothing changed
    bad = harness.component("access:revoke:0", ["user#1000; drop"])
    assert "damaged" in bad["data"]["content"] and bad["data"]["flags"] == int(MessageFlag.EPHEMERAL)
    assert "damaged" in harness.component("access:page:x")["data"]["content"]
    foreign = harness.component("access:revoke:0", ["user#1000"], who=a_member(harness, MAIN_ROLE))
    assert "admin" in foreign["data"]["content"].lower()
    foreign = harness.component("access:everything", who=a_member(harness, MAIN_ROLE))
    assert "admin" in foreign["data"]["content"].lower()
    assert len(container().access.grants.all(guild)) == 23

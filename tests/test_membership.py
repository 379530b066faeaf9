"""/join and /leave through signed interactions: the role change reaches Discord's REST API (the stand-in)
with the bot token and an audit-log reason, and Discord's refusals come back as what an admin must fix."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.discord import CallbackType, Permission
from chalicelib.discord.invite import invite_url
from devstack import cli
from devstack.discord_user import Who, snowflake
from tests.helpers import Harness

MAIN_ROLE = "400000000000000001"
OTHER_MAIN = "400000000000000009"
ADMIN_ROLE = "400000000000000002"


def _setup(harness: Harness, *main: str, main_permissions: int = 0) -> None:
    """/setup with these main roles; Discord knows them as plain roles (or with `main_permissions`)."""
    plain = int(Permission.VIEW_CHANNEL | Permission.SEND_MESSAGES)
    roles = {r: plain | main_permissions for r in (MAIN_ROLE, OTHER_MAIN)}
    harness.standin.guild_roles(
        harness.user.who.guild_id or "", {**roles, ADMIN_ROLE: int(Permission.MANAGE_GUILD)}
    )
    harness.command("setup")
    if main:
        harness.component("setup:main", list(main))
    harness.component("setup:admin", [ADMIN_ROLE])


def _member(harness: Harness, *roles: str) -> Who:
    return Who(
        guild_id=harness.user.who.guild_id,
        user_id=snowflake(),
        user_name="ana",
        role_ids=roles,
        permissions=0,
    )


def _run(harness: Harness, command: str, who: Who) -> tuple[str, list[dict[str, Any]]]:
    """Send the command, run its job, and return the final reply's content and the role calls made."""
    payload, answer = harness.command(command, who=who)
    assert answer["type"] == CallbackType.DEFERRED_CHANNEL_MESSAGE, answer
    harness.run_jobs_for(payload["token"])
    edits = [c for c in harness.calls_for(payload["token"]) if c["method"] == "PATCH"]
    roles = [c for c in harness.standin.calls() if f"/members/{who.user_id}/roles/" in c["path"]]
    return edits[-1]["json"]["content"], roles


def test_join_gives_the_member_the_main_role_with_the_bot_token_and_a_reason(harness: Harness) -> None:
    _setup(harness, MAIN_ROLE)
    ana = _member(harness)
    content, calls = _run(harness, "join", ana)
    assert [(c["method"], c["path"]) for c in calls] == [
        ("PUT", f"/guilds/{ana.guild_id}/members/{ana.user_id}/roles/{MAIN_ROLE}")
    ]
    assert calls[0]["auth"] == "Bot" and calls[0]["status"] == 204
    assert calls[0]["reason"] == "/join by ana"
    assert f"You now have <@&{MAIN_ROLE}>" in content and "/leave" in content


def test_join_with_several_main_roles_gives_one_of_them(harness: Harness) -> None:
    _setup(harness, OTHER_MAIN, MAIN_ROLE)
    _, calls = _run(harness, "join", _member(harness))
    assert len(calls) == 1 and calls[0]["path"].endswith(f"/roles/{MAIN_ROLE}")


def test_join_when_already_a_member_changes_nothing(harness: Harness) -> None:
    _setup(harness, MAIN_ROLE)
    ana = _member(harness, MAIN_ROLE)
    _, answer = harness.command("join", who=ana)
    assert answer["type"] == CallbackType.CHANNEL_MESSAGE
    assert "already have the main role" in answer["data"]["content"]
    assert not harness.receive_jobs(wait=1)


def test_join_without_a_main_role_says_an_admin_must_choose_one(harness: Harness) -> None:
    _setup(harness)
    _, answer = harness.command("join", who=_member(harness))
    assert "no main role" in answer["data"]["content"] and "/setup" in answer["data"]["content"]


def test_join_before_setup_points_to_setup(harness: Harness) -> None:
    ana = _member(harness)
    _, answer = harness.command("join", who=ana)
    assert "/setup" in answer["data"]["content"]
    assert not [c for c in harness.standin.calls() if f"/members/{ana.user_id}/" in c["path"]]


def test_join_refused_by_discord_tells_how_to_grant_manage_roles(harness: Harness) -> None:
    _setup(harness, MAIN_ROLE)
    harness.standin.fault(
        method="PUT", path_contains="/roles/", status=403, code=50013, message="Missing Permissions"
    )
    content, calls = _run(harness, "join", _member(harness))
    assert [c["status"] for c in calls] == [403]
    assert "Manage Roles" in content and f"<@&{MAIN_ROLE}>" in content


@pytest.mark.parametrize(
    "permission",
    [Permission.ADMINISTRATOR, Permission.BAN_MEMBERS, Permission.MANAGE_ROLES, Permission.MODERATE_MEMBERS],
    ids=lambda p: p.name,
)
def test_join_refuses_a_main_role_with_a_dangerous_permission(
    harness: Harness, permission: Permission
) -> None:
    _setup(harness, MAIN_ROLE, main_permissions=int(permission))
    ana = _member(harness)
    content, calls = _run(harness, "join", ana)
    assert calls == []  # no role was handed out
    assert f"<@&{MAIN_ROLE}>" in content and "won't hand it" in content and "/setup" in content


def test_join_for_a_role_deleted_since_setup_hands_out_nothing(harness: Harness) -> None:
    _setup(harness, MAIN_ROLE)
    harness.standin.guild_roles(harness.user.who.guild_id or "", {})
    content, calls = _run(harness, "join", _member(harness))
    assert calls == [] and "no longer exists" in content


def test_join_for_a_deleted_role_says_to_choose_another(harness: Harness) -> None:
    _setup(harness, MAIN_ROLE)
    harness.standin.fault(
        method="PUT", path_contains="/roles/", status=404, code=10011, message="Unknown Role"
    )
    content, _ = _run(harness, "join", _member(harness))
    assert "no longer exists" in content and "/setup" in content


def test_leave_takes_only_main_roles_and_never_the_admin_role(harness: Harness) -> None:
    _setup(harness, MAIN_ROLE, OTHER_MAIN)
    ana = _member(harness, MAIN_ROLE, ADMIN_ROLE)
    content, calls = _run(harness, "leave", ana)
    assert [(c["method"], c["path"].rsplit("/", 1)[-1]) for c in calls] == [("DELETE", MAIN_ROLE)]
    assert calls[0]["reason"] == "/leave by ana"
    assert f"Removed <@&{MAIN_ROLE}>" in content and "/join" in content


def test_leave_without_the_main_role_changes_nothing(harness: Harness) -> None:
    _setup(harness, MAIN_ROLE)
    _, answer = harness.command("leave", who=_member(harness, ADMIN_ROLE))
    assert "nothing to leave" in answer["data"]["content"]
    assert not harness.receive_jobs(wait=1)


def test_the_invite_link_asks_for_manage_roles_and_never_for_administrator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["invite", "--app", "111111111111111111", "--guild", "100000000000000001"]) == 0
    url = urlsplit(capsys.readouterr().out.strip())
    query = parse_qs(url.query)
    assert (url.netloc, url.path) == ("discord.com", "/oauth2/authorize")
    assert query["scope"] == ["bot applications.commands"]
    assert query["guild_id"] == ["100000000000000001"]
    granted = Permission(int(query["permissions"][0]))
    assert Permission.MANAGE_ROLES in granted and Permission.SEND_MESSAGES in granted
    assert Permission.ADMINISTRATOR not in granted and Permission.MANAGE_GUILD not in granted


def test_the_invite_link_refuses_an_application_id_that_is_not_a_snowflake() -> None:
    with pytest.raises(ValueError, match="snowflakes"):
        invite_url("1&scope=admin")
    with pytest.raises(SystemExit):
        cli.main(["invite", "--app", "abc"])

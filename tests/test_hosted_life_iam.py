"""A hosted game's whole life with every handler calling the emulator as its own IAM user.

The suite runs with IAM enforced (devstack/iam.py; `GANGWAY_ENFORCE_IAM=0` is the only way out). Each
step here goes through the function that does it in AWS (the api function's routes, the jobs and steps
Lambdas, agent_events), so an action missing from that function's policy fails here as AccessDenied, as
it would in the account; tests/test_iam_enforced.py runs this module again without one action to prove
it. DNS stays out: Route 53 is in no function's policy by design.
"""

from __future__ import annotations

from typing import Any

from chalicelib.games import GameState
from chalicelib.lifecycle.backup_game import save_request_id
from chalicelib.wiring import container
from devstack.discord_user import snowflake
from devstack.iam import CURRENT_FUNCTION, current_credentials, enforced
from tests.helpers import Harness
from tests.lifecycle_helpers import (
    STORE,
    agent_event,
    create_game,
    ec2_of,
    game_row,
    pump_steps,
    start_until_running,
    stop_until_stopped,
)

__all__ = [
    "test_a_hosted_game_lives_and_the_server_leaves_under_enforced_iam",
    "test_a_member_link_is_sealed_and_opened_under_enforced_iam",
]


def _last(harness: Harness, payload: dict[str, Any]) -> str:
    calls = harness.calls_for(payload["token"])
    assert calls, "the user was never told anything"
    content: str = calls[-1]["json"]["content"]
    return content


def test_a_hosted_game_lives_and_the_server_leaves_under_enforced_iam(harness: Harness, tenant: str) -> None:
    assert enforced(), "the suite runs with IAM enforced; GANGWAY_ENFORCE_IAM=0 turned it off"
    assert CURRENT_FUNCTION.get() is None and current_credentials()[0] != "testing"  # moto issued the keys

    create_game(harness, "valheim")
    start_until_running(harness, tenant, "valheim")

    # /backupnow while running: BackupGame asks the agent to save, then snapshots the data volume.
    asked, answer = harness.command("backupnow", game="valheim")
    assert answer["data"]["content"] == "⏳ Backing up **valheim**…", answer
    pump_steps(lambda: bool(game_row(tenant, "valheim").wait.backup_token))
    backup = game_row(tenant, "valheim").wait.backup
    assert backup
    agent_event(
        tenant,
        "valheim",
        "game.save.reply",
        {"saved": True, "synced": True},
        reply_to=save_request_id(backup),
    )
    pump_steps(lambda: game_row(tenant, "valheim").wait.backup is None)
    assert _last(harness, asked).startswith("💾 **valheim** is backed up")

    stop_until_stopped(harness, tenant, "valheim")
    kept = game_row(tenant, "valheim").resources.snapshot_id
    assert kept and ec2_of(tenant, "valheim").leftovers() == {"instances": [], "volumes": []}

    # /deletegame, keeping the newest snapshot.
    _, answer = harness.command("deletegame", game="valheim")
    clicked = harness.user.component("games:delete:valheim")
    status, answer = harness.post(clicked)
    assert status == 200 and answer["data"]["content"] == "⏳ Deleting **valheim**…", answer
    pump_steps(lambda: STORE.get(tenant, "valheim") is None)
    assert _last(harness, clicked).startswith(f"🗑️ Deleted **valheim**. Its last snapshot `{kept}`")

    # /setup → Remove: a remaining game's group and snapshots go, through the jobs Lambda. (Its snapshot
    # is made directly: a second start and stop would only repeat what ran above.)
    create_game(harness, "rust")
    assert game_row(tenant, "rust").state is GameState.STOPPED
    rust = ec2_of(tenant, "rust")
    volume = rust.create_volume(zone=rust.zones()[0], size_gb=1, snapshot_id=None, token=snowflake())
    rust.snapshot(volume, description="rust's world")
    rust.detach_and_delete_volume(volume)
    harness.component("setup:remove")
    removed = harness.user.component("setup:remove:confirm")
    harness.post(removed)
    harness.run_jobs_for(removed["token"])
    said = _last(harness, removed)
    assert "gangway was removed" in said and "Left behind" not in said, said
    assert "1 snapshot and 1 security group were deleted" in said, said
    ec2 = container().client("ec2")
    tag = [{"Name": "tag:gangway", "Values": [f"{tenant}/rust"]}]
    assert ec2.describe_security_groups(Filters=tag)["SecurityGroups"] == []
    assert rust.snapshots() == []


def test_a_member_link_is_sealed_and_opened_under_enforced_iam(harness: Harness, tenant: str) -> None:
    """/addip (api) reads the link keys as the api function, and the page's API opens the link again:
    `ssm:GetParameter` on the stage's ipauth-keys parameter is what the policy must allow (issue 15.3)."""
    from devstack.discord_user import Who
    from tests.access_helpers import authorize

    for built in ("sealer", "access", "ipauth", "push"):  # as a fresh container: the api function reads
        container().__dict__.pop(built, None)
    member = Who(guild_id=tenant, user_id=snowflake(), role_ids=("400000000000000001",), permissions=0)
    _, answer = harness.command("addip", who=member)
    url = answer["data"]["components"][0]["components"][0]["url"]
    token = url.split("#", 1)[1]
    assert token.startswith(f"g2.{tenant}.")
    assert authorize(token, "198.51.100.77").status == 200

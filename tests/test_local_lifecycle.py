"""The game lifecycle as a user meets it: the local stack in a subprocess, signed interactions only,
moto executing the real ASL, and a real `gangway-agent` over real MQTT for the instance it starts.

/newgame → /start → RUNNING → /stop → STOPPED with a snapshot and nothing left → /start from that
snapshot → /stop again; progress edits visible in the Discord stand-in's record.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from devstack.discord_user import DiscordUser, Who, snowflake
from tests.test_local_agents import _aws, stack  # noqa: F401 - the module-scoped stack fixture

MAIN = "400000000000000001"


def _calls(info: dict[str, Any], token: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(info["discord_api_url"] + "/_calls", timeout=5) as resp:
        return [c for c in json.loads(resp.read()) if token in c["path"]]


def _wait(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _row(info: dict[str, Any], guild: str, name: str) -> dict[str, Any]:
    item = _aws(info, "dynamodb").get_item(
        TableName="gangway-games", Key={"tenant_id": {"S": guild}, "name": {"S": name}}, ConsistentRead=True
    )["Item"]
    return {k: next(iter(v.values())) for k, v in item.items()}


def _leftovers(info: dict[str, Any], guild: str, name: str) -> tuple[list[str], list[str]]:
    ec2 = _aws(info, "ec2")
    tag = [{"Name": "tag:gangway", "Values": [f"{guild}/{name}"]}]
    instances = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=tag)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] not in ("terminated", "shutting-down")
    ]
    return instances, [v["VolumeId"] for v in ec2.describe_volumes(Filters=tag)["Volumes"]]


def test_a_game_lives_through_newgame_start_stop_start_stop(stack: dict[str, Any]) -> None:  # noqa: F811
    guild = snowflake()
    admin = DiscordUser.from_stack(stack, Who(guild_id=guild, user_id=snowflake()))
    member = DiscordUser.from_stack(
        stack, Who(guild_id=guild, user_id=snowflake(), role_ids=(MAIN,), permissions=0)
    )
    admin.post(admin.command("setup"))
    admin.post(admin.component("setup:main", [MAIN]))
    status, answer = admin.post(admin.command("newgame", {"name": "valheim"}))
    assert (status, answer["type"]) == (200, 9)
    _, answer = admin.post(
        admin.modal_submit("games:create", {"name": "valheim", "description": "Vikings"})
    )
    assert "Created **valheim**" in answer["data"]["content"]

    first = _start_then_stop(stack, member, guild, from_snapshot=None)
    second = _start_then_stop(stack, member, guild, from_snapshot=first)
    assert second != first


def _start_then_stop(
    info: dict[str, Any], member: DiscordUser, guild: str, *, from_snapshot: str | None
) -> str:
    """One /start until RUNNING and one /stop until STOPPED; returns the new snapshot id."""
    started = member.command("start", {"game": "valheim"})
    status, answer = member.post(started)
    assert (status, answer["data"]["content"]) == (200, "⏳ Starting **valheim**…")
    _wait("RUNNING", lambda: _row(info, guild, "valheim")["state"] == "RUNNING", timeout=90)
    _wait(
        "the up message",
        lambda: any("is up at" in c["json"].get("content", "") for c in _calls(info, started["token"])),
    )
    row = _row(info, guild, "valheim")
    assert _leftovers(info, guild, "valheim") == ([row["instance_id"]], [row["volume_id"]])
    if from_snapshot:
        described = _aws(info, "ec2").describe_volumes(VolumeIds=[row["volume_id"]])["Volumes"][0]
        assert described["SnapshotId"] == from_snapshot

    stopped = member.command("stop", {"game": "valheim"})
    status, answer = member.post(stopped)
    assert answer["data"]["content"] == "⏳ Stopping **valheim**…"
    _wait("STOPPED", lambda: _row(info, guild, "valheim")["state"] == "STOPPED", timeout=90)
    row = _row(info, guild, "valheim")
    assert row.get("snapshot_id") and not row.get("instance_id") and not row.get("volume_id")
    _wait("nothing left", lambda: _leftovers(info, guild, "valheim") == ([], []))
    edits = [c["json"].get("content", "") for c in _calls(info, stopped["token"])]
    assert any(e.startswith("⚪ **valheim** stopped and saved") for e in edits), edits
    snapshot: str = row["snapshot_id"]
    return snapshot

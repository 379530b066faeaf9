"""The game lifecycle as a user meets it: the local stack in a subprocess, signed interactions only,
moto executing the real ASL, and a real `gangway-agent` over real MQTT for the instance it starts.

/newgame → /start → RUNNING → /stop → STOPPED with a snapshot and nothing left → /start from that
snapshot → /backupnow → /stop (retention keeps the manual backup) → /deletegame with its confirmation
(the last snapshot kept) → gone from /games; the progress edits each user saw, in order, from the
Discord stand-in's record. And two members pressing /start at the same moment: one workflow; that game
then stopped and deleted with every snapshot.

Both tests share one stack start (the module-scoped fixture): about 50 s of calls plus 15 s to bring
the stack up and down on a 2-core machine; the life itself spends most of it waiting for agents.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from devstack.discord_user import DiscordUser, Who, snowflake
from tests.stack_runner import stack_aws, stack_table
from tests.test_local_agents import stack as agents_stack  # noqa: F401 - the module-scoped stack fixture

MAIN = "400000000000000001"
_LOG: list[str] = []


@pytest.fixture(scope="module")
def stack(agents_stack: dict[str, Any]) -> dict[str, Any]:  # noqa: F811
    """The stack, its output read on a thread: kept for failure messages, and never left to fill the
    pipe (a stack blocked writing its log stops answering)."""
    out = agents_stack["_proc"].stdout
    threading.Thread(target=lambda: _LOG.extend(out), name="stack-log", daemon=True).start()
    return agents_stack


def _calls(info: dict[str, Any], token: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(info["discord_api_url"] + "/_calls", timeout=5) as resp:
        return [c for c in json.loads(resp.read()) if token in c["path"]]


def _said(info: dict[str, Any], token: str) -> list[str]:
    """What the user saw of one interaction after its first answer: each follow-up or edit's text."""
    return [str(c["json"].get("content", "")) for c in _calls(info, token) if c.get("json")]


def _in_order(said: Sequence[str], phrases: Sequence[str]) -> bool:
    """Whether each phrase appears in `said`, each in a later message than the one before."""
    at = 0
    for phrase in phrases:
        while at < len(said) and phrase not in said[at]:
            at += 1
        if at == len(said):
            return False
        at += 1
    return True


def _wait(
    what: str, check: Callable[[], bool], timeout: float = 60, explain: Callable[[], str] = lambda: ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(
        f"timed out waiting for {what}\n{explain()}\nthe stack's last words:\n" + "".join(_LOG[-40:])
    )


def _story(info: dict[str, Any], guild: str, name: str, token: str) -> Callable[[], str]:
    """What a failure message needs: the row, what the user saw, where the newest executions are."""

    def tell() -> str:
        sfn = stack_aws(info, "stepfunctions")
        lines = [f"row: {_item(info, guild, name)}", f"said: {_said(info, token)}"]
        for machine in sfn.list_state_machines()["stateMachines"]:
            for ex in sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]:
                if f"-{guild}-{name}" not in ex["name"]:
                    continue
                events = sfn.get_execution_history(executionArn=ex["executionArn"])["events"][-6:]
                steps = [
                    e["type"]
                    + str(e.get("taskFailedEventDetails") or e.get("stateEnteredEventDetails", ""))[:200]
                    for e in events
                ]
                lines.append(f"{ex['name']} {ex['status']}: {steps}")
        return "\n".join(lines)

    return tell


def _item(info: dict[str, Any], guild: str, name: str) -> dict[str, Any] | None:
    got = stack_aws(info, "dynamodb").get_item(
        TableName=stack_table(info, "games"),
        Key={"tenant_id": {"S": guild}, "name": {"S": name}},
        ConsistentRead=True,
    )
    item = got.get("Item")
    return {k: next(iter(v.values())) for k, v in item.items()} if item else None


def _row(info: dict[str, Any], guild: str, name: str) -> dict[str, Any]:
    row = _item(info, guild, name)
    assert row is not None, f"{name} has no row"
    return row


def _state(info: dict[str, Any], guild: str, name: str) -> str | None:
    row = _item(info, guild, name)
    return str(row["state"]) if row else None


def _leftovers(info: dict[str, Any], guild: str, name: str) -> tuple[list[str], list[str]]:
    ec2 = stack_aws(info, "ec2")
    tag = [{"Name": "tag:gangway", "Values": [f"{guild}/{name}"]}]
    instances = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=tag)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] not in ("terminated", "shutting-down")
    ]
    return instances, [v["VolumeId"] for v in ec2.describe_volumes(Filters=tag)["Volumes"]]


def _snapshots(info: dict[str, Any], guild: str, name: str) -> dict[str, str]:
    """The game's snapshots in the emulator: id → role tag (`data` or `manual-backup`)."""
    tag = [{"Name": "tag:gangway", "Values": [f"{guild}/{name}"]}]
    return {
        s["SnapshotId"]: {t["Key"]: t["Value"] for t in s.get("Tags", [])}.get("gangway:role", "")
        for s in stack_aws(info, "ec2").describe_snapshots(OwnerIds=["self"], Filters=tag)["Snapshots"]
    }


def _executions(info: dict[str, Any], guild: str, name: str) -> list[str]:
    sfn = stack_aws(info, "stepfunctions")
    machine = next(
        m["stateMachineArn"]
        for m in sfn.list_state_machines()["stateMachines"]
        if m["name"].endswith("start-game")
    )
    return [
        e["name"]
        for e in sfn.list_executions(stateMachineArn=machine)["executions"]
        if f"-{guild}-{name}-" in e["name"]
    ]


def _tenant(info: dict[str, Any]) -> tuple[str, DiscordUser, DiscordUser]:
    """A guild set up through /setup with a main role; its admin and a member with that role."""
    guild = snowflake()
    admin = DiscordUser.from_stack(info, Who(guild_id=guild, user_id=snowflake()))
    member = DiscordUser.from_stack(
        info, Who(guild_id=guild, user_id=snowflake(), role_ids=(MAIN,), permissions=0)
    )
    assert admin.post(admin.command("setup"))[0] == 200
    assert admin.post(admin.component("setup:main", [MAIN]))[0] == 200
    return guild, admin, member


def _newgame(info: dict[str, Any], admin: DiscordUser, guild: str, name: str) -> None:
    """/newgame's modal, submitted; the game exists and is stopped (at once or after its workflow)."""
    status, answer = admin.post(admin.command("newgame", {"name": name}))
    assert (status, answer["type"]) == (200, 9)
    status, answer = admin.post(admin.modal_submit("games:create", {"name": name, "description": "Vikings"}))
    assert status == 200 and f"**{name}**" in answer["data"]["content"], answer
    _wait(f"{name} to exist, stopped", lambda: _state(info, guild, name) == "STOPPED")
    assert _groups(info, guild, name) == [_row(info, guild, name)["security_group_id"]]  # its own group


def _groups(info: dict[str, Any], guild: str, name: str) -> list[str]:
    tag = [{"Name": "tag:gangway", "Values": [f"{guild}/{name}"]}]
    return [g["GroupId"] for g in stack_aws(info, "ec2").describe_security_groups(Filters=tag)["SecurityGroups"]]


def test_a_game_lives_through_start_stop_start_backup_stop_and_delete(stack: dict[str, Any]) -> None:
    guild, admin, member = _tenant(stack)
    _newgame(stack, admin, guild, "valheim")

    _start(stack, member, guild)
    assert _snapshots(stack, guild, "valheim") == {}
    snap1 = _stop(stack, member, guild)
    assert _snapshots(stack, guild, "valheim") == {snap1: "data"}

    _start(stack, member, guild, from_snapshot=snap1)
    manual = _backup(stack, admin, guild)
    # Older data snapshots beyond the plan's retention (3 on the free plan), as many earlier stops leave.
    volume = _row(stack, guild, "valheim")["volume_id"]
    older = {_data_snapshot(stack, guild, volume) for _ in range(3)}
    snap2 = _stop(stack, member, guild)
    left = _snapshots(stack, guild, "valheim")
    assert left.pop(manual) == "manual-backup"  # retention never deletes a manual backup
    # The newest 3 data snapshots stay: the stop's own and two of the older ones (the emulator's start
    # times have whole seconds, so which two is a tie); the first stop's, older than all, is gone.
    assert snap2 in left and len(set(left) & older) == 2 and set(left.values()) == {"data"}, left

    _delete(stack, admin, guild, keeps=snap2)  # the last snapshot stays, alone


def _start(info: dict[str, Any], member: DiscordUser, guild: str, *, from_snapshot: str | None = None) -> str:
    """/start until RUNNING and the up message; returns the interaction token."""
    started = member.command("start", {"game": "valheim"})
    status, answer = member.post(started)
    assert (status, answer["data"]["content"]) == (200, "⏳ Starting **valheim**…")
    story = _story(info, guild, "valheim", started["token"])
    _wait("RUNNING", lambda: _state(info, guild, "valheim") == "RUNNING", timeout=90, explain=story)
    _wait("the up message", lambda: any("is up at" in s for s in _said(info, started["token"])))
    said = _said(info, started["token"])
    assert _in_order(said, ["preparing its disk", "waiting for the server", "is up at"]), said
    assert said[-1].startswith("🟢 **valheim** is up at"), said
    row = _row(info, guild, "valheim")
    assert _leftovers(info, guild, "valheim") == ([row["instance_id"]], [row["volume_id"]])
    if from_snapshot:
        described = stack_aws(info, "ec2").describe_volumes(VolumeIds=[row["volume_id"]])["Volumes"][0]
        assert described["SnapshotId"] == from_snapshot
    token: str = started["token"]
    return token


def _stop(info: dict[str, Any], member: DiscordUser, guild: str, name: str = "valheim") -> str:
    """/stop until STOPPED with nothing left; returns the new snapshot's id."""
    stopped = member.command("stop", {"game": name})
    status, answer = member.post(stopped)
    if "online" in answer["data"]["content"]:
        # The real agent counts peers of the game's ports and SFTP on this (shared) host: someone may be
        # "playing". /stop then asks first, and its danger button runs the same stop.
        assert answer["data"]["components"][0]["components"][0]["custom_id"] == f"games:stop:{name}"
        stopped = member.component(f"games:stop:{name}")
        status, answer = member.post(stopped)
    assert (status, answer["data"]["content"]) == (200, f"⏳ Stopping **{name}**…")
    story = _story(info, guild, name, stopped["token"])
    _wait("STOPPED", lambda: _state(info, guild, name) == "STOPPED", timeout=90, explain=story)
    row = _row(info, guild, name)
    assert row.get("snapshot_id") and not row.get("instance_id") and not row.get("volume_id")
    _wait("nothing left", lambda: _leftovers(info, guild, name) == ([], []))
    _wait("the stopped message", lambda: any("stopped and saved" in s for s in _said(info, stopped["token"])))
    said = _said(info, stopped["token"])
    assert _in_order(said, ["saving the world", "taking a snapshot", "stopped and saved"]), said
    assert said[-1].startswith(f"⚪ **{name}** stopped and saved (snapshot `{row['snapshot_id']}`)"), said
    snapshot: str = row["snapshot_id"]
    return snapshot


def _backup(info: dict[str, Any], admin: DiscordUser, guild: str) -> str:
    """/backupnow of the running game: the real agent saves, a manual snapshot completes, the game keeps
    running. Returns the snapshot's id."""
    asked = admin.command("backupnow", {"game": "valheim"})
    status, answer = admin.post(asked)
    assert (status, answer["data"]["content"]) == (200, "⏳ Backing up **valheim**…")
    _wait(
        "the backed-up message",
        lambda: any("is backed up" in s for s in _said(info, asked["token"])),
        explain=_story(info, guild, "valheim", asked["token"]),
    )
    said = _said(info, asked["token"])
    assert _in_order(said, ["saving the world", "taking a snapshot", "💾 **valheim** is backed up"]), said
    assert "did not confirm a save" not in said[-1]  # the agent answered game.save
    [manual] = [s for s, role in _snapshots(info, guild, "valheim").items() if role == "manual-backup"]
    assert f"`{manual}`" in said[-1]
    row = _row(info, guild, "valheim")
    assert row["state"] == "RUNNING" and not row.get("backup")
    snap = stack_aws(info, "ec2").describe_snapshots(SnapshotIds=[manual])["Snapshots"][0]
    assert snap["State"] == "completed" and snap["VolumeId"] == row["volume_id"]
    return manual


def _data_snapshot(info: dict[str, Any], guild: str, volume: str) -> str:
    from chalicelib.instances import tags_for

    tags = tags_for(guild, "valheim", "data")  # as gangway tags a data snapshot
    made = stack_aws(info, "ec2").create_snapshot(
        VolumeId=volume, TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}]
    )
    snapshot: str = made["SnapshotId"]
    return snapshot


def _delete(
    info: dict[str, Any], admin: DiscordUser, guild: str, *, keeps: str | None, name: str = "valheim"
) -> None:
    """/deletegame asks first (ephemeral, two danger buttons); the plain one keeps the last snapshot
    (`keeps`), the other (`keeps=None`) deletes every snapshot too."""
    status, answer = admin.post(admin.command("deletegame", {"game": name}))
    assert status == 200 and answer["data"]["flags"] == 64
    buttons = answer["data"]["components"][0]["components"]
    assert [b["custom_id"] for b in buttons] == [f"games:delete:{name}", f"games:delete:{name}:all"]
    assert _state(info, guild, name) == "STOPPED"  # asking changed nothing
    clicked = admin.component(buttons[0 if keeps else 1]["custom_id"])
    status, answer = admin.post(clicked)
    every = "" if keeps else " and every snapshot"
    assert (status, answer["type"], answer["data"]["content"]) == (200, 7, f"⏳ Deleting **{name}**{every}…")
    _wait(
        "the game to go",
        lambda: _item(info, guild, name) is None,
        explain=_story(info, guild, name, clicked["token"]),
    )
    _wait("the deleted message", lambda: any("Deleted" in s for s in _said(info, clicked["token"])))
    said = _said(info, clicked["token"])
    last = f"🗑️ Deleted **{name}**" + (f". Its last snapshot `{keeps}`" if keeps else " and all its snapshots")
    assert _in_order(said, ["removing", last]), said
    assert _snapshots(info, guild, name) == ({keeps: "data"} if keeps else {})
    assert _leftovers(info, guild, name) == ([], [])
    assert _groups(info, guild, name) == []
    _, answer = admin.post(admin.command("games", {"game": name}))
    assert "does not exist" in answer["data"]["content"]
    _, answer = admin.post(admin.command("games"))
    assert name not in json.dumps(answer["data"])


def test_two_members_pressing_start_at_once_start_one_workflow(stack: dict[str, Any]) -> None:
    guild, admin, member = _tenant(stack)
    other = DiscordUser.from_stack(
        stack, Who(guild_id=guild, user_id=snowflake(), role_ids=(MAIN,), permissions=0)
    )
    _newgame(stack, admin, guild, "factorio")
    presses = [u.command("start", {"game": "factorio"}) for u in (member, other)]
    signed = [(u, json.dumps(p).encode()) for u, p in zip((member, other), presses, strict=True)]
    gate = threading.Barrier(len(signed))
    answers: list[tuple[int, Any]] = [(0, None)] * len(signed)

    def press(i: int) -> None:
        user, body = signed[i]
        headers = user.sign(body)
        gate.wait(timeout=10)
        answers[i] = user.post(body, headers)

    threads = [threading.Thread(target=press, args=(i,)) for i in range(len(signed))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert [s for s, _ in answers] == [200, 200]
    said = [str(a["data"]["content"]) for _, a in answers]
    won = [s for s in said if s == "⏳ Starting **factorio**…"]
    lost = [s for s in said if s not in won]
    assert len(won) == 1 and len(lost) == 1, said
    assert "factorio" in lost[0] and "is starting" in lost[0] and "can't" in lost[0], said
    _wait(
        "RUNNING",
        lambda: _state(stack, guild, "factorio") == "RUNNING",
        timeout=90,
        explain=_story(stack, guild, "factorio", presses[0]["token"]),
    )
    assert len(_executions(stack, guild, "factorio")) == 1
    instances, volumes = _leftovers(stack, guild, "factorio")
    assert len(instances) == 1 and len(volumes) == 1
    # The one start ran to the end; the game then goes for good, every snapshot with it when asked.
    _stop(stack, member, guild, "factorio")
    _delete(stack, admin, guild, keeps=None, name="factorio")

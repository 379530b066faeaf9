"""Agents in the local stack, end to end: an instance in the emulator gets a real `gangway-agent`, whose
`ready` travels MQTT → bridge → intake queue → agent_intake → agent-events queue → the app's handler,
which answers on `cmd`.

The stack runs in a subprocess and is driven through stack.json, as a person would drive it. Needs
Mosquitto (skipped without it, failed under CI=true) and the agent package (awsiotsdk).
"""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.discord_user import DiscordUser, Who, snowflake
from tests.access_helpers import Subscriber, require_program
from tests.stack_runner import running_stack, stack_aws, stack_table

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.stack
IMAGE = "ami-12c6146b"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require_program("mosquitto", "/usr/sbin/mosquitto")
    if importlib.util.find_spec("gangway_agent") is None:
        require_program("gangway-agent")  # the same skip-or-fail rule: the agent package is not installed
    with running_stack(tmp_path_factory.mktemp("agents-stack")) as info:
        yield info


def _game_with_grant(stack: dict[str, Any], name: str, address: str) -> str:
    """A tenant (through /setup), a game row and one live grant, as issue 4 and 5 leave them."""
    guild = snowflake()
    admin = DiscordUser.from_stack(stack, Who(guild_id=guild, user_id=snowflake()))
    assert admin.post(admin.command("setup"))[0] == 200
    now = int(time.time())
    dynamodb = stack_aws(stack, "dynamodb")
    game = {"tenant_id": guild, "name": name, "description": "", "state": "RUNNING", "created_by": "1"}
    item = {k: {"S": v} for k, v in game.items()}
    item.update({k: {"N": str(now)} for k in ("created_at", "updated_at")} | {"version": {"N": "1"}})
    dynamodb.put_item(TableName=stack_table(stack, "games"), Item=item)
    grant = {"tenant_id": guild, "address": address, "kind": "member", "owner": "user#1", "shard": "grant"}
    row = {k: {"S": v} for k, v in grant.items()}
    row.update({"granted_at": {"N": str(now)}, "expires_at": {"N": str(now + 3600)}})
    dynamodb.put_item(TableName=stack_table(stack, "grants"), Item=row)
    return guild


def _run_instance(stack: dict[str, Any], tenant: str, game: str, user_data: str = "") -> str:
    tags = [{"Key": "gangway:tenant", "Value": tenant}, {"Key": "gangway:game", "Value": game}]
    reply = stack_aws(stack, "ec2").run_instances(
        ImageId=IMAGE,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        UserData=user_data,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    instance_id: str = reply["Instances"][0]["InstanceId"]
    return instance_id


def _agent_pids(config: Path) -> list[int]:
    """Live processes started with this agent config (the stack's child, found through /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(config).encode() in argv and state != "Z":
            pids.append(int(entry.name))
    return pids


def _wait(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _until(
    sub: Subscriber, match: Callable[[str, dict[str, Any]], bool], timeout: float = 20.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        topic, msg = sub.next(timeout=max(0.1, deadline - time.monotonic()))
        if match(topic, msg):
            return msg


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_an_instance_gets_an_agent_whose_ready_brings_the_full_firewall_set(stack: dict[str, Any]) -> None:
    from paho.mqtt import publish

    tenant = _game_with_grant(stack, "valheim", "198.51.100.23")
    host, port = stack["mqtt_url"].removeprefix("mqtt://").split(":")
    cmd = Subscriber(host, int(port), f"gangway/{tenant}/valheim/cmd")
    evt = Subscriber(host, int(port), f"gangway/{tenant}/valheim/evt")
    try:
        instance = _run_instance(stack, tenant, "valheim")
        config = stack["_state"] / "agents" / instance / "agent.json"
        _wait("the agent process", lambda: bool(_agent_pids(config)), timeout=10)
        ready = _until(evt, lambda _t, m: m["type"] == "ready")
        assert set(ready["body"]) == {"version", "game_running"}

        # The app's handler answered the agent's ready through the bridge and the queue.
        sync = _until(cmd, lambda _t, m: m["type"] == "firewall.sync")
        assert sync["body"]["mode"] == "full"
        assert [g["address"] for g in sync["body"]["grants"]] == ["198.51.100.23"]
        applied = _until(evt, lambda _t, m: m["id"] == sync["id"])
        if json.loads(config.read_text())["firewall"]["enabled"]:  # root with nft: a real nftables table
            assert applied["type"] == "firewall.sync.reply" and applied["body"]["v4"] == 1, applied
        else:
            assert applied["type"] == "error" and applied["body"]["code"] == "unavailable", applied

        # The agent answers requests on its topic and runs the fake game on its port.
        request_id = uuid.uuid4().hex
        request = json.dumps({"id": request_id, "type": "status", "body": {}})
        publish.single(f"gangway/{tenant}/valheim/cmd", request, qos=1, hostname=host, port=int(port))
        status = _until(evt, lambda _t, m: m["id"] == request_id)
        assert status["type"] == "status.reply" and status["body"]["game"]["running"] is True
        game_port = json.loads(config.read_text())["launch"]["ports"]["tcp"][0]
        assert _port_open(game_port)

        stack_aws(stack, "ec2").terminate_instances(InstanceIds=[instance])
        _wait("the agent to end", lambda: not _agent_pids(config), timeout=20)
        assert not _port_open(game_port)
        assert "game started" in (config.parent / "agent.log").read_text()
    finally:
        cmd.close()
        evt.close()


def test_user_data_without_autostart_gives_an_agent_that_waits_and_reads_its_disk(
    stack: dict[str, Any],
) -> None:
    """EditGame and preload "read" start the agent without the game; locally its disk is a sparse file."""
    from paho.mqtt import publish

    tenant = _game_with_grant(stack, "factorio", "198.51.100.24")
    host, port = stack["mqtt_url"].removeprefix("mqtt://").split(":")
    evt = Subscriber(host, int(port), f"gangway/{tenant}/factorio/evt")
    script = "#!/bin/bash\ncat > /etc/gangway/agent.toml <<'EOF'\n[launch]\nautostart = false\nEOF\n"
    try:
        instance = _run_instance(stack, tenant, "factorio", user_data=script)
        config = stack["_state"] / "agents" / instance / "agent.json"
        ready = _until(evt, lambda _t, m: m["type"] == "ready")
        assert ready["body"]["game_running"] is False
        assert json.loads(config.read_text())["launch"]["autostart"] is False

        def ask(kind: str, body: dict[str, Any]) -> str:
            request_id = uuid.uuid4().hex
            message = json.dumps({"id": request_id, "type": kind, "body": body})
            publish.single(f"gangway/{tenant}/factorio/cmd", message, qos=1, hostname=host, port=int(port))
            return request_id

        preload = ask("disk.preload", {"block_size": 1 << 20})
        assert _until(evt, lambda _t, m: m["id"] == preload)["type"] == "disk.preload.reply"
        done = _until(evt, lambda _t, m: m["type"] == "preload.done")
        assert done["body"]["bytes_read"] == 32 * 1024 * 1024
        started = ask("game.start", {})
        reply = _until(evt, lambda _t, m: m["id"] == started)
        assert reply["type"] == "game.start.reply" and reply["body"]["started"] is True
        stack_aws(stack, "ec2").terminate_instances(InstanceIds=[instance])
        _wait("the agent to end", lambda: not _agent_pids(config), timeout=20)
    finally:
        evt.close()


def test_untagged_or_stopped_instances_get_no_agent_and_stopping_the_stack_ends_every_agent(
    stack: dict[str, Any],
) -> None:
    # Last in the module: it stops the stack.
    ec2 = stack_aws(stack, "ec2")
    untagged = ec2.run_instances(ImageId=IMAGE, InstanceType="t3.micro", MinCount=1, MaxCount=1)
    stopped = _run_instance(stack, snowflake(), "stopped-game")
    ec2.stop_instances(InstanceIds=[stopped])
    live = _run_instance(stack, snowflake(), "left-running")
    config = stack["_state"] / "agents" / live / "agent.json"
    _wait("the agent process", lambda: bool(_agent_pids(config)), timeout=10)
    agents = stack["_state"] / "agents"
    assert not (agents / untagged["Instances"][0]["InstanceId"]).exists()
    _wait("the stopped instance's agent to end", lambda: not _agent_pids(agents / stopped / "agent.json"))

    proc: subprocess.Popen[str] = stack["_proc"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert not _agent_pids(config)


"""The local stack as a user meets it: `gangway run` in a subprocess, driven only through stack.json."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.discord_user import DiscordUser, Who, snowflake
from devstack.iam import create_customer_role
from tests.stack_runner import clean_env, running_stack, stack_aws

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with running_stack(tmp_path_factory.mktemp("stack")) as info:
        yield info


def _calls(stack: dict[str, Any]) -> list[dict[str, Any]]:
    with urllib.request.urlopen(stack["discord_api_url"] + "/_calls", timeout=5) as resp:
        calls: list[dict[str, Any]] = json.loads(resp.read())
        return calls


def test_stack_json_names_every_part(stack: dict[str, Any]) -> None:
    for key in (
        "api_url",
        "discord_api_url",
        "site_url",
        "mqtt_url",
        "aws_endpoint_url",
        "application_id",
        "public_key",
        "signing_key",
    ):
        assert key in stack
    with urllib.request.urlopen(stack["site_url"] + "/", timeout=5) as resp:
        assert b"gangway" in resp.read()


def test_a_user_sets_up_a_guild_and_gets_answers_and_a_deferred_follow_up(stack: dict[str, Any]) -> None:
    guild = snowflake()
    admin = DiscordUser.from_stack(stack, Who(guild_id=guild, user_id=snowflake()))
    assert admin.post({"type": 1})[1] == {"type": 1}
    forged = json.dumps({"type": 1}).encode()
    assert admin.post(forged, {**admin.sign(forged), "X-Signature-Ed25519": "ab" * 64})[0] == 401

    status, answer = admin.post(admin.command("setup"))
    assert status == 200 and answer["type"] == 4
    status, answer = admin.post(admin.component("setup:main", ["400000000000000001"]))
    assert answer["type"] == 7

    status, answer = admin.post(admin.command("help"))
    assert (status, answer["type"]) == (200, 4)

    member = DiscordUser.from_stack(
        stack, Who(guild_id=guild, user_id=snowflake(), role_ids=("400000000000000001",), permissions=0)
    )
    status, answer = member.post(member.command("games"))
    assert status == 200 and "no games yet" in answer["data"]["content"]

    payload = admin.command("status")
    sent = time.monotonic()
    status, answer = admin.post(payload)
    assert (status, answer["type"]) == (200, 5)
    while time.monotonic() - sent < 5:
        follow = [c for c in _calls(stack) if payload["token"] in c["path"]]
        if follow:
            break
        time.sleep(0.05)
    assert follow, "no follow-up within 5 s"
    assert follow[0]["method"] == "PATCH" and follow[0]["auth"] is None
    assert "gangway is working here" in json.dumps(follow[0]["json"])


def _follow_up(stack: dict[str, Any], token: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        calls = [c for c in _calls(stack) if token in c["path"]]
        if calls:
            return calls[-1]
        time.sleep(0.05)
    raise AssertionError("no follow-up within 10 s")


def test_onboarding_a_customer_account_end_to_end(stack: dict[str, Any]) -> None:
    """/setup → Connect → role ARN form → Verify, against a role in the stack's emulator."""
    admin = DiscordUser.from_stack(stack, Who(guild_id=snowflake(), user_id=snowflake()))
    admin.post(admin.command("setup"))
    _, answer = admin.post(admin.component("setup:connect"))
    external_id = answer["data"]["content"].split("ExternalId `", 1)[1].split("`", 1)[0]
    template = answer["data"]["components"][0]["components"][1]["url"]
    with urllib.request.urlopen(template, timeout=5) as resp:
        assert b"sts:ExternalId" in resp.read()

    # The role as the customer's stack makes it (trust with the ExternalId, the template's policies).
    arn = create_customer_role(stack_aws(stack, "iam"), f"gangway-access-Role-{snowflake()}", external_id)
    _, answer = admin.post(admin.modal_submit("setup:role", {"role_arn": arn, "region": "eu-central-1"}))
    assert answer["type"] == 7
    payload = admin.component("setup:verify")
    assert admin.post(payload)[1] == {"type": 6}
    edit = _follow_up(stack, payload["token"])
    assert "Your AWS account is connected" in json.dumps(edit["json"])
    _, answer = admin.post(admin.command("setup"))
    assert "Your account `123456789012`, region `eu-central-1`" in json.dumps(answer)


def _gangway(stack: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "devstack", "--state-dir", str(stack["_state"]), *args]
    return subprocess.run(
        command, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_plays_a_discord_user_and_prints_the_follow_up(stack: dict[str, Any]) -> None:
    # A guild that never ran /setup is pointed to it (inline, no follow-up needed).
    run = _gangway(stack, "discord", "/status", "--guild", snowflake())
    assert run.returncode == 0, run.stderr
    assert "/setup" in run.stdout
    assert _gangway(stack, "discord", "/setup").returncode == 0
    run = _gangway(stack, "discord", "/status")
    assert run.returncode == 0, run.stderr
    assert '"follow_ups"' in run.stdout and "<token>" in run.stdout


def test_ctrl_c_stops_every_part(stack: dict[str, Any]) -> None:
    proc: subprocess.Popen[str] = stack["_proc"]
    ports = [
        int(stack[k].rsplit(":", 1)[1])
        for k in ("api_url", "discord_api_url", "site_url", "aws_endpoint_url", "mqtt_url")
        if stack.get(k)
    ]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    assert not (stack["_state"] / "stack.json").exists()
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"

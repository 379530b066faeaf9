"""Admin tools end to end through signed interactions: /setdescription, /openport, /closeport, /files,
/terminal, /extenddisk and /ip, on the embedded emulator, with the agent's part played over a real
MQTT broker (requests read from `cmd`, replies sent through the agent-events path)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from botocore.awsrequest import AWSResponse

from chalicelib.access import Grant, GrantStore, LinkKind
from chalicelib.errors import ValidationError
from chalicelib.games import Game, GameRecord, GameState
from chalicelib.jobs.models import InteractionRecord
from chalicelib.lifecycle.tools import (
    SEALED_REPLY_SECONDS,
    AgentSilent,
    ask_and_wait,
    close_ports,
    open_ports,
    open_reply,
    parse_ports,
    port_numbers,
    seal_reply,
)
from chalicelib.wiring import container
from devstack.discord_user import Who, snowflake
from tests.access_helpers import Broker, Subscriber
from tests.agent_host import agent_host
from tests.helpers import Harness
from tests.lifecycle_helpers import MAIN, create_game, ec2_of, game_row, start_until_running

EPHEMERAL = 64


def _with_ports(game: Game, *ports: str) -> Game:
    return dataclasses.replace(game, settings=dataclasses.replace(game.settings, ports=ports))


@pytest.fixture
def tenant(harness: Harness) -> Iterator[str]:
    """A set-up guild (as test_lifecycle's), whose admin is the harness's user."""
    harness.command("setup")
    harness.component("setup:main", [MAIN])
    yield harness.user.who.guild_id or ""


class FakeAgent:
    """Answers one request type read from the real broker, as the agent would: its reply (same id)
    goes through the agent-events Lambda's path."""

    def __init__(self, sub: Subscriber, kind: str, reply: dict[str, Any], reply_type: str = "") -> None:
        self.sub, self.kind, self.reply = sub, kind, reply
        self.reply_type = reply_type or f"{kind}.reply"
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import queue

        while not self._stop.is_set():
            try:
                topic, msg = self.sub.next(timeout=0.2)
            except queue.Empty:
                continue
            if msg["type"] != self.kind:
                continue
            self.requests.append((topic, msg))
            evt = {
                "id": msg["id"],
                "type": self.reply_type,
                "body": self.reply,
                "topic": topic.removesuffix("/cmd") + "/evt",
            }
            container().agent_events.run(json.dumps(evt))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _admin_reply(harness: Harness, name: str, **options: Any) -> dict[str, Any]:
    _, answer = harness.command(name, **options)
    assert answer["type"] == 4 and answer["data"]["flags"] & EPHEMERAL, answer
    data: dict[str, Any] = answer["data"]
    return data


def _deferred(harness: Harness, name: str, **options: Any) -> dict[str, Any]:
    """Send a deferred command, run its job, and return the final edit of its reply."""
    payload, answer = harness.command(name, **options)
    assert answer["type"] == 5 and answer["data"]["flags"] & EPHEMERAL, answer
    harness.run_jobs_for(payload["token"], wait=40)
    edit: dict[str, Any] = harness.calls_for(payload["token"])[-1]["json"]
    return edit


# -- /setdescription -------------------------------------------------------------------------------


def test_setdescription_changes_it_in_any_state_privately(harness: Harness, tenant: str) -> None:
    create_game(harness, "valheim")
    data = _admin_reply(harness, "setdescription", game="valheim", description="  Vikings   on ice ")
    assert data["content"] == "✅ Updated the description of **valheim**: Vikings on ice"
    assert game_row(tenant, "valheim").settings.description == "Vikings on ice"
    GameRecord.get(tenant, "valheim").update(actions=[GameRecord.state.set("STOPPING")])
    _admin_reply(harness, "setdescription", game="valheim", description="Frozen")
    assert game_row(tenant, "valheim").settings.description == "Frozen"

    data = _admin_reply(harness, "setdescription", game="valheim", description="   ")
    assert "some words" in data["content"] and game_row(tenant, "valheim").settings.description == "Frozen"
    data = _admin_reply(harness, "setdescription", game="nosuch", description="x")
    assert "does not exist" in data["content"]
    member = Who(guild_id=tenant, user_id=snowflake(), permissions=0)
    _, answer = harness.command("setdescription", who=member, game="valheim", description="mine")
    assert (
        "admin" in answer["data"]["content"].lower()
        and game_row(tenant, "valheim").settings.description == "Frozen"
    )


# -- /openport and /closeport ------------------------------------------------------------------------


def test_port_ranges_are_parsed_and_normalised() -> None:
    assert [str(r) for r in parse_ports("UDP:2458-2456, tcp:27015")] == ["udp:2456-2458", "tcp:27015"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("27015", "isn't a valid port range"),
        ("tcp:", "isn't a valid port range"),
        ("tcp:1-2-3", "isn't a valid port range"),
        ("icmp:2000", "`icmp` isn't a valid protocol"),
        ("tcp:80", "Invalid port 80"),
        ("udp:2000-70000", "Invalid port 70000"),
    ],
)
def test_bad_port_ranges_get_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_ports(text)


def test_openport_and_closeport_keep_a_normalised_list_on_a_stopped_game(
    harness: Harness, tenant: str
) -> None:
    create_game(harness, "valheim")
    # The record changes at once; the game's security group follows in a job (it calls AWS).
    data = _deferred(harness, "openport", game="valheim", ports="udp:2458-2456 tcp:27015")
    assert "Opened udp:2456-2458, tcp:27015" in data["content"] and "next starts" in data["content"]
    assert "security group" in data["content"]
    assert game_row(tenant, "valheim").settings.ports == ("tcp:27015", "udp:2456-2458")

    _deferred(harness, "openport", game="valheim", ports="udp:2459")
    assert game_row(tenant, "valheim").settings.ports == ("tcp:27015", "udp:2456-2459")
    data = _deferred(harness, "openport", game="valheim", ports="udp:2457")
    assert "already open" in data["content"]

    _deferred(harness, "closeport", game="valheim", ports="udp:2457")
    assert game_row(tenant, "valheim").settings.ports == ("tcp:27015", "udp:2456", "udp:2458-2459")
    data = _admin_reply(harness, "closeport", game="valheim", ports="tcp:7777")
    assert "None of those ports is open" in data["content"]

    before = game_row(tenant, "valheim")
    for bad in ("tcp:80", "icmp:3000", "27015"):
        data = _admin_reply(harness, "openport", game="valheim", ports=bad)
        assert data["content"].startswith("⚠️")
    assert game_row(tenant, "valheim").settings.ports == before.settings.ports  # bad input changes nothing


def test_a_game_has_at_most_twenty_ranges() -> None:
    from chalicelib.games import Game

    game = Game("1", "g", GameState.STOPPED, 0, 0, 1)
    many = open_ports(game, parse_ports(" ".join(f"tcp:{2000 + 2 * n}" for n in range(20))))
    assert len(many) == 20
    with pytest.raises(ValidationError, match="at most 20"):
        open_ports(_with_ports(game, *many), parse_ports("udp:9000"))
    assert close_ports(_with_ports(game, "tcp:2000-2100"), parse_ports("tcp:1500-2050")) == ["tcp:2051-2100"]
    with pytest.raises(ValidationError, match="at most 200 ports"):
        open_ports(game, parse_ports("udp:10000-10200"))


def test_the_launch_config_gets_port_numbers() -> None:
    assert port_numbers(["tcp:27015", "udp:2456-2458", "tcp:27020-27021"]) == (
        (27015, 27020, 27021),
        (2456, 2457, 2458),
    )
    assert port_numbers([]) == ((), ())


def test_openport_on_a_running_game_is_filtered_by_its_agent_at_once_and_says_who_may_connect(
    harness: Harness, tenant: str, agent_link: Subscriber, mqtt_broker: Broker, tmp_path: Path
) -> None:
    create_game(harness, "rust")
    start_until_running(harness, tenant, "rust")
    now = int(time.time())
    GrantStore().put(Grant(tenant, "198.18.9.1", LinkKind.MEMBER, "user#1", now, now + 3600))
    with agent_host(tmp_path, mqtt_broker, tenant, "rust") as host:
        _until(lambda: host.addresses() == {"198.18.9.1"})  # its `ready` brought the grants
        assert 28015 not in host.firewall.ports()[1]
        agent_link.drain()
        data = _deferred(harness, "openport", game="rust", ports="udp:28015")
        # the agent's chain filters the new port before the reply says so (and before the group opens it)
        assert 28015 in host.firewall.ports()[1]
        table = subprocess.run(
            ["ip", "netns", "exec", host.ns, "nft", "list", "table", "inet", "gangway"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "28015" in table
        content = data["content"]
        assert "✅ Opened udp:28015 on **rust**." in content
        assert "**rust** is running: its firewall filters" in content and "`udp:28015`" in content
        assert "open only to the **1** IP address let in" in content and "everyone else is refused" in content
        assert "security group" in content and "next start" not in content
        [request] = [m for _, m in agent_link.drain() if m["id"].startswith("tool-firewall-")]
        assert request["body"]["mode"] == "full" and 28015 in request["body"]["ports"]["udp"]


def test_openport_on_a_running_game_whose_agent_is_silent_opens_nothing_and_says_so(
    harness: Harness, tenant: str, agent_link: Subscriber
) -> None:
    create_game(harness, "ark")
    start_until_running(harness, tenant, "ark")  # no agent answers on this game's topic
    data = _deferred(harness, "openport", game="ark", ports="udp:27777")
    content = data["content"]
    assert "**ark** is running, but its firewall didn't confirm the new port list" in content
    assert "security group was left as it was: the new ports stay closed to everyone" in content
    group_id = game_row(tenant, "ark").resources.security_group_id
    [group] = container().client("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    assert 27777 not in {p.get("FromPort") for p in group["IpPermissions"]}


def _until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# -- /files ------------------------------------------------------------------------------------------

SFTP_REPLY = {
    "uri": "sftp://gangway@203.0.113.10:2222/",
    "username": "gangway",
    "password": "p@ss/word",
    "host_key_sha256": "SHA256:2Yb0n3eQm0qv1v6YtqQ0mX8xFqJrJ8m2d5m7oQe3b1Q",
    "expires_at": 1795000900.0,
}


def test_files_asks_the_agent_and_shows_a_one_time_login_privately(
    harness: Harness, tenant: str, agent_link: Subscriber
) -> None:
    create_game(harness, "valheim")
    data = _admin_reply(harness, "files", game="valheim")
    assert "is stopped" in data["content"] and "/start" in data["content"]

    start_until_running(harness, tenant)
    agent_link.drain()
    agent = FakeAgent(agent_link, "sftp.open", SFTP_REPLY)
    try:
        edit = _deferred(harness, "files", game="valheim")
    finally:
        agent.stop()
    [(topic, request)] = agent.requests
    assert topic == f"gangway/{tenant}/valheim/cmd"
    assert request["body"] == {"ttl_s": 900, "host": game_row(tenant, "valheim").resources.address}
    embed = edit["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Address"] == "`sftp://gangway@203.0.113.10:2222/`"
    assert fields["Password"] == "`p@ss/word`" and "SHA256:2Yb0n3" in fields["Host key (SHA256)"]
    assert "p%40ss%2Fword@203.0.113.10:2222" in fields["One-click (WinSCP)"]
    assert "<t:1795000900:R>" in embed["description"] and "WinSCP" in embed["description"]
    assert game_row(tenant, "valheim").wait.agent_reply is None  # the password does not stay on the row


def test_files_says_so_when_the_agent_refuses_or_is_silent(
    harness: Harness, tenant: str, agent_link: Subscriber
) -> None:
    create_game(harness, "ark")
    start_until_running(harness, tenant, "ark")
    agent = FakeAgent(agent_link, "sftp.open", {"code": "unavailable", "message": "sftp is off"}, "error")
    try:
        edit = _deferred(harness, "files", game="ark")
    finally:
        agent.stop()
    assert "couldn't do that: sftp is off" in edit["content"]

    game = game_row(tenant, "ark")
    with pytest.raises(AgentSilent, match="didn't answer within 1 seconds"):
        ask_and_wait(container().lifecycle, game, "sftp.open", {}, request_id="tool-sftp-silent", wait=1)


def test_a_stale_or_foreign_reply_is_not_taken_for_ours(harness: Harness, tenant: str) -> None:
    create_game(harness, "dayz")
    for event_id in ("someone-elses", None):
        evt = {
            "id": event_id,
            "type": "sftp.open.reply",
            "body": SFTP_REPLY,
            "topic": f"gangway/{tenant}/dayz/evt",
        }
        container().agent_events.run(json.dumps(evt))
    assert game_row(tenant, "dayz").wait.agent_reply is None


def test_a_reply_on_the_row_is_sealed_to_its_request_and_goes_stale() -> None:
    stored = seal_reply("tool-sftp-1-secretpart", "sftp.open.reply", SFTP_REPLY, now=1000)
    assert "p@ss/word" not in stored and "secretpart" not in stored
    assert open_reply("tool-sftp-1-secretpart", stored, now=1010) == {
        "type": "sftp.open.reply",
        "body": SFTP_REPLY,
    }
    assert open_reply("tool-sftp-1-other", stored, now=1010) is None
    assert open_reply("tool-sftp-1-secretpart", stored, now=1000 + SEALED_REPLY_SECONDS + 1) is None
    assert open_reply("tool-sftp-1-secretpart", "not json", now=1010) is None


def test_files_password_is_delivered_once_and_never_written_to_a_table(
    harness: Harness, tenant: str, agent_link: Subscriber
) -> None:
    """Neither the game row nor the interactions ledger ever holds the password; a redelivery after a
    failed Discord call says to ask again instead of showing it from a stored copy."""
    create_game(harness, "valheim")
    start_until_running(harness, tenant)
    agent_link.drain()
    written: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        written.append(str(params.get("body", "")))

    clients = {
        id(c): c
        for c in (
            GameRecord._get_connection().connection.client,
            InteractionRecord._get_connection().connection.client,
        )
    }
    for client in clients.values():
        client.meta.events.register("before-call.dynamodb.*", record)
    agent = FakeAgent(agent_link, "sftp.open", SFTP_REPLY)
    try:
        payload, _ = harness.command("files", game="valheim")
        harness.standin.fault(method="PATCH", path_contains=payload["token"], status=502, times=1)
        [message] = [m for m in harness.receive_jobs(wait=5) if payload["token"] in m["Body"]]
        with pytest.raises(Exception, match="502"):
            harness.deliver(message, delete=False)  # Discord failed: SQS will deliver it again
        harness.deliver(message)
    finally:
        agent.stop()
        for client in clients.values():
            client.meta.events.unregister("before-call.dynamodb.*", record)
    assert written and not [w for w in written if "p@ss" in w or "p%40ss" in w]
    first, second = [c for c in harness.calls_for(payload["token"]) if c["method"] == "PATCH"]
    assert first["status"] == 502 and "p@ss/word" in json.dumps(first["json"])
    assert "p@ss" not in json.dumps(second["json"]) and "Run the command again" in second["json"]["content"]


# -- /terminal ---------------------------------------------------------------------------------------


class _Federation(BaseHTTPRequestHandler):
    """The console federation endpoint's stand-in: a sign-in token for any session."""

    seen: ClassVar[list[dict[str, list[str]]]] = []

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        type(self).seen.append(query)
        body = json.dumps({"SigninToken": "signin-token-123"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        return


@pytest.fixture
def federation(emulator: object) -> Iterator[list[dict[str, list[str]]]]:
    """A loopback federation endpoint, and the app's services pointed at it (as SIGNIN_URL does)."""
    server = HTTPServer(("127.0.0.1", 0), _Federation)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    c = container()
    saved, saved_gateways = c.services, c.gateways
    url = f"http://127.0.0.1:{server.server_port}/federation"
    settings = dataclasses.replace(saved.settings, signin_url=url)
    c.__dict__["services"] = dataclasses.replace(saved, settings=settings)
    c.__dict__["gateways"] = dataclasses.replace(saved_gateways, settings=settings)
    c.__dict__.pop("job_runner", None)
    _Federation.seen = []
    yield _Federation.seen
    c.__dict__["services"] = saved
    c.__dict__["gateways"] = saved_gateways
    c.__dict__.pop("job_runner", None)
    server.shutdown()


@pytest.fixture
def assumed() -> Iterator[list[dict[str, Any]]]:
    """What the app asks STS AssumeRole for (read at the botocore seam of the broker's clients)."""
    calls: list[dict[str, Any]] = []

    def hook(client: Any) -> None:
        client.meta.events.register(
            "provide-client-params.sts.AssumeRole", lambda params, **_: calls.append(params)
        )

    container().broker.hooks.append(hook)
    yield calls
    container().broker.hooks.remove(hook)


def test_terminal_gives_a_private_short_lived_link_scoped_to_the_instance(
    harness: Harness, tenant: str, federation: list[dict[str, list[str]]], assumed: list[dict[str, Any]]
) -> None:
    create_game(harness, "valheim")
    data = _admin_reply(harness, "terminal", game="valheim")
    assert "is stopped" in data["content"]
    start_until_running(harness, tenant)
    instance = game_row(tenant, "valheim").resources.instance_id
    user = harness.user.who.user_id

    edit = _deferred(harness, "terminal", game="valheim")
    [call] = assumed
    assert call["RoleArn"].endswith(":role/gangway-terminal") and call["RoleSessionName"] == f"discord-{user}"
    assert "DurationSeconds" not in call  # chained role credentials: the federation endpoint refuses them
    policy = json.loads(call["Policy"])
    [statement] = policy["Statement"]
    assert statement["Action"] == "ssm:StartSession"
    assert statement["Resource"][0].endswith(f":instance/{instance}")
    assert statement["Resource"][1].endswith(":document/SSM-SessionManagerRunShell")

    [query] = federation
    assert query["Action"] == ["getSigninToken"] and "SessionDuration" not in query
    assert set(json.loads(query["Session"][0])) == {"sessionId", "sessionKey", "sessionToken"}
    description = edit["embeds"][0]["description"]
    link = description.split("](", 1)[1].split(")", 1)[0]
    login = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
    assert login["Action"] == ["login"] and login["SigninToken"] == ["signin-token-123"]
    assert login["Destination"][0].endswith(f"/systems-manager/session-manager/{instance}?region=us-east-1")
    assert "<t:" in description and "Don't share it" in description


# -- /extenddisk -------------------------------------------------------------------------------------


def test_extenddisk_of_a_stopped_game_applies_at_its_next_start(harness: Harness, tenant: str) -> None:
    create_game(harness, "valheim")
    data = _admin_reply(harness, "extenddisk", game="valheim", size_gb=20)
    assert "gets a 20 GB disk (was 12 GB) from its next start" in data["content"]
    assert game_row(tenant, "valheim").settings.disk_gb == 20
    data = _admin_reply(harness, "extenddisk", game="valheim", size_gb=20)
    assert "already 20 GB" in data["content"]
    data = _admin_reply(harness, "extenddisk", game="valheim", size_gb=4000)
    assert "plan allows disks up to" in data["content"] and game_row(tenant, "valheim").settings.disk_gb == 20
    GameRecord.get(tenant, "valheim").update(actions=[GameRecord.state.set("STARTING")])
    data = _admin_reply(harness, "extenddisk", game="valheim", size_gb=24)
    assert "is starting" in data["content"] and game_row(tenant, "valheim").settings.disk_gb == 20


DISK_REPLY = {
    "device": "/dev/nvme1n1",
    "partition": None,
    "filesystem": "ext4",
    "size_before_bytes": 12 * 1024**3,
    "size_after_bytes": 20 * 1024**3,
}


def test_extenddisk_of_a_running_game_grows_the_volume_then_the_filesystem(
    harness: Harness, tenant: str, agent_link: Subscriber
) -> None:
    create_game(harness, "valheim")
    start_until_running(harness, tenant)
    volume = game_row(tenant, "valheim").resources.volume_id or ""
    agent_link.drain()
    agent = FakeAgent(agent_link, "disk.extend", DISK_REPLY)
    try:
        edit = _deferred(harness, "extenddisk", game="valheim", size_gb=20)
    finally:
        agent.stop()
    assert ec2_of(tenant, "valheim").volume_size(volume) == 20
    assert len(agent.requests) == 1 and agent.requests[0][1]["body"] == {}
    assert edit["content"].startswith("✅ **valheim**'s disk is now 20 GB (was 12 GB)")
    assert "from 12.0 to 20.0 GiB" in edit["content"]
    assert game_row(tenant, "valheim").settings.disk_gb == 20  # the next start's volume is at least this size


@pytest.fixture
def volume_busy() -> Iterator[None]:
    """EBS answering IncorrectModificationState to ModifyVolume, at the botocore seam."""

    def deny(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        body = {"Error": {"Code": "IncorrectModificationState", "Message": "being modified"}}
        return AWSResponse("https://ec2", 400, {}, None), body  # type: ignore[arg-type]

    def hook(client: Any) -> None:
        client.meta.events.register("before-call.ec2.ModifyVolume", deny)

    container().broker.hooks.append(hook)
    yield
    container().broker.hooks.remove(hook)


def test_extenddisk_says_when_ebs_is_still_modifying_the_volume(
    harness: Harness, tenant: str, volume_busy: None
) -> None:
    create_game(harness, "ark")
    start_until_running(harness, tenant, "ark")
    edit = _deferred(harness, "extenddisk", game="ark", size_gb=30)
    assert "already being modified" in edit["content"]
    assert game_row(tenant, "ark").settings.disk_gb == 12


# -- /ip ---------------------------------------------------------------------------------------------


def test_ip_shows_the_address_and_ports_of_each_running_game(harness: Harness, tenant: str) -> None:
    create_game(harness, "valheim")
    create_game(harness, "factorio")
    _deferred(harness, "openport", game="valheim", ports="udp:2456-2458")
    start_until_running(harness, tenant)
    address = game_row(tenant, "valheim").resources.address
    assert address
    _, answer = harness.command("ip")
    description = answer["data"]["embeds"][0]["description"]
    assert f"**valheim** · running · `{address}` · ports udp:2456-2458" in description
    assert "factorio" not in description


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("IncorrectModificationState", "already being modified"),
        ("VolumeModificationRateExceeded", "one change every 6 hours"),
    ],
)
def test_the_gateway_names_ebs_modification_refusals(code: str, message: str) -> None:
    import boto3
    from botocore.stub import Stubber

    from chalicelib.errors import Conflict
    from chalicelib.instances import Ec2Gateway

    client = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_response("modify_volume", {}, {"VolumeId": "vol-1", "Size": 30})
        stub.add_client_error("modify_volume", service_error_code=code, http_status_code=400)
        gateway = Ec2Gateway(client, tenant_id="1", game="g")
        gateway.grow_volume("vol-1", 30)
        with pytest.raises(Conflict, match=message):
            gateway.grow_volume("vol-1", 40)

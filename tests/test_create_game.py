"""CreateGame and the game's own security group, on the embedded emulator: /newgame's form claims the
name, moto executes the real ASL, the steps make the group in the default VPC; /start launches into it,
/openport and /closeport change its rules, DeleteGame removes it. Faults at each step leave nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber

from chalicelib.games import GameRecord, GameState, GameStore
from chalicelib.instances import GroupInUse, SecurityGroups, rules_for
from chalicelib.instances.security import Rule
from chalicelib.lifecycle.create_game import STALE_CLAIM_SECONDS
from chalicelib.tenancy import plan_named
from chalicelib.wiring import container
from devstack.discord_user import Who, snowflake
from tests.helpers import Harness
from tests.lifecycle_helpers import (
    create_game,
    ec2_fails,
    game_row,
    pump_steps,
    start_until_running,
    stop_until_stopped,
)

STORE = GameStore()
EPHEMERAL = 64


def _groups(tenant: str, name: str) -> list[dict[str, Any]]:
    """The security groups tagged for this game, as EC2 describes them."""
    tag = [{"Name": "tag:gangway", "Values": [f"{tenant}/{name}"]}]
    groups: list[dict[str, Any]] = (
        container().client("ec2").describe_security_groups(Filters=tag)["SecurityGroups"]
    )
    return groups


def _ingress(group: dict[str, Any]) -> set[tuple[str, int, int]]:
    return {(p["IpProtocol"], p["FromPort"], p["ToPort"]) for p in group["IpPermissions"]}


def _v4(group: dict[str, Any], port: int) -> set[str]:
    """The IPv4 ranges the group lets reach `port` (tcp)."""
    return {
        r["CidrIp"]
        for p in group["IpPermissions"]
        if (p["IpProtocol"], p.get("FromPort")) == ("tcp", port)
        for r in p["IpRanges"]
    }


def _submit(harness: Harness, name: str, who: Who | None = None) -> tuple[dict[str, Any], Any]:
    payload = harness.user.modal_submit("games:create", {"name": name, "description": "Vikings"}, who=who)
    status, answer = harness.post(payload)
    assert status == 200, answer
    return payload, answer


def _edits(harness: Harness, payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [c["json"] for c in harness.calls_for(payload["token"])]


def _executions(tenant: str, name: str) -> list[dict[str, Any]]:
    lc = container().lifecycle
    listed = (
        container().client("stepfunctions").list_executions(stateMachineArn=lc.workflows.arn("create-game"))
    )
    return [e for e in listed["executions"] if e["name"].endswith(f"-{tenant}-{name}")]


# -- the whole path -------------------------------------------------------------------------------------


def test_newgame_claims_the_name_then_the_workflow_makes_its_security_group(
    harness: Harness, tenant: str
) -> None:
    payload, answer = _submit(harness, "valheim")
    data = answer["data"]
    assert data["content"].startswith("⏳ Creating **valheim** (Vikings): `t3.medium`, on-demand")
    selects = {row["components"][0]["custom_id"] for row in data["components"]}
    assert data["flags"] & EPHEMERAL and {f"games:set:valheim:{f}" for f in ("type", "disk")} <= selects
    assert game_row(tenant, "valheim").state is GameState.CREATING
    _, listed = harness.command("games")
    assert "🛠️ **valheim** · creating" in listed["data"]["embeds"][0]["description"]
    _, refused = harness.command("start", game="valheim")
    assert "is creating" in refused["data"]["content"]

    pump_steps(lambda: game_row(tenant, "valheim").state is GameState.STOPPED)
    game = game_row(tenant, "valheim")
    [group] = _groups(tenant, "valheim")
    assert game.resources.security_group_id == group["GroupId"] and group["GroupName"] == f"gangway-{tenant}-valheim"
    default_vpc = (
        container().client("ec2").describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])
    )
    assert group["VpcId"] == default_vpc["Vpcs"][0]["VpcId"]
    assert {t["Key"]: t["Value"] for t in group["Tags"]}["gangway:role"] == "firewall"
    assert _ingress(group) == {("tcp", 2222, 2222)}  # SFTP for /files; no game port opened yet
    anywhere = {r["CidrIp"] for p in group["IpPermissions"] for r in p["IpRanges"]}
    anywhere |= {r["CidrIpv6"] for p in group["IpPermissions"] for r in p["Ipv6Ranges"]}
    assert anywhere == {"0.0.0.0/0", "::/0"}

    last = _edits(harness, payload)[-1]
    assert last["content"].startswith("✅ Created **valheim** (Vikings). Start it with `/start game:valheim`")
    assert "components" not in last  # the edit keeps the choices on the message
    [execution] = _executions(tenant, "valheim")
    pump_steps(
        lambda: (
            container()
            .client("stepfunctions")
            .describe_execution(executionArn=execution["executionArn"])["status"]
            == "SUCCEEDED"
        )
    )


def test_the_choices_can_be_changed_while_the_game_is_being_created(harness: Harness, tenant: str) -> None:
    _submit(harness, "rust")
    answer = harness.component("games:set:rust:disk", ["24"])
    assert answer["type"] == 7 and "24 GB disk" in answer["data"]["content"]
    pump_steps(lambda: game_row(tenant, "rust").state is GameState.STOPPED)
    assert game_row(tenant, "rust").settings.disk_gb == 24


def test_two_newgame_of_the_same_name_at_once_make_one_game(harness: Harness, tenant: str) -> None:
    first = harness.user.modal_submit("games:create", {"name": "ark"})
    second = harness.user.modal_submit("games:create", {"name": "ark"})
    _, one = harness.post(first)
    _, other = harness.post(second)
    assert one["data"]["content"].startswith("⏳ Creating **ark**")
    assert "already a game called `ark`" in other["data"]["content"]
    pump_steps(lambda: game_row(tenant, "ark").state is GameState.STOPPED)
    assert len(_groups(tenant, "ark")) == 1 and len(_executions(tenant, "ark")) == 1
    # The same form delivered again (a retry) starts nothing new either.
    _, again = harness.post(first)
    assert "already a game called `ark`" in again["data"]["content"]
    assert len(_executions(tenant, "ark")) == 1


def test_a_claim_whose_workflow_died_is_taken_over_and_a_live_one_is_not(
    harness: Harness, tenant: str
) -> None:
    STORE.create(tenant, "ark", description="", created_by="t", state=GameState.CREATING)
    _, answer = _submit(harness, "ark")
    assert "already a game called `ark`" in answer["data"]["content"]  # its workflow may still run
    stuck = int(time.time()) - STALE_CLAIM_SECONDS - 1
    GameRecord.get(tenant, "ark").update(actions=[GameRecord.updated_at.set(stuck)])
    _, answer = _submit(harness, "ark")
    assert answer["data"]["content"].startswith("⏳ Creating **ark**")
    pump_steps(lambda: game_row(tenant, "ark").state is GameState.STOPPED)
    assert GameRecord.get(tenant, "ark").created_by == harness.user.who.user_id
    assert len(_groups(tenant, "ark")) == 1


# -- faults: each step in turn, then nothing is left -------------------------------------------------------


@contextmanager
def _update_fails(mentioning: str) -> Iterator[None]:
    """DynamoDB refusing UpdateItem on the games table when the request mentions `mentioning`."""
    client: Any = GameRecord._get_connection().connection.client

    def deny(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if mentioning not in str(params.get("body", "")):
            return None
        body = {"Error": {"Code": "AccessDeniedException", "Message": "injected: UpdateItem refused"}}
        return AWSResponse("https://dynamodb", 400, {}, None), body  # type: ignore[arg-type]

    client.meta.events.register("before-call.dynamodb.UpdateItem", deny)
    try:
        yield
    finally:
        client.meta.events.unregister("before-call.dynamodb.UpdateItem", deny)


@pytest.mark.parametrize(
    "fault",
    [
        lambda: ec2_fails("DescribeVpcs"),
        lambda: ec2_fails("CreateSecurityGroup"),
        lambda: ec2_fails("AuthorizeSecurityGroupIngress"),
        lambda: _update_fails("security_group_id"),
        lambda: _update_fails('"STOPPED"'),
    ],
    ids=["group:vpc", "group:create", "group:rules", "record", "ready"],
)
def test_a_fault_at_each_create_step_leaves_no_group_and_no_row(
    harness: Harness, tenant: str, fault: Any
) -> None:
    with fault():
        payload, answer = _submit(harness, "valheim")
        assert answer["data"]["content"].startswith("⏳ Creating **valheim**")
        pump_steps(lambda: STORE.get(tenant, "valheim") is None, timeout=60)
    assert _groups(tenant, "valheim") == []
    last = _edits(harness, payload)[-1]
    assert (
        last["content"].startswith("❌ **valheim** could not be created: ") and "None" not in last["content"]
    )
    assert "run `/newgame` again" in last["content"] and last["components"] == []  # the choices go too
    [execution] = _executions(tenant, "valheim")
    sfn = container().client("stepfunctions")
    pump_steps(lambda: sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "FAILED")
    # And the name is free again: the next /newgame simply works.
    create_game(harness, "valheim")
    assert len(_groups(tenant, "valheim")) == 1


@pytest.fixture
def start_execution_fails() -> Iterator[None]:
    """Step Functions refusing StartExecution, at the botocore seam of the app's client."""
    client = container().client("stepfunctions")

    def deny(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        body = {"Error": {"Code": "ServiceUnavailable", "Message": "injected: StartExecution refused"}}
        return AWSResponse("https://states", 503, {}, None), body  # type: ignore[arg-type]

    client.meta.events.register("before-call.states.StartExecution", deny)
    yield
    client.meta.events.unregister("before-call.states.StartExecution", deny)


def test_a_workflow_that_cannot_start_gives_the_name_back(
    harness: Harness, tenant: str, start_execution_fails: None
) -> None:
    _, answer = _submit(harness, "valheim")
    assert answer["data"]["flags"] & EPHEMERAL and "Creating" not in answer["data"]["content"]
    assert STORE.get(tenant, "valheim") is None and _groups(tenant, "valheim") == []


# -- hostile input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x", "Has Space", "-lead", "trail-", "a" * 33, "ünïcode", "a:b", ""])
def test_a_bad_name_is_refused_and_nothing_is_created(harness: Harness, tenant: str, name: str) -> None:
    _, answer = _submit(harness, name)
    assert answer["data"]["flags"] & EPHEMERAL and "isn't a valid game name" in answer["data"]["content"]
    assert STORE.all(tenant) == []


def test_the_form_is_for_admins_and_within_the_plan(harness: Harness, tenant: str) -> None:
    member = Who(guild_id=tenant, user_id=snowflake(), permissions=0)
    _, answer = _submit(harness, "valheim", who=member)
    assert "admin" in answer["data"]["content"].lower() and STORE.get(tenant, "valheim") is None
    for n in range(plan_named(container().services.tenants.require(tenant).plan).max_games):
        STORE.create(tenant, f"game{n}", description="", created_by="t")
    _, answer = _submit(harness, "onemore")
    assert "plan allows" in answer["data"]["content"] and STORE.get(tenant, "onemore") is None


# -- the group through the game's life ---------------------------------------------------------------------


def test_start_launches_into_the_games_group_and_ports_change_its_rules(
    harness: Harness, tenant: str
) -> None:
    create_game(harness, "valheim")
    group_id = game_row(tenant, "valheim").resources.security_group_id
    opened = harness.command("openport", game="valheim", ports="udp:2456-2458 tcp:27015")[0]
    harness.run_jobs_for(opened["token"], wait=20)
    said = _edits(harness, opened)[-1]["content"]
    assert (
        said.startswith("✅ Opened udp:2456-2458, tcp:27015") and f"`{group_id}` lets these ports in" in said
    )
    [group] = _groups(tenant, "valheim")
    assert _ingress(group) == {("tcp", 2222, 2222), ("udp", 2456, 2458), ("tcp", 27015, 27015)}

    start_until_running(harness, tenant)
    instance = (
        container().client("ec2").describe_instances(InstanceIds=[game_row(tenant, "valheim").resources.instance_id])
    )
    assert [g["GroupId"] for g in instance["Reservations"][0]["Instances"][0]["SecurityGroups"]] == [group_id]

    closed = harness.command("closeport", game="valheim", ports="udp:2457")[0]
    harness.run_jobs_for(closed["token"], wait=20)
    [group] = _groups(tenant, "valheim")
    assert _ingress(group) == {
        ("tcp", 2222, 2222),
        ("udp", 2456, 2456),
        ("udp", 2458, 2458),
        ("tcp", 27015, 27015),
    }
    # A rule removed behind gangway's back comes back with the next /openport, even of an open port
    # (on a stopped game: a running one's ports open only once its agent filters them, test_game_tools.py).
    stop_until_stopped(harness, tenant)
    container().client("ec2").revoke_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 27015, "ToPort": 27015, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    assert _v4(_groups(tenant, "valheim")[0], 27015) == set()
    again = harness.command("openport", game="valheim", ports="tcp:27015")[0]
    harness.run_jobs_for(again["token"], wait=20)
    assert "already open" in _edits(harness, again)[-1]["content"]
    assert _v4(_groups(tenant, "valheim")[0], 27015) == {"0.0.0.0/0"}


def test_a_game_from_before_groups_gets_one_at_its_first_start(harness: Harness, tenant: str) -> None:
    STORE.create(tenant, "legacy", description="", created_by="t")
    STORE.change(tenant, "legacy", ports=["udp:3000"])
    start_until_running(harness, tenant, "legacy")
    [group] = _groups(tenant, "legacy")
    assert game_row(tenant, "legacy").resources.security_group_id == group["GroupId"]
    assert _ingress(group) == {("tcp", 2222, 2222), ("udp", 3000, 3000)}


def test_deletegame_deletes_the_games_group(harness: Harness, tenant: str) -> None:
    create_game(harness, "ark")
    create_game(harness, "rust")
    status, answer = harness.post(harness.user.component("games:delete:ark:all"))
    assert status == 200 and answer["type"] == 7
    pump_steps(lambda: STORE.get(tenant, "ark") is None)
    assert _groups(tenant, "ark") == [] and len(_groups(tenant, "rust")) == 1


def test_a_game_deleted_and_created_again_under_its_name_starts_and_stops(
    harness: Harness, tenant: str
) -> None:
    """Its versions run through the same numbers as the old game's: the executions must still be new."""
    create_game(harness, "ark")
    start_until_running(harness, tenant, "ark")
    stop_until_stopped(harness, tenant, "ark")
    logs = container().client("logs")
    group = f"/gangway/{container().settings.stage}/{tenant}/ark"
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]  # made by the start
    harness.post(harness.user.component("games:delete:ark:all"))
    pump_steps(lambda: STORE.get(tenant, "ark") is None)
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"] == []  # gone with the game
    create_game(harness, "ark")
    start_until_running(harness, tenant, "ark")
    stop_until_stopped(harness, tenant, "ark")
    harness.post(harness.user.component("games:delete:ark:all"))
    pump_steps(lambda: STORE.get(tenant, "ark") is None)


# -- the gateway's idempotence, at the botocore seam ---------------------------------------------------------


def _stubbed() -> tuple[SecurityGroups, Stubber]:
    import boto3

    client = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return SecurityGroups(client, tenant_id="1", game="g"), Stubber(client)


def test_rules_that_exist_already_or_are_gone_already_are_fine() -> None:
    groups, stub = _stubbed()
    rule = next(iter(rules_for([])))
    stub.add_client_error("authorize_security_group_ingress", "InvalidPermission.Duplicate")
    stub.add_client_error("revoke_security_group_ingress", "InvalidPermission.NotFound")
    with stub:
        groups.authorize("sg-1", [rule])
        groups.revoke("sg-1", [rule])
    stub.assert_no_pending_responses()


def test_a_retried_create_finds_the_group_the_first_try_made() -> None:
    groups, stub = _stubbed()
    tagged = {"Filters": [{"Name": "tag:gangway", "Values": ["1/g"]}]}
    stub.add_response("describe_security_groups", {"SecurityGroups": []}, tagged)
    stub.add_response("describe_vpcs", {"Vpcs": [{"VpcId": "vpc-1"}]})
    stub.add_client_error("create_security_group", "InvalidGroup.Duplicate")
    stub.add_response("describe_security_groups", {"SecurityGroups": [{"GroupId": "sg-9"}]}, tagged)
    stub.add_response("describe_security_groups", {"SecurityGroups": [{"GroupId": "sg-9"}]})
    stub.add_response("authorize_security_group_ingress", {})  # SFTP for IPv4...
    stub.add_response("authorize_security_group_ingress", {})  # ...and for IPv6
    with stub:
        assert groups.ensure([]) == "sg-9"


def test_a_group_still_in_use_says_so() -> None:
    groups, stub = _stubbed()
    stub.add_response("describe_security_groups", {"SecurityGroups": [{"GroupId": "sg-9"}]})
    stub.add_client_error("delete_security_group", "DependencyViolation")
    with stub, pytest.raises(GroupInUse):
        groups.delete()


def test_port_lists_that_are_not_normalised_are_refused() -> None:
    assert rules_for(["udp:2456-2458"]) == {
        Rule(protocol, low, high, cidr)
        for protocol, low, high in (("udp", 2456, 2458), ("tcp", 2222, 2222))
        for cidr in ("0.0.0.0/0", "::/0")
    }
    for bad in ["icmp:3000", "tcp:", "tcp:0", "udp:70000", "tcp:9-8", "tcp:a-b"]:
        with pytest.raises(ValueError, match="not a port range"):
            rules_for([bad])

"""Property: whatever random callers of random guilds do, no read or write crosses tenants.

Tenants have games and grants (player addresses let in); callers list, show, autocomplete, ask for
their address status, open links, read plans and settings.

Every DynamoDB request the app makes while handling a caller's interaction is inspected at the botocore
layer: no Scan, and no other tenant's id anywhere in the request. Answers never show another tenant's
game names, and naming another tenant's game is answered as if it did not exist.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.access import Grant, GrantRecord, GrantStore, LinkKind
from chalicelib.games import GameRecord, GameStore
from chalicelib.jobs import InteractionRecord
from chalicelib.tenancy import AuditRecord, TenantRecord, TenantStore
from chalicelib.wiring import container
from devstack.discord_user import DiscordUser, Who
from tests.conftest import APPLICATION_ID, SIGNING_KEY

GUILDS = ("710000000000000001", "710000000000000002", "710000000000000003")
MAIN_ROLE = "720000000000000001"
WORDS = ("valheim", "factorio", "vrising", "terraria", "ark", "rust")
GAMES = {g: [f"t{i}-{w}" for w in WORDS[i : i + 3]] for i, g in enumerate(GUILDS)}


class _Watch:
    """Records the DynamoDB requests made while `active` is the caller's guild."""

    def __init__(self) -> None:
        self.active: str | None = None
        self.violations: list[str] = []
        self.seen = 0

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        body = params.get("body", b"")
        self.check(model.name, body.decode() if isinstance(body, bytes) else str(body))

    def wire(self, operation: str, request: Mapping[str, object]) -> None:
        """The same check for the botocore-free client's requests (chalicelib/dynamodb)."""
        self.check(operation, json.dumps(request))

    def check(self, operation: str, text: str) -> None:
        if self.active is None:
            return
        self.seen += 1
        if operation == "Scan":
            self.violations.append("Scan")
        for guild in GUILDS:
            if guild != self.active and guild in text:
                self.violations.append(f"{operation} touched {guild} for {self.active}")


@pytest.fixture(scope="module")
def watch(emulator: Any) -> Iterator[_Watch]:
    store = TenantStore(default_region="us-east-1")
    for guild in GUILDS:
        store.ensure(guild, created_by="1")
        store.set_roles(guild, "main", [MAIN_ROLE])
        for name in GAMES[guild]:
            if GameStore().get(guild, name) is None:
                GameStore().create(guild, name, description=f"{name} of {guild}", created_by="1")
        now = int(time.time())
        for n, address in enumerate(ADDRESSES[guild]):
            GrantStore().put(
                Grant(guild, address, LinkKind.MEMBER, f"user#73000000000000000{n}", now, now + 3600)
            )
    w = _Watch()
    clients = [
        m._get_connection().connection.client
        for m in (TenantRecord, GameRecord, InteractionRecord, AuditRecord, GrantRecord)
    ]
    for client in clients:
        client.meta.events.register("before-call.dynamodb", w)
    wire = container().dynamodb_client
    assert wire is not None  # the interaction path's reads and the ledger go through it
    wire.observe(w.wire)  # (inert once `active` is None again)
    yield w
    for client in clients:
        client.meta.events.unregister("before-call.dynamodb", w)


ALL_NAMES = [n for names in GAMES.values() for n in names]
# Every tenant lets in a few player addresses; no answer may ever show another tenant's.
ADDRESSES = {g: [f"198.51.100.{101 + 10 * i + k}" for k in range(2)] for i, g in enumerate(GUILDS)}
operations = st.one_of(
    st.just(("games", {})),
    st.builds(lambda n: ("games", {"game": n}), st.sampled_from(ALL_NAMES)),
    st.builds(lambda p: ("autocomplete", {"game": p}), st.sampled_from(["", "t", "t0", "t1-", "t2-a", "v"])),
    st.just(("help", {})),
    st.just(("plan", {})),
    st.just(("status", {})),
    st.just(("setup", {})),
    st.just(("ip", {})),
    st.just(("ipsettings", {})),
    st.just(("addip", {})),
    st.just(("audit", {})),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(guild=st.sampled_from(GUILDS), admin=st.booleans(), op=operations)
def test_no_interaction_ever_reads_or_writes_another_tenant(
    watch: _Watch, guild: str, admin: bool, op: tuple[str, dict[str, Any]]
) -> None:
    who = Who(
        guild_id=guild, user_id="730000000000000001", role_ids=(MAIN_ROLE,), permissions=int(admin and 8)
    )
    user = DiscordUser(SIGNING_KEY, APPLICATION_ID, who=who)
    name, options = op
    if name == "autocomplete":
        payload = user.command("games", options, focused="game")
    else:
        payload = user.command(name, options)
    body = json.dumps(payload).encode()
    container().services.tenants._forget(guild)  # make every example read its tenant, not the cache
    watch.active, watch.violations, watch.seen = guild, [], 0
    try:
        reply = container().endpoint.handle(body, user.sign(body))
    finally:
        watch.active = None
    assert watch.violations == []
    if name in ("games", "status"):
        assert watch.seen > 0  # the tenant (and its games) were read, and watched
    answer = json.dumps(json.loads(reply.body))
    foreign = [n for g, names in GAMES.items() if g != guild for n in names]
    typed = options.get("game")
    # The name the caller typed may be echoed back; nothing else of another tenant may appear.
    assert not any(n in answer for n in foreign if n != typed), answer
    assert not any(a in answer for g, addrs in ADDRESSES.items() if g != guild for a in addrs), answer
    if name == "games" and options.get("game") in foreign:
        assert "does not exist" in answer


# ----- hosted tenants: the credentials the broker gives one cannot touch another's resources -----------

HOSTED = ("710000000000000011", "710000000000000012")


def _refused(call: Any, *args: Any, **kwargs: Any) -> str:
    """The error code `call` fails with; it must fail (a call that succeeds crossed tenants)."""
    from botocore.exceptions import ClientError

    try:
        call(*args, **kwargs)
    except ClientError as exc:
        # IAM's refusal: EC2 says UnauthorizedOperation, query services AccessDenied, JSON ones a 403.
        status = exc.response["ResponseMetadata"].get("HTTPStatusCode")
        return "AccessDenied" if status == 403 else str(exc.response["Error"]["Code"])
    except Exception as exc:  # e.g. the emulator failing on a call IAM should have refused first
        return type(exc).__name__
    raise AssertionError(f"{getattr(call, '__name__', call)} went through for another tenant")


def _hosted_world(tenant_id: str) -> dict[str, Any]:
    """A hosted tenant's clients (from the broker, as the steps function gets them) and a game's worth of
    resources made with them: a group, an instance in it, a volume, a snapshot, a log group, a thing."""
    from chalicelib.instances import SecurityGroups
    from chalicelib.instances.ec2 import Ec2Gateway, tags_for
    from chalicelib.instances.game_logs import GameLogs
    from chalicelib.instances.identity import thing_name
    from devstack.discord_user import snowflake
    from devstack.iam import running_as

    tenant, _ = TenantStore(default_region="us-east-1").ensure(tenant_id, created_by="1")
    assert tenant.account_mode == "hosting"
    settings = container().settings
    with running_as("steps"):
        access = container().broker.access(tenant, purpose="isolation", actor="test")
        ec2, logs, iot, ssm = (access.client(s) for s in ("ec2", "logs", "iot", "ssm"))
    game = f"world{tenant_id[-2:]}"
    gw = Ec2Gateway(ec2, tenant_id=tenant_id, game=game)
    group = SecurityGroups(ec2, tenant_id=tenant_id, game=game).ensure(["udp:2456"])
    image = ec2.describe_images(Owners=["self"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(
        ImageId=image,
        InstanceType="t3.small",
        MinCount=1,
        MaxCount=1,
        SecurityGroupIds=[group],
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags_for(tenant_id, game, "server")}],
    )["Instances"][0]["InstanceId"]
    volume = gw.create_volume(zone=gw.zones()[0], size_gb=1, snapshot_id=None, token=snowflake())
    snapshot = gw.snapshot(volume, description="the world")
    log_group = GameLogs(lambda: logs, stage=settings.stage, tenant_id=tenant_id, game=game).ensure()
    assert log_group, "a hosted tenant could not make its own game's log group"
    thing = thing_name(settings.stage, tenant_id, game)
    iot.create_thing(thingName=thing)
    return {
        "ec2": ec2,
        "logs": logs,
        "iot": iot,
        "ssm": ssm,
        "game": game,
        "group": group,
        "image": image,
        "instance": instance,
        "volume": volume,
        "snapshot": snapshot,
        "log_group": log_group,
        "thing": thing,
        "zone": gw.zones()[0],
    }


def test_a_hosted_tenants_credentials_cannot_touch_another_hosted_tenants_resources(emulator: Any) -> None:
    """With tenant A's brokered credentials, every call on tenant B's instances, volumes, snapshots,
    groups, log groups, instance keys and things is refused; each also on A's own, which goes through."""
    from chalicelib.instances.ec2 import tags_for
    from devstack.iam import enforced

    assert enforced(), "without enforced IAM nothing here is checked"
    a, b = (_hosted_world(t) for t in HOSTED)
    ec2 = a["ec2"]
    mine = tags_for(HOSTED[0], a["game"], "data")
    as_a = [{"ResourceType": "snapshot", "Tags": mine}]
    stage = container().settings.stage
    attempts: list[tuple[str, Any, dict[str, Any]]] = [
        ("terminate", ec2.terminate_instances, {"InstanceIds": [b["instance"]]}),
        ("associate a role", ec2.associate_iam_instance_profile, {
            "InstanceId": b["instance"],
            "IamInstanceProfile": {"Name": f"gangway-{stage}-instance"},
        }),
        ("attach A's volume to B's instance", ec2.attach_volume, {
            "VolumeId": a["volume"], "InstanceId": b["instance"], "Device": "/dev/sdf",
        }),
        ("attach B's volume", ec2.attach_volume, {
            "VolumeId": b["volume"], "InstanceId": a["instance"], "Device": "/dev/sdf",
        }),
        ("delete a volume", ec2.delete_volume, {"VolumeId": b["volume"]}),
        ("grow a volume", ec2.modify_volume, {"VolumeId": b["volume"], "Size": 2}),
        ("snapshot a volume, tagged as A", ec2.create_snapshot, {
            "VolumeId": b["volume"], "TagSpecifications": as_a,
        }),
        ("a volume from a snapshot, tagged as A", ec2.create_volume, {
            "AvailabilityZone": a["zone"], "SnapshotId": b["snapshot"],
            "TagSpecifications": [{"ResourceType": "volume", "Tags": mine}],
        }),
        ("delete a snapshot", ec2.delete_snapshot, {"SnapshotId": b["snapshot"]}),
        ("fast restore a snapshot", ec2.enable_fast_snapshot_restores, {
            "AvailabilityZones": [a["zone"]], "SourceSnapshotIds": [b["snapshot"]],
        }),
        ("open a group", ec2.authorize_security_group_ingress, {
            "GroupId": b["group"], "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIp": "0.0.0.0/0",
        }),
        ("close a group", ec2.revoke_security_group_ingress, {
            "GroupId": b["group"], "IpProtocol": "udp", "FromPort": 2456, "ToPort": 2456, "CidrIp": "0.0.0.0/0",
        }),
        ("delete a group", ec2.delete_security_group, {"GroupId": b["group"]}),
        ("launch into a group, tagged as A", ec2.run_instances, {
            "ImageId": a["image"], "InstanceType": "t3.small", "MinCount": 1, "MaxCount": 1,
            "SecurityGroupIds": [b["group"]],
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags_for(HOSTED[0], "x", "server")}],
        }),
        ("launch tagged as B", ec2.run_instances, {
            "ImageId": a["image"], "InstanceType": "t3.small", "MinCount": 1, "MaxCount": 1,
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags_for(HOSTED[1], "x", "server")}],
        }),
        ("launch untagged", ec2.run_instances, {
            "ImageId": a["image"], "InstanceType": "t3.small", "MinCount": 1, "MaxCount": 1,
        }),
        ("delete a log group", a["logs"].delete_log_group, {"logGroupName": b["log_group"]}),
        ("change a log group's retention", a["logs"].put_retention_policy, {
            "logGroupName": b["log_group"], "retentionInDays": 1,
        }),
        ("make a log group in B's name", a["logs"].create_log_group, {
            "logGroupName": b["log_group"] + "-x",
        }),
        ("write B's instance keys", a["ssm"].put_parameter, {
            "Name": f"/gangway/{stage}/{HOSTED[1]}/{b['game']}/i-0/certificate", "Value": "x", "Type": "String",
        }),
        ("delete a thing", a["iot"].delete_thing, {"thingName": b["thing"]}),
    ]
    crossed = []
    for what, call, kwargs in attempts:
        try:
            code = _refused(call, **kwargs)
        except AssertionError:
            code = "went through"
        if code not in ("AccessDenied", "UnauthorizedOperation", "AccessDeniedException"):
            crossed.append(f"{what} ({code})")
    assert crossed == [], f"tenant A's credentials could: {crossed}"
    # B's resources are all still there, untouched.
    admin = container().client("ec2")
    assert admin.describe_volumes(VolumeIds=[b["volume"]])["Volumes"][0]["Size"] == 1
    assert admin.describe_snapshots(SnapshotIds=[b["snapshot"]])["Snapshots"]
    state = admin.describe_instances(InstanceIds=[b["instance"]])["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] in ("pending", "running")
    # A's own life goes on with the same credentials: its resources are its own.
    ec2.attach_volume(VolumeId=a["volume"], InstanceId=a["instance"], Device="/dev/sdf")
    ec2.detach_volume(VolumeId=a["volume"], InstanceId=a["instance"])
    own = ec2.create_snapshot(VolumeId=a["volume"], TagSpecifications=as_a)["SnapshotId"]
    ec2.delete_snapshot(SnapshotId=own)
    ec2.terminate_instances(InstanceIds=[a["instance"]])
    a["logs"].delete_log_group(logGroupName=a["log_group"])
    a["iot"].delete_thing(thingName=a["thing"])

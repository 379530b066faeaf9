"""What the booted-instance tests share: the skip-or-fail rule for booting here, the agent's real
wheelhouse (deploy/wheelhouse.py, as `make deploy` builds it), and a game's life through the local stack
whose launched instances boot as Debian 12 (`booted_stack`, with the steps a user's commands take)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import boto3
import pytest
from botocore.config import Config

import app as app_module
from chalicelib.config import Settings
from chalicelib.games import GameState
from chalicelib.instances.identity import policy_name
from chalicelib.wiring import container
from deploy.wheelhouse import Wheelhouse, publish
from devstack.aws import Emulator
from devstack.bridge import MqttBridge
from devstack.discord_api import DiscordStandIn
from devstack.discord_user import DiscordUser, Who, snowflake
from devstack.iam import enforced, instance_credentials
from devstack.instance.boot import BootedInstance
from devstack.instance.iot import TlsBroker, make_pki, tls_mosquitto
from devstack.instance.iot_core import issue_from
from devstack.instance.launches import Launches, Powered
from devstack.instance.rootfs import build_rootfs
from devstack.pump import Pump
from tests.access_helpers import authorize
from tests.conftest import APPLICATION_ID, SIGNING_KEY
from tests.helpers import Harness
from tests.lifecycle_helpers import MAIN, game_row, pump_steps

__all__ = [
    "TOOLS",
    "Life",
    "allowed",
    "booted_stack",
    "channel",
    "deploy",
    "member_lets_in",
    "members",
    "on_disk",
    "require_booting",
    "said",
    "stop_until_off",
    "stopped_with_snapshot",
    "wait",
    "wheelhouse",
]

TOOLS: Final = (
    "debootstrap", "systemd-nspawn", "nsenter", "losetup", "ip", "mosquitto", "mkfs.ext4", "debugfs"
)


def wheelhouse() -> Wheelhouse:
    """The wheelhouse the deployment publishes (skipped where it cannot be built for Debian 12)."""
    from deploy.wheelhouse import build

    if (sys.version_info[:2], os.uname().machine) != ((3, 11), "x86_64"):
        pytest.skip(
            "the wheelhouse holds CPython 3.11 wheels (Debian 12's) and this machine is not x86_64 3.11"
        )
    try:
        return build(say=lambda _: None)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot build the agent's wheelhouse here (no package index?): {exc}")


def require_booting() -> None:
    """Skip (not root, or a tool missing) with the reason; under CI=true a missing tool fails."""
    if os.geteuid() != 0:
        pytest.skip("booting an instance needs root (systemd-nspawn, loop devices, network namespaces)")
    missing = [t for t in TOOLS if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]
    if missing:
        message = f"not installed: {', '.join(missing)} (make system-deps installs them as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


BUCKET: Final = "gangway-artifacts-test"
# What settings derive from and the container caches: rebuilt under a module's deployment settings.
_DERIVED: Final = ("publisher", "wheelhouse", "gateways", "lifecycle", "agent_events")
CHANNEL: Final = Who.channel_id  # where the test user's interactions come from: a /start's channel


def deploy(base: Settings | None = None, **changes: Any) -> Settings:
    """The deployment's settings as an operator sets them (from `base`, or the current ones), with what
    the container derived from them rebuilt; the settings they replace."""
    c = container()
    before = c.settings
    for name in _DERIVED:
        c.__dict__.pop(name, None)
    c.settings = dataclasses.replace(base or before, **changes)
    return before


@dataclass
class Life:
    """One game's life through the stack: its admin's harness, and the instances its starts boot."""

    harness: Harness
    tenant: str
    game: str
    launches: Launches
    broker: TlsBroker
    bridge: MqttBridge
    endpoint: str
    members: dict[str, Who] = dataclasses.field(default_factory=dict)  # address let in → by whom

    def vm(self) -> BootedInstance:
        instance = game_row(self.tenant, self.game).resources.instance_id or ""
        assert instance in self.launches.instances, (instance, list(self.launches.instances))
        return self.launches.instances[instance].vm

    def console(self) -> str:
        logs = [b.vm.log_path for b in self.launches.instances.values()]
        tail = "".join(p.read_text(errors="replace")[-3000:] for p in logs if p.exists())
        return f"problems: {self.launches.problems}\nconsole: {tail}"


@contextlib.contextmanager
def booted_stack(
    emulator: Emulator,
    standin: DiscordStandIn,
    tmp_path_factory: pytest.TempPathFactory,
    game: str,
    *,
    prepare_root: Callable[[Path], None] | None = None,
    forward_ports: Mapping[int, int] | None = None,
) -> Iterator[Life]:
    """A new guild set up by its admin, with the game's instances booted as the start workflow launches
    them: the agent's wheelhouse in the emulator's S3 (as `make deploy` publishes it), the broker IoT
    Core's endpoint resolves to (its CA issuing the emulator's certificates), the IoT rule's bridge to the
    agent-events queue and a pump feeding it to the handler. `prepare_root` runs on each booted root, and
    `forward_ports` adds ports of its loopback forwarded to this machine's."""
    require_booting()
    rootfs = build_rootfs()
    built = wheelhouse()
    c = container()
    region, stage = c.settings.region, c.settings.stage
    s3 = boto3.client(
        "s3", region_name=region, endpoint_url=emulator.url, config=Config(signature_version="s3v4")
    )
    location = publish(s3, BUCKET, built, say=lambda _: None)
    pki = make_pki(regions=(region,))
    # Amazon's CA is a public file; this bucket is not, so a presigned URL serves the stand-in's.
    s3.put_object(Bucket=BUCKET, Key="booted/AmazonRootCA1.pem", Body=pki.ca)
    ca_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "booted/AmazonRootCA1.pem"}, ExpiresIn=3600
    )
    # The deployment's IOT_DATA_ENDPOINT (the account's iot:Data-ATS endpoint, as the stack resolves it).
    endpoint = c.client("iot").describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    who = Who(guild_id=snowflake(), user_id=snowflake(), user_name="admin")
    harness = Harness(user=DiscordUser(SIGNING_KEY, APPLICATION_ID, who=who), standin=standin)
    tenant = who.guild_id or ""
    saved = c.settings
    pump = Pump(c.sqs(), region)
    with tls_mosquitto(tmp_path_factory.mktemp("broker"), pki) as broker:
        mqtt_url = f"mqtt://127.0.0.1:{broker.plain_port}"
        queue = c.sqs().get_queue_url(QueueName=saved.agent_events_queue)["QueueUrl"]
        bridge = MqttBridge(mqtt_url, c.sqs(), queue, client_id=f"booted-rule-{os.getpid()}")
        launches = Launches(
            rootfs,
            ec2=c.client("ec2"),
            iot=c.client("iot"),
            policy=policy_name(stage),
            broker=broker,
            tenant=tenant,
            game=game,
            aws_url=emulator.url,
            log_dir=tmp_path_factory.mktemp("consoles"),
            environment={"GANGWAY_CA_URL": ca_url},
            hosts={endpoint: "127.0.0.1"},  # the instance's DNS: IoT Core is the forwarded broker
            credentials=lambda i: instance_credentials(stage, i) if enforced() else None,
            prepare_root=prepare_root,
            forward_ports=dict(forward_ports or {}),
        )
        try:
            deploy(
                iot_data_endpoint=f"https://{endpoint}",
                mqtt_url=mqtt_url,  # the backend's publisher: the same broker (its plain side)
                agent_wheelhouse=location,
            )
            issue_from(pki)
            bridge.start()
            pump.bind(queue, "agent_events", app_module.agent_events)
            pump.start()
            launches.start()
            harness.command("setup")
            harness.component("setup:main", [MAIN])
            yield Life(harness, tenant, game, launches, broker, bridge, endpoint)
            refused = harness.refused_calls()
            assert not refused, f"Discord would refuse what gangway sent: {refused}"
        finally:
            launches.stop()
            pump.stop()
            bridge.stop()
            deploy(saved)
            issue_from(None)
            harness.close()


def said(life: Life, token: str, phrase: str) -> bool:
    """Whether one of the edits of the interaction's reply said `phrase`."""
    calls = life.harness.calls_for(token)
    return any(phrase in str((call.get("json") or {}).get("content", "")) for call in calls)


def wait(what: str, check: Callable[[], bool], life: Life, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"no {what}; {life.console()}"
        time.sleep(0.5)


def allowed(vm: BootedInstance) -> str:
    """The instance's nft allowlist (IPv4), as nft lists it in JSON."""
    return vm.exec(["nft", "-j", "list", "set", "inet", "gangway", "allowed_v4"]).stdout


def member_lets_in(life: Life, address: str, member: Who | None = None) -> None:
    """A member of the main role (a new one unless given) runs /addip and opens the link from `address`
    (the IPAuth page's call); a member's new address replaces the one they had."""
    member = member or Who(guild_id=life.tenant, user_id=snowflake(), role_ids=(MAIN,), permissions=0)
    _, answer = life.harness.command("addip", who=member)
    url = str(answer["data"]["components"][0]["components"][0]["url"])
    assert authorize(url.split("#", 1)[1], address).status == 200
    life.members[address] = member


def stopped_with_snapshot(life: Life) -> str:
    """The workflows' steps run until the game is STOPPED, its instance gone; the snapshot it left."""
    tenant, game = life.tenant, life.game
    try:
        pump_steps(lambda: game_row(tenant, game).state is GameState.STOPPED, timeout=180)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{life.console()}") from None
    row = game_row(tenant, game)
    snap = row.resources.snapshot_id or ""
    assert snap and not row.resources.instance_id
    return snap


def stop_until_off(life: Life) -> tuple[Powered, Path]:
    """/stop until STOPPED with a snapshot, the emulator's instance gone and the container powered off
    (cleanly, at EC2's power button) leaving nothing behind; the snapshot's disk image."""
    h, tenant, game = life.harness, life.tenant, life.game
    vm = life.vm()
    instance = game_row(tenant, game).resources.instance_id or ""
    netns, loop = vm.net.name, vm.loop
    payload, answer = h.command("stop", game=game)
    assert answer["data"]["content"] == f"⏳ Stopping **{game}**…"
    snap = stopped_with_snapshot(life)
    assert said(life, payload["token"], f"⚪ **{game}** stopped and saved (snapshot `{snap}`)")
    ec2 = container().client("ec2")
    state = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state in ("shutting-down", "terminated")
    powered = life.launches.instances[instance]
    life.launches.wait_for("the container to power off", lambda: powered.off_at is not None, timeout=120)
    assert powered.clean, life.console()  # it shut down by itself at EC2's power button, not killed
    assert (
        netns
        not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    )
    assert loop not in subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout
    assert not vm.work.exists()
    assert snap in life.launches.snapshots, life.launches.snapshots
    return powered, life.launches.snapshots[snap]


def on_disk(image: Path, path: str) -> str:
    """A file of a kept disk image (ext4, read with debugfs: nothing mounted)."""
    done = subprocess.run(
        ["debugfs", "-R", f"cat {path}", str(image)], capture_output=True, text=True, check=False, timeout=30
    )
    return done.stdout


def channel(life: Life) -> list[str]:
    """What gangway said in the game's channel (bot messages), oldest first."""
    return [str((c.get("json") or {}).get("content", "")) for c in life.harness.channel_calls(CHANNEL)]


def members(vm: BootedInstance) -> list[str]:
    """The addresses in the instance's nft allowlist (IPv4)."""
    listed = json.loads(allowed(vm))["nftables"]
    elems: list[Any] = next((x["set"].get("elem", []) for x in listed if "set" in x), [])
    return [e["elem"]["val"] if isinstance(e, dict) else str(e) for e in elems]

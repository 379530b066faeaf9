"""The instance side on a booted Debian 12 system (devstack/instance): systemd as PID 1, the real user
data run at first boot from the metadata stand-in, the agent installed from the real wheelhouse (served by
a presigned URL of the emulator's S3), its IoT identity from the emulator's SSM, and its link to an mTLS
Mosquitto that plays IoT Core. One instance is booted for the module; the last test powers it off and
checks nothing is left behind.
"""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from chalicelib.lifecycle.bootstrap import GAME_USER, MOUNTPOINT, Bootstrap
from chalicelib.wiring import container
from devstack.aws import Emulator
from devstack.discord_user import snowflake
from devstack.iam import enforced, instance_credentials
from devstack.instance.boot import BootedInstance
from devstack.instance.firstboot import MQTT_TLS_PORT, Idle, phases, prepare
from devstack.instance.iot import TlsBroker, make_pki, tls_mosquitto
from devstack.instance.rootfs import build_rootfs
from tests.access_helpers import Subscriber
from tests.booted_helpers import require_booting, wheelhouse

INSTANCE = "i-0b00d0b00d0b00d00"
GAME = "valheim"
GAME_PORT = 27015
BUCKET = "gangway-artifacts-test"
# The game the restored volume holds: a line to every TCP client, its output in its log.
START_SH = f"""#!/bin/sh
exec python3 -u -c '
import socket, os
s = socket.create_server(("0.0.0.0", {GAME_PORT}))
print("booted game up as uid", os.getuid())
while True:
    c, _ = s.accept()
    c.sendall(b"hello from the booted game\\n")
    c.close()
'
"""


@dataclass
class Booted:
    vm: BootedInstance
    tenant: str
    boot: Bootstrap
    log: str
    events: Subscriber
    broker: TlsBroker
    seen: list[dict[str, Any]]  # every event read so far, whoever waited for it

    def sh(
        self, script: str, *, user: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return self.vm.exec(["sh", "-c", script], user=user, check=False, timeout=timeout)

    def next(self, timeout: float) -> dict[str, Any]:
        _topic, msg = self.events.next(timeout=timeout)
        self.seen.append(msg)
        return msg

    def event(self, kind: str, timeout: float = 120, *, earlier: bool = False) -> dict[str, Any]:
        """The next `kind` event (or, with `earlier`, one already read by another wait)."""
        if earlier:
            for msg in self.seen:
                if msg.get("type") == kind:
                    return msg
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind!r} event from the booted agent; console: {self.console()}")
            try:
                msg = self.next(timeout=left)
            except queue.Empty:
                continue
            if msg.get("type") == kind:
                return msg

    def console(self) -> str:
        return self.vm.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def booted(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    require_booting()
    rootfs = build_rootfs()
    built = wheelhouse()
    pki = make_pki()
    tenant = snowflake()
    files = tmp_path_factory.mktemp("volume")
    (files / "game").mkdir()
    (files / "game" / "start.sh").write_text(START_SH)
    (files / "game" / "start.sh").chmod(0o755)
    c = container()
    with tls_mosquitto(tmp_path_factory.mktemp("broker"), pki) as broker:
        events = Subscriber("127.0.0.1", broker.plain_port, f"gangway/{tenant}/{GAME}/evt")
        instance = prepare(
            rootfs,
            instance_id=INSTANCE,
            tenant=tenant,
            game=GAME,
            stage=c.settings.stage,
            region=c.settings.region,
            aws_url=emulator.url,
            # SigV4 (a presigned URL's only form moto can check, and what AWS wants of new buckets).
            s3=boto3.client(
                "s3",
                region_name=c.settings.region,
                endpoint_url=emulator.url,
                config=Config(signature_version="s3v4"),
            ),
            ssm=c.client("ssm"),
            bucket=BUCKET,
            wheelhouse=(built.archive.read_bytes(), built.requirements),
            pki=pki,
            broker=broker,
            tcp_ports=(GAME_PORT,),
            disk_files=files,
            log_path=tmp_path_factory.mktemp("console") / "console.log",
            credentials=instance_credentials(c.settings.stage, INSTANCE) if enforced() else None,
            # Idle after 20 s without players, counted every 2 s: the last test sees it within this boot.
            idle=Idle(warn_s=10, stop_s=20, grace_s=0, check_s=2),
        )
        vm = instance.vm
        try:
            vm.start()
            log = vm.wait_user_data(timeout=300)
            yield Booted(vm, tenant, instance.boot, log, events, broker, [])
        finally:
            vm.stop()
            events.close()


def test_first_boot_runs_the_user_data_and_the_agent_comes_up_under_its_unit_over_mtls(
    booted: Booted,
) -> None:
    assert "gangway bootstrap: done" in booted.log and "FAILED" not in booted.log, booted.log
    marks = phases(booted.log)
    assert [name for name, _ in marks] == ["packages", "disk", "agent-install", "key-fetch", "game-start"]
    assert [at for _, at in marks] == sorted(at for _, at in marks)
    ready = booted.event("ready")
    assert ready["body"]["version"], ready
    show = booted.vm.exec(
        ["systemctl", "show", "gangway-agent", "-p", "ActiveState,Restart,NoNewPrivileges,ProtectSystem,User"]
    ).stdout
    props = dict(line.split("=", 1) for line in show.splitlines())
    assert props == {
        "ActiveState": "active",
        "Restart": "on-failure",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "yes",
        "User": "",
    }, show


def test_the_game_user_exists_owns_the_game_folder_and_autostart_runs_the_game_as_it(booted: Booted) -> None:
    uid = booted.sh(f"id -u {GAME_USER}").stdout.strip()
    assert uid and uid != "0"
    assert (
        booted.sh(f"stat -c %U {MOUNTPOINT}/game {MOUNTPOINT}/game/start.sh").stdout.split()
        == [GAME_USER] * 2
    )
    assert booted.sh(f"stat -c %U:%a {MOUNTPOINT}").stdout.strip() == "root:755"  # sshd's chroot rule
    deadline = time.monotonic() + 60
    owner = ""
    while time.monotonic() < deadline:
        owner = booted.sh(
            'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = python3 ] && '
            "grep -q 'booted game' $p/cmdline 2>/dev/null && "
            "awk '/^Uid:/{print $2}' $p/status; done"
        ).stdout.strip()
        if owner:
            break
        time.sleep(1)
    assert owner.splitlines() and set(owner.splitlines()) == {uid}, owner
    hello = booted.sh(
        f"python3 -c 'import socket; print(socket.create_connection((\"127.0.0.1\", {GAME_PORT}), 5).recv(100))'"
    )
    assert "hello from the booted game" in hello.stdout, hello.stderr


def test_the_game_runs_as_its_user_in_its_own_unit_with_its_output_in_the_journal(booted: Booted) -> None:
    uid = booted.sh(f"id -u {GAME_USER}").stdout.strip()
    deadline = time.monotonic() + 60
    while True:
        show = booted.sh("systemctl show gangway-game -p MainPID,ActiveState,Type").stdout
        props = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
        if props.get("ActiveState") == "active" and props.get("MainPID", "0") != "0":
            break
        assert time.monotonic() < deadline, show
        time.sleep(1)
    pid = props["MainPID"]
    assert booted.sh(f"awk '/^Uid:/{{print $2}}' /proc/{pid}/status").stdout.strip() == uid
    assert booted.sh(f"cat /proc/{pid}/cgroup").stdout.strip().endswith("/system.slice/gangway-game.service")
    assert "booted game" in booted.sh(f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
    journal = booted.sh("journalctl -u gangway-game --no-pager -o cat").stdout
    assert f"booted game up as uid {uid}" in journal, journal
    # Not the agent's child but systemd's (the agent supervises it through `systemd-run --wait`).
    assert booted.sh(f"awk '/^PPid:/{{print $2}}' /proc/{pid}/status").stdout.strip() == "1"


def test_the_restored_data_disk_is_kept_and_mounted_by_uuid(booted: Booted) -> None:
    uuid = booted.sh("blkid -p -s UUID -o value /dev/xvdf").stdout.strip()
    assert uuid
    fstab = booted.sh("cat /etc/fstab").stdout
    assert f"UUID={uuid} {MOUNTPOINT} auto defaults,nofail 0 2" in fstab.splitlines()
    assert booted.sh(f"findmnt -n -o SOURCE {MOUNTPOINT}").stdout.strip() == "/dev/xvdf"
    assert booted.sh(f"cat {MOUNTPOINT}/game/start.sh").stdout == START_SH  # not formatted again
    assert booted.sh("blkid -p -s LABEL -o value /dev/xvdf").stdout.strip() == "gangway-data"


def test_the_game_user_cannot_reach_the_metadata_service_but_root_can(booted: Booted) -> None:
    token = "curl -sf -m 5 -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60'"
    assert booted.sh(token).returncode == 0  # the agent (root) keeps its instance role
    denied = booted.sh(token, user=GAME_USER)
    assert denied.returncode != 0 and denied.stdout == ""
    py = "import socket; socket.create_connection(('169.254.169.254', 80), 5)"
    assert booted.sh(f'python3 -c "{py}"', user=GAME_USER).returncode != 0


def test_the_key_is_the_agents_alone_and_gone_from_ssm(booted: Booted) -> None:
    for name in ("private.pem.key", "device.pem.crt"):
        assert booted.sh(f"stat -c %U:%a /etc/gangway/{name}").stdout.strip() == "root:600"
    denied = booted.sh("cat /etc/gangway/private.pem.key", user=GAME_USER)
    assert denied.returncode != 0 and "BEGIN" not in denied.stdout
    ssm = container().client("ssm")
    prefix = f"{booted.boot.parameter_prefix}/{INSTANCE}/"
    for name in ("certificate", "private-key"):
        with pytest.raises(ssm.exceptions.ParameterNotFound):
            ssm.get_parameter(Name=prefix + name)


def test_the_game_user_cannot_connect_to_the_broker_as_the_agent(booted: Booted) -> None:
    # Without the key no certificate can be offered, and the broker (as IoT Core) wants one.
    script = (
        "import ssl, socket\n"
        "ctx = ssl.create_default_context(cafile='/etc/gangway/AmazonRootCA1.pem')\n"
        "ctx.load_cert_chain('/etc/gangway/device.pem.crt', '/etc/gangway/private.pem.key')\n"
    )
    as_game = booted.sh(f'python3 -c "{script}"', user=GAME_USER)
    assert as_game.returncode != 0 and "Permission denied" in as_game.stderr
    bare = (
        "import ssl, socket\n"
        "ctx = ssl.create_default_context(cafile='/etc/gangway/AmazonRootCA1.pem')\n"
        f"s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', {MQTT_TLS_PORT}), 5), server_hostname='localhost')\n"
        "s.sendall(bytes([0x10, 0x0c, 0, 4]) + b'MQTT' + bytes([4, 2, 0, 60, 0, 0]))\n"
        "assert s.recv(4)[:1] == bytes([0x20]), 'connected'\n"
    )
    assert booted.sh(f'python3 -c "{bare}"', user=GAME_USER).returncode != 0


def _command(booted: Booted, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """One request on the game's `cmd` topic (as the backend publishes it) and the agent's reply."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    request = f"booted-{time.monotonic_ns()}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"backend-{request}")
    client.connect("127.0.0.1", booted.broker.plain_port)
    client.loop_start()
    payload = json.dumps({"id": request, "type": kind, "body": body})
    client.publish(f"gangway/{booted.tenant}/{GAME}/cmd", payload, qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            msg = booted.next(timeout=1)
        except queue.Empty:
            continue
        if msg.get("id") == request:
            return msg
    raise AssertionError(f"no reply to {kind}")


def _reach(address: str, port: int) -> bool:
    """From this machine (through the veth, the source is the host's end): does the game answer?"""
    try:
        with socket.create_connection((address, port), timeout=3) as conn:
            return b"hello from the booted game" in conn.recv(100)
    except OSError:
        return False


def test_players_let_in_reach_the_game_and_others_are_dropped(booted: Booted) -> None:
    vm = booted.vm
    until = time.time() + 600
    reply = _command(
        booted,
        "firewall.sync",
        {"mode": "full", "grants": [{"address": "198.51.100.7", "expires_at": until}]},
    )
    assert reply["type"] == "firewall.sync.reply", reply
    members = vm.exec(["nft", "-j", "list", "set", "inet", "gangway", "allowed_v4"]).stdout
    assert "198.51.100.7" in members and vm.net.host_ip not in members
    assert not _reach(vm.net.guest_ip, GAME_PORT)  # this machine is not a player: dropped
    _command(
        booted,
        "firewall.sync",
        {"mode": "delta", "grants": [{"address": vm.net.host_ip, "expires_at": until}]},
    )
    assert vm.net.host_ip in vm.exec(["nft", "-j", "list", "set", "inet", "gangway", "allowed_v4"]).stdout
    assert _reach(vm.net.guest_ip, GAME_PORT)
    _command(booted, "firewall.sync", {"mode": "delta", "revoke": [vm.net.host_ip]})
    assert not _reach(vm.net.guest_ip, GAME_PORT)


def test_the_agent_is_restarted_when_it_dies(booted: Booted) -> None:
    before = booted.vm.exec(["systemctl", "show", "gangway-agent", "-p", "NRestarts,MainPID"]).stdout
    props = dict(line.split("=", 1) for line in before.splitlines())
    booted.vm.exec(["kill", "-9", props["MainPID"]])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = dict(
            line.split("=", 1)
            for line in booted.vm.exec(
                ["systemctl", "show", "gangway-agent", "-p", "NRestarts,ActiveState"]
            ).stdout.splitlines()
        )
        if int(now["NRestarts"]) > int(props["NRestarts"]) and now["ActiveState"] == "active":
            booted.event("ready", timeout=60)  # back on the broker: the next tests' requests are heard
            return
        time.sleep(1)
    raise AssertionError(f"the agent was not restarted: {now}")


def test_files_gives_a_password_for_the_real_sshd_chrooted_and_uploads_belong_to_the_game_user(
    booted: Booted,
) -> None:
    import paramiko

    vm = booted.vm
    _command(
        booted,
        "firewall.sync",
        {"mode": "delta", "grants": [{"address": vm.net.host_ip, "expires_at": time.time() + 600}]},
    )
    reply = _command(booted, "sftp.open", {"ttl_s": 300, "host": vm.net.guest_ip})
    assert reply["type"] == "sftp.open.reply", reply
    login = reply["body"]
    transport = paramiko.Transport((vm.net.guest_ip, 2222))
    try:
        transport.connect(username=login["username"], password=login["password"])
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        assert "game" in sftp.listdir("/") and "etc" not in sftp.listdir("/")  # chrooted to the data disk
        with sftp.open("/game/world.txt", "w") as fh:
            fh.write("uploaded through the booted sshd\n")
        sftp.close()
    finally:
        transport.close()
    owner = booted.sh(f"stat -c %U {MOUNTPOINT}/game/world.txt").stdout.strip()
    assert owner == GAME_USER
    wrong = paramiko.Transport((vm.net.guest_ip, 2222))
    try:
        with pytest.raises(paramiko.AuthenticationException):
            wrong.connect(username=login["username"], password=login["password"] + "x")
    finally:
        wrong.close()


def test_a_spot_notice_from_the_metadata_service_stops_the_game_within_the_two_minutes(
    booted: Booted,
) -> None:
    assert booted.vm.imds is not None
    booted.vm.imds.spot_notice("terminate", in_s=120)
    noticed = time.monotonic()
    notice = booted.event("spot.notice", timeout=120)
    assert time.monotonic() - noticed < 120
    assert notice["body"]["action"] == "terminate" and notice["body"]["game_stopped"] is True, notice


def test_an_idle_game_is_shut_down_and_the_container_powers_off_leaving_nothing_behind(
    booted: Booted,
) -> None:
    vm = booted.vm
    netns, loop, root = vm.net.name, vm.loop, vm.root
    # The agent counts players every 2 s (the user data's check_interval_s) and says when it is idle...
    idle = booted.event("idle.shutdown", timeout=120, earlier=True)
    assert idle["body"]["idle_s"] >= 20, idle
    # ... and the backend answers as StopGame does: the agent stops the game and powers the instance off.
    reply = _command(booted, "shutdown", {"poweroff": True})
    assert reply["body"] == {"stopping": True, "poweroff": True}, reply
    assert vm.wait_stopped(90), booted.console()
    vm.stop()
    assert (
        netns
        not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    )
    assert loop not in subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout
    assert str(root) not in Path("/proc/mounts").read_text()
    assert not vm.work.exists()
    ifaces = json.loads(
        subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=False).stdout
    )
    assert vm.net.host_if not in {i["ifname"] for i in ifaces}

"""A game's life through the local stack on a booted instance: signed interactions drive the real
handlers and workflows (moto executing the ASL), and the instance the start workflow launches in the
emulator is booted here as Debian 12 (devstack/instance/launches.py) with that instance's user data, id
and role. Its agent installs from the deployment's real wheelhouse in the emulator's S3, fetches the key
the backend made from SSM, and connects over mTLS to the stand-in broker at the IoT endpoint the
backend reports (the instance's DNS names the broker; its certificate comes from the emulator's IoT,
which issues from the broker's CA while this module runs, and the broker allows it what the instance
policy allows its thing). Its events reach the backend as in the local stack (the IoT rule's bridge →
agent-events queue → agent_events handler); the backend's requests reach it through the same broker.

/start → RUNNING; /addip lets a player into its nft set; /openport on the running game is filtered at
once; /files logs in through the instance's sshd and uploads the game; /stop snapshots, terminates, and
the container powers off. /start from that snapshot runs the uploaded game for the players let in, and
/stop saves it; a third start ends with a Spot notice from the metadata service, which saves and stops
it within EC2's two minutes. A fourth, launched with short idle defaults set in the settings as an
operator would, goes unplayed: the agent's idle warning is told in the game's channel and its idle
shutdown saves, snapshots and powers the container off. Four boots for the module (about 30 s each with
the root file system cached).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from chalicelib.games import GameState
from chalicelib.wiring import container
from devstack.aws import Emulator
from devstack.discord_api import DiscordStandIn
from devstack.instance.boot import BootedInstance
from tests.booted_helpers import (
    Life,
    allowed,
    booted_stack,
    channel,
    deploy,
    member_lets_in,
    members,
    on_disk,
    said,
    stop_until_off,
    stopped_with_snapshot,
    wait,
)
from tests.lifecycle_helpers import create_game, game_row, pump_steps

GAME = "valheim"
NEW_PORT = 27016  # opened by /openport while the game runs


@pytest.fixture(scope="module")
def life(
    emulator: Emulator, standin: DiscordStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Life]:
    with booted_stack(emulator, standin, tmp_path_factory, GAME) as booted:
        yield booted


def _reach(address: str, port: int) -> bool:
    """From this machine, through the veth: does a listener on the instance answer?"""
    try:
        with socket.create_connection((address, port), timeout=3) as conn:
            return b"booted listener" in conn.recv(100)
    except OSError:
        return False


def _start(life: Life) -> BootedInstance:
    """/start, the steps run until the game is RUNNING (or the start failed); its booted instance."""
    h, tenant = life.harness, life.tenant
    payload, answer = h.command("start", game=GAME)
    assert answer["data"]["content"] == f"⏳ Starting **{GAME}**…"
    try:
        pump_steps(
            lambda: game_row(tenant, GAME).state in (GameState.RUNNING, GameState.STOPPED), timeout=420
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{life.console()}") from None
    assert game_row(tenant, GAME).state is GameState.RUNNING, life.console()
    assert said(life, payload["token"], f"🟢 **{GAME}** is up at"), life.console()
    return life.vm()


def _game_up(vm: BootedInstance) -> bool:
    """The game's unit is active and its main process runs as the game's user."""
    uid = vm.exec(["id", "-u", "gangway"]).stdout.strip()
    show = vm.exec(["systemctl", "show", "gangway-game", "-p", "MainPID,ActiveState"]).stdout
    props = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
    if props.get("ActiveState") != "active" or props.get("MainPID", "0") == "0":
        return False
    status = vm.exec(["cat", f"/proc/{props['MainPID']}/status"], check=False).stdout
    return any(line.split()[1:2] == [uid] for line in status.splitlines() if line.startswith("Uid:"))


def test_start_boots_the_launched_instance_and_its_agent_reports_ready_over_mtls(life: Life) -> None:
    tenant = life.tenant
    create_game(life.harness, GAME)
    vm = _start(life)
    game = game_row(tenant, GAME)
    assert vm.metadata.instance_id == game.resources.instance_id
    assert vm.exec(["systemctl", "is-active", "gangway-agent"]).stdout.strip() == "active"
    # Its agent holds the certificate the backend made for this instance, issued by the broker's CA...
    held = vm.exec(["cat", "/etc/gangway/device.pem.crt"]).stdout
    iot = container().client("iot")
    thing = f"gangway-{container().settings.stage}-{tenant}-{GAME}"
    (principal,) = iot.list_thing_principals(thingName=thing)["principals"]
    made = iot.describe_certificate(certificateId=principal.rsplit("/", 1)[-1])["certificateDescription"]
    assert held.strip() == made["certificatePem"].strip()
    # ... connects to the endpoint the backend reported, which the instance's DNS gives the broker ...
    toml = vm.exec(["cat", "/etc/gangway/agent.toml"]).stdout
    assert f'endpoint = "{life.endpoint}"' in toml
    # ... and took its key out of SSM once it had it.
    ssm = container().client("ssm")
    prefix = f"/gangway/{container().settings.stage}/{tenant}/{GAME}/{game.resources.instance_id}/"
    for name in ("certificate", "private-key"):
        with pytest.raises(ssm.exceptions.ParameterNotFound):
            ssm.get_parameter(Name=prefix + name)
    assert life.bridge.forwarded >= 1


def test_addip_puts_the_players_address_in_the_instances_nft_set(life: Life) -> None:
    vm = life.vm()
    member_lets_in(life, "198.51.100.7")
    wait("198.51.100.7 in the instance's nft set", lambda: "198.51.100.7" in allowed(vm), life)
    assert vm.net.host_ip not in allowed(vm)


# The game an admin uploads with /files: a line to every client on the port /openport opened; on its
# stop signal it saves (a file in its folder) and exits.
START_SH = f"""#!/bin/sh
exec python3 -u -c '
import os, signal, socket, sys
def save(*_):
    open("saved.txt", "w").write("saved at stop\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, save)
s = socket.create_server(("0.0.0.0", {NEW_PORT}))
print("restored game up as uid", os.getuid())
while True:
    c, _ = s.accept()
    c.sendall(b"booted listener\\n")
    c.close()
'
"""
# A listener of the game's user on the port /openport opens: a line to every client.
LISTENER = f"""
import socket
s = socket.create_server(("0.0.0.0", {NEW_PORT}))
while True:
    c, _ = s.accept()
    c.sendall(b"booted listener\\n")
    c.close()
"""


def test_a_port_opened_on_the_running_game_is_filtered_at_once(life: Life) -> None:
    vm, h = life.vm(), life.harness
    vm.exec(["systemd-run", "--unit=booted-listener", "--uid=gangway", "python3", "-c", LISTENER])
    # Not yet one of the game's ports: the game's firewall leaves it alone (its security group would not).
    wait("the listener", lambda: _reach(vm.net.guest_ip, NEW_PORT), life)
    payload, answer = h.command("openport", game=GAME, ports=f"tcp:{NEW_PORT}")
    assert answer["type"] == 5, answer
    h.run_jobs_for(payload["token"], wait=60)
    reply = str(h.calls_for(payload["token"])[-1]["json"]["content"])
    assert f"**{GAME}** is running: its firewall filters" in reply and str(NEW_PORT) in reply, reply
    assert not _reach(vm.net.guest_ip, NEW_PORT)  # this machine is not let in: dropped from the reply on
    assert "198.51.100.7" in allowed(vm)
    member_lets_in(life, vm.net.host_ip)
    wait("this machine in the nft set", lambda: vm.net.host_ip in allowed(vm), life)
    assert _reach(vm.net.guest_ip, NEW_PORT)


def test_files_gives_a_login_to_the_instances_sshd_chrooted_and_uploads_belong_to_the_game_user(
    life: Life,
) -> None:
    import base64
    import hashlib

    import paramiko

    vm, h = life.vm(), life.harness
    payload, answer = h.command("files", game=GAME)
    assert answer["type"] == 5, answer
    h.run_jobs_for(payload["token"], wait=60)
    edit = h.calls_for(payload["token"])[-1]["json"]
    fields = {f["name"]: str(f["value"]).strip("`") for f in edit["embeds"][0]["fields"]}
    # The address is the emulator's instance's; this instance answers at its veth's far end.
    assert fields["Address"].endswith(":2222/"), fields
    transport = paramiko.Transport((vm.net.guest_ip, 2222))
    try:
        transport.connect(username=fields["User name"], password=fields["Password"])
        key = transport.get_remote_server_key().asbytes()
        assert (
            base64.b64encode(hashlib.sha256(key).digest()).decode().rstrip("=") in fields["Host key (SHA256)"]
        )
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        assert "game" in sftp.listdir("/") and "etc" not in sftp.listdir("/")  # chrooted to the data disk
        with sftp.open("/game/world.txt", "w") as fh:
            fh.write("uploaded through /files\n")
        with sftp.open("/game/start.sh", "w") as fh:  # the game an admin installs: it starts next boot
            fh.write(START_SH)
        sftp.chmod("/game/start.sh", 0o755)
        sftp.close()
    finally:
        transport.close()
    assert vm.exec(["stat", "-c", "%U", "/srv/gangway/game/world.txt"]).stdout.strip() == "gangway"
    again = paramiko.Transport((vm.net.guest_ip, 2222))
    try:
        with pytest.raises(paramiko.AuthenticationException):  # one connection per login
            again.connect(username=fields["User name"], password=fields["Password"])
    finally:
        again.close()


def test_stop_snapshots_terminates_and_the_container_powers_off_keeping_the_disk(life: Life) -> None:
    _powered, image = stop_until_off(life)
    assert on_disk(image, "/game/world.txt") == "uploaded through /files\n"


def test_a_start_from_the_snapshot_runs_the_uploaded_game_as_its_user_for_the_players_let_in(
    life: Life,
) -> None:
    vm = _start(life)
    assert vm.exec(["cat", "/srv/gangway/game/world.txt"]).stdout == "uploaded through /files\n"
    wait("the restored game running as its user", lambda: _game_up(vm), life, timeout=60)
    host = vm.net.host_ip
    if host not in life.members:  # this boot's veth has an address nobody let in: filtered from boot on
        assert not _reach(vm.net.guest_ip, NEW_PORT)
        member_lets_in(life, host)
    # The new agent gets the tenant's whole set when it connects.
    wait("the players let in, in the nft set", lambda: {host, "198.51.100.7"} <= set(members(vm)), life)
    wait("the game answering a player let in", lambda: _reach(vm.net.guest_ip, NEW_PORT), life)
    # The member moves to another address: this machine's is revoked, and dropped at once.
    member_lets_in(life, "198.51.100.9", life.members[host])
    wait("this machine out of the nft set", lambda: host not in members(vm), life)
    assert not _reach(vm.net.guest_ip, NEW_PORT)


def test_stop_saves_and_stops_the_game_and_the_container_powers_off(life: Life) -> None:
    _powered, image = stop_until_off(life)
    assert on_disk(image, "/game/saved.txt") == "saved at stop\n"  # the game saved on its stop signal


def test_a_spot_notice_from_the_metadata_service_saves_and_stops_the_game_within_the_two_minutes(
    life: Life,
) -> None:
    vm = _start(life)
    tenant = life.tenant
    wait("the game running", lambda: _game_up(vm), life, timeout=60)
    vm.exec(["rm", "/srv/gangway/game/saved.txt"])  # the last stop's save, restored with the disk
    instance = game_row(tenant, GAME).resources.instance_id or ""
    assert vm.imds is not None
    noticed = time.monotonic()
    vm.imds.spot_notice("terminate", in_s=120)  # EC2 takes the instance back in two minutes
    try:
        pump_steps(lambda: game_row(tenant, GAME).state is GameState.STOPPED, timeout=120)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{life.console()}") from None
    powered = life.launches.instances[instance]
    life.launches.wait_for("the container to power off", lambda: powered.off_at is not None, timeout=60)
    assert time.monotonic() - noticed < 120 and powered.clean
    snap = game_row(tenant, GAME).resources.snapshot_id or ""
    assert on_disk(life.launches.snapshots[snap], "/game/saved.txt") == "saved at stop\n"


def test_an_idle_game_warns_in_its_channel_then_is_saved_and_stopped_and_the_container_powers_off(
    life: Life,
) -> None:
    tenant = life.tenant
    told = len(channel(life))
    forwarded = life.bridge.forwarded
    # The stage's idle defaults, short (the game has no minutes of its own): a count every second, a
    # start-up grace of 15 s, the warning after 5 s more without players and the shutdown after 15 s.
    saved = deploy(idle_check_s=1, idle_grace_s=15, idle_warn_s=5, idle_stop_s=15)
    try:
        vm = _start(life)
    finally:
        deploy(saved)  # the launch rendered them; what follows runs on the module's settings
    toml = vm.exec(["cat", "/etc/gangway/agent.toml"]).stdout
    assert "warn_after_s = 5\nstop_after_s = 15\nstartup_grace_s = 15\ncheck_interval_s = 1\n" in toml, toml
    wait("the game running", lambda: _game_up(vm), life, timeout=60)
    vm.exec(["rm", "-f", "/srv/gangway/game/saved.txt"])  # the last stop's save, restored with the disk
    instance = game_row(tenant, GAME).resources.instance_id or ""
    # Nobody connects: the agent warns (through the broker, the rule's bridge and the agent-events
    # queue), and the backend says so in the channel the game was started from.
    wait(
        "the idle warning in the channel",
        lambda: any("💤 Nobody has played" in m for m in channel(life)[told:]),
        life,
    )
    snap = stopped_with_snapshot(life)
    heard = channel(life)[told:]
    assert [m.split("**", 1)[0] for m in heard] == [
        "💤 Nobody has played on ",
        "💤 Nobody played on ",
        "⚪ ",
    ], heard
    assert heard[-1] == f"⚪ **{GAME}** stopped and saved (snapshot `{snap}`) after nobody played.", heard
    assert life.bridge.forwarded > forwarded
    powered = life.launches.instances[instance]
    life.launches.wait_for("the container to power off", lambda: powered.off_at is not None, timeout=120)
    assert powered.clean, life.console()
    assert on_disk(life.launches.snapshots[snap], "/game/saved.txt") == "saved at stop\n"  # saved first

"""A catalogue game on the booted Debian 12 system: the agent installs Luanti's server (Debian's
`minetest-server`) with apt at its start, runs it under its own unit as the game user, reports `playable`
only once the server listens on its UDP port, and skips the install at the next start (the data disk's
marker). The instance has no internet: the .debs come from a local apt repository built on this machine
from Debian's archive (devstack/instance/aptrepo.py). One boot for the module, as the booted-instance
tests do; the times measured are printed (`-s`) for `make bench`.
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from chalicelib.lifecycle.bootstrap import GAME_USER, MOUNTPOINT
from chalicelib.wiring import container
from devstack.aws import Emulator
from devstack.discord_user import snowflake
from devstack.iam import enforced, instance_credentials
from devstack.instance.aptrepo import build_repo, install_into
from devstack.instance.catalogue import LUANTI_PACKAGES, LUANTI_PORT, apply_entry
from devstack.instance.firstboot import Idle, prepare
from devstack.instance.iot import make_pki, tls_mosquitto
from devstack.instance.rootfs import build_rootfs
from tests.access_helpers import Subscriber
from tests.booted_helpers import require_booting, wheelhouse
from tests.test_booted_instance import BUCKET, Booted

INSTANCE = "i-0ca7a1060ca7a1060"
GAME = "luanti"
PORT = LUANTI_PORT
# The game the user data starts first (before the test gives the agent the catalogue entry): idle.
WAIT_SH = "#!/bin/sh\nexec sleep infinity\n"
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def booted(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    require_booting()
    rootfs = build_rootfs()
    try:
        repo = build_repo(LUANTI_PACKAGES, rootfs)
    except RuntimeError as exc:  # this machine cannot reach Debian's archive
        pytest.fail(f"cannot build the local apt repository: {exc}")
    built = wheelhouse()
    pki = make_pki()
    tenant = snowflake()
    files = tmp_path_factory.mktemp("volume")
    (files / "game").mkdir()
    (files / "game" / "start.sh").write_text(WAIT_SH)
    (files / "game" / "start.sh").chmod(0o755)
    c = container()
    with tls_mosquitto(tmp_path_factory.mktemp("broker"), pki) as broker:
        events = Subscriber("127.0.0.1", broker.plain_port, f"gangway/{tenant}/{GAME}/evt")
        instance = prepare(
            rootfs, instance_id=INSTANCE, tenant=tenant, game=GAME, stage=c.settings.stage,
            region=c.settings.region, aws_url=emulator.url,
            # SigV4 (a presigned URL's only form moto can check).
            s3=boto3.client("s3", region_name=c.settings.region, endpoint_url=emulator.url,
                            config=Config(signature_version="s3v4")),
            ssm=c.client("ssm"), bucket=BUCKET, wheelhouse=(built.archive.read_bytes(), built.requirements), pki=pki, broker=broker,
            disk_files=files, log_path=tmp_path_factory.mktemp("console") / "console.log",
            credentials=instance_credentials(c.settings.stage, INSTANCE) if enforced() else None,
            idle=Idle(),
        )
        vm = instance.vm
        try:
            vm.start()
            log = vm.wait_user_data(timeout=300)
            assert "gangway bootstrap: done" in log, log
            install_into(repo, vm.root)
            yield Booted(vm, tenant, instance.boot, log, events, broker, [])
        finally:
            vm.stop()
            events.close()


def _restart_agent(booted: Booted) -> float:
    booted.events.drain(0.2)
    began = time.monotonic()
    booted.vm.exec(["systemctl", "restart", "gangway-agent"], timeout=120)
    return began


def _until(booted: Booted, kind: str, timeout: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Events up to and including the next `kind` one."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {kind!r} event; saw {[m.get('type') for m in seen]}; {booted.console()}")
        try:
            msg = booted.next(timeout=min(left, 5))
        except queue.Empty:
            continue
        seen.append(msg)
        if msg.get("type") == kind:
            return msg, seen
        if msg.get("type") == "install.progress" and msg["body"]["phase"] == "failed":
            raise AssertionError(f"the install failed: {msg['body']['message']}")


def _listening(booted: Booted) -> str:
    return booted.sh(f"ss -Hulnp 'sport = :{PORT}'").stdout


def test_first_start_installs_from_the_archive_and_is_playable_once_the_server_listens(booted: Booted) -> None:
    apply_entry(booted.vm.root)
    began = _restart_agent(booted)
    _until(booted, "ready", timeout=120)  # the restarted agent's (events of the one before come first)
    playable, seen = _until(booted, "playable", timeout=600)
    TIMES["first_start_s"] = time.monotonic() - began
    kinds = ["ready", *(m["type"] for m in seen)]
    progress = [m["body"] for m in seen if m["type"] == "install.progress"]
    assert kinds.index("install.progress") < kinds.index("playable"), kinds
    phases = [p["phase"] for p in progress]
    assert phases[0] == "download" and "install" in phases and phases[-1] == "done", phases
    # Percents are apt's own (Status-Fd), at most one every 3 s: a quick install may show only 0 and 100.
    percents = [p["percent"] for p in progress if p["percent"] is not None]
    assert percents and percents == sorted(percents) and percents[0] >= 0 and percents[-1] == 100, progress
    assert playable["body"]["signal"] == "port" and playable["body"]["after_s"] >= 0
    # Playable means the real server holds its UDP port now, as the game user, under its own unit.
    sockets = _listening(booted)
    assert "minetestserver" in sockets, sockets
    uid = booted.sh(f"id -u {GAME_USER}").stdout.strip()
    pid = booted.sh("systemctl show gangway-game -p MainPID --value").stdout.strip()
    assert pid not in ("", "0")
    assert booted.sh(f"awk '/^Uid:/{{print $2}}' /proc/{pid}/status").stdout.strip() == uid
    assert "minetestserver" in booted.sh(f"cat /proc/{pid}/comm").stdout
    # Debian's own minetest-server service did not start (the agent runs the game), nor will it at boot.
    assert booted.sh("systemctl is-active minetest-server").stdout.strip() != "active"
    assert booted.sh("systemctl is-enabled minetest-server").stdout.strip() != "enabled"
    marker = booted.sh(f"cat {MOUNTPOINT}/.gangway/install.json").stdout
    assert '"version": "1"' in marker and '"method": "apt"' in marker


def test_a_second_start_skips_the_install(booted: Booted) -> None:
    assert "first_start_s" in TIMES, "the first test installs the game"
    began = _restart_agent(booted)
    _until(booted, "ready", timeout=120)
    playable, seen = _until(booted, "playable", timeout=300)
    TIMES["second_start_s"] = time.monotonic() - began
    progress = [m["body"]["phase"] for m in seen if m["type"] == "install.progress"]
    assert progress == ["skipped"], progress
    assert playable["body"]["signal"] == "port"
    assert "minetestserver" in _listening(booted)
    print(f"\ncatalogue game (minetest-server, apt): first start {TIMES['first_start_s']:.1f} s "
          f"(install included), second start {TIMES['second_start_s']:.1f} s (install skipped)")


CONSOLE_GAME = f"""import sys
print("console game up", flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "save-all":
        with open("{MOUNTPOINT}/game/saved.txt", "a") as fh:
            fh.write("saved\\n")
    elif cmd == "stop":
        print("stopped by console", flush=True)
        sys.exit(0)
print("console closed", flush=True)
"""


def _command(booted: Booted, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """One request on the game's `cmd` topic (as the backend publishes it) and the agent's reply."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    request = f"catalogue-{time.monotonic_ns()}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"backend-{request}")
    client.connect("127.0.0.1", booted.broker.plain_port)
    client.loop_start()
    payload = json.dumps({"id": request, "type": kind, "body": body})
    client.publish(f"gangway/{booted.tenant}/{GAME}/cmd", payload, qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            msg = booted.next(timeout=1)
        except queue.Empty:
            continue
        if msg.get("id") == request:
            return msg
    raise AssertionError(f"no reply to {kind}")


def test_the_console_saves_and_stops_the_game_in_its_unit(booted: Booted) -> None:
    """`console_save` / `console_stop` reach the game's stdin (a FIFO) under its systemd unit."""
    booted.vm.exec(["sh", "-c", f"cat > {MOUNTPOINT}/game/console.py"], input=CONSOLE_GAME)
    path = booted.vm.root / "etc/gangway/agent.toml"
    text = path.read_text().split("\n[ready]")[0]
    text = text.replace("[launch]\n", '[launch]\nconsole_save = "save-all"\nconsole_stop = "stop"\n', 1)
    command = f'command = ["python3", "-u", "{MOUNTPOINT}/game/console.py"]'
    text = "\n".join(command if line.startswith("command = ") else line for line in text.splitlines())
    path.write_text(text + '\n\n[ready]\nsignal = "log"\npattern = "^console game up$"\n')
    _restart_agent(booted)
    _until(booted, "ready", timeout=120)
    playable, _ = _until(booted, "playable", timeout=120)
    assert playable["body"]["signal"] == "log"
    saved = _command(booted, "game.save", {})
    assert saved["body"] == {"saved": True, "synced": True}, saved
    assert booted.sh(f"cat {MOUNTPOINT}/game/saved.txt").stdout == "saved\n"
    stopped = _command(booted, "game.stop", {"grace_s": 20})
    assert stopped["body"] == {"was_running": True, "exit_code": 0, "killed": False}, stopped
    journal = booted.sh("journalctl -u gangway-game --no-pager -o cat").stdout
    assert "stopped by console" in journal and "console closed" not in journal, journal[-2000:]

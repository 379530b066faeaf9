"""One `gangway-agent` process per running game instance in the stack's emulator (DESIGN.md §5).

In AWS the instance's user data starts the agent; here a supervisor thread watches the emulator's EC2
every second: an instance that is `running` with the tags `gangway:tenant` and `gangway:game` gets an
agent (plain MQTT to the stack's broker, a fake game on a loopback port), and loses it (SIGTERM, then
SIGKILL) when the instance stops or terminates, or when the stack stops. Each agent's config, state,
log and game log live under `<state dir>/agents/<instance id>/`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Final

__all__ = [
    "FAKE_GAME",
    "AgentSpec",
    "LocalAgents",
    "agent_command",
    "agent_config",
    "autostart_of",
    "running_game_instances",
    "start_agent_side",
]

log = logging.getLogger("gangway.agents")

TENANT_TAG: Final = "gangway:tenant"
GAME_TAG: Final = "gangway:game"
# What the agent accepts in a topic name (agent/README.md, `tenant`, `game`).
_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The `[launch] autostart` line of the agent config the user data writes (lifecycle/bootstrap.py).
_AUTOSTART: Final = re.compile(r"^autostart = (true|false)$", re.MULTILINE)
# The local stand-in for the game's data volume, which `disk.preload` reads block by block.
DISK_BYTES: Final = 32 * 1024 * 1024

# The "game": answers every TCP connection with one line and exits cleanly on SIGTERM (its stop signal).
FAKE_GAME: Final = """\
import signal, socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("fake game listening on 127.0.0.1:" + sys.argv[1], flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        conn.sendall(b"gangway local fake game\\n")
"""


@dataclass(frozen=True)
class AgentSpec:
    """One running game instance, as its tags describe it."""

    instance_id: str
    tenant: str
    game: str
    # False when the user data says so (EditGame, preload "read"): the game waits for `game.start`.
    autostart: bool = True


def autostart_of(ec2: Any, instance_id: str) -> bool:
    """What the instance's user data tells its agent: start the game at boot, or wait to be asked."""
    try:
        answer = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        script = base64.b64decode(answer.get("UserData", {}).get("Value", "")).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return True
    found = _AUTOSTART.search(script)
    return found is None or found.group(1) == "true"


def running_game_instances(ec2: Any) -> list[AgentSpec]:
    """Every running instance tagged with a valid tenant and game."""
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": "tag-key", "Values": [GAME_TAG]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )
    found = []
    for page in pages:
        for reservation in page.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                tenant, game = tags.get(TENANT_TAG, ""), tags.get(GAME_TAG, "")
                if inst.get("State", {}).get("Name") != "running":
                    continue
                if _NAME.fullmatch(tenant) and _NAME.fullmatch(game):
                    found.append(AgentSpec(inst["InstanceId"], tenant, game))
                else:
                    log.debug(
                        "instance %s: tags %r/%r name no game; no agent", inst["InstanceId"], tenant, game
                    )
    return found


def agent_config(
    spec: AgentSpec,
    *,
    mqtt_url: str,
    directory: Path,
    game_port: int,
    heartbeat_s: float,
    firewall_table: str | None,
) -> dict[str, Any]:
    """The agent's config file (agent/examples/local.json's shape): plain MQTT, the fake game, no SFTP
    or Spot (no sshd chroot or IMDS here), the firewall only when `firewall_table` is given (root), and
    a sparse file as the data disk (`disk.preload` reads it)."""
    broker = urllib.parse.urlsplit(mqtt_url)
    return {
        "tenant": spec.tenant,
        "game": spec.game,
        "state_dir": str(directory / "state"),
        "heartbeat_interval_s": heartbeat_s,
        "mqtt": {
            "endpoint": broker.hostname or "127.0.0.1",
            "port": broker.port or 1883,
            "transport": "plain",
            "client_id": f"gangway-{spec.tenant}-{spec.game}-{spec.instance_id}",
            "min_reconnect_s": 1,
            "max_reconnect_s": 5,
        },
        "launch": {
            "command": [sys.executable, "-c", FAKE_GAME, str(game_port)],
            "cwd": str(directory),
            "ports": {"tcp": [game_port], "udp": []},
            "stop_signal": "SIGTERM",
            "stop_grace_s": 5,
            "autostart": spec.autostart,
        },
        "sftp": {"enabled": False},
        "firewall": {"enabled": firewall_table is not None, "table": firewall_table or "gangway"},
        "spot": {"enabled": False},
        "logs": {"sink": "file", "path": str(directory / "game.log"), "flush_interval_s": 1},
        "data": {"mountpoint": str(directory), "device": str(directory / "disk.img")},
    }


def agent_command(config: Path) -> list[str]:
    """How to start the agent: the venv's console script, else its module with this interpreter."""
    script = Path(sys.executable).parent / "gangway-agent"
    if script.exists():
        return [str(script), "-c", str(config)]
    return [sys.executable, "-m", "gangway_agent.cli", "-c", str(config)]


@dataclass
class _Running:
    spec: AgentSpec
    proc: subprocess.Popen[bytes]
    log_file: IO[bytes]
    firewall_table: str | None


class LocalAgents:
    """The supervisor: `reconcile()` makes the agent processes match the running instances."""

    def __init__(
        self,
        ec2: Callable[[], Iterable[Any]],
        mqtt_url: str,
        state_dir: Path,
        *,
        interval: float = 1.0,
        heartbeat_s: float = 10.0,
        free_port: Callable[[], int],
        privileged: bool | None = None,
    ) -> None:
        if not state_dir.is_absolute():  # each agent runs in its own folder, where this would mean nothing
            raise ValueError(f"the local agents need an absolute state directory, not {str(state_dir)!r}")
        self._ec2 = ec2  # one EC2 client per region to watch
        self._mqtt_url = mqtt_url
        self._dir = state_dir / "agents"
        self._interval = interval
        self._heartbeat_s = heartbeat_s
        self._free_port = free_port
        # The nftables firewall needs root (and nft); SFTP stays off: sshd refuses a chroot under /tmp.
        self._firewall = (
            (os.geteuid() == 0 and shutil.which("nft") is not None) if privileged is None else privileged
        )
        self._agents: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="local-agents", daemon=True)

    def start(self) -> LocalAgents:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching and stop every agent (each stops its game first)."""
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            running = list(self._agents.values())
            self._agents.clear()
        for agent in running:
            self._end(agent)

    def pids(self) -> dict[str, int]:
        """Instance id → pid of its live agent."""
        with self._lock:
            return {i: a.proc.pid for i, a in self._agents.items() if a.proc.poll() is None}

    def reconcile(self) -> None:
        wanted = {s.instance_id: (s, ec2) for ec2 in self._ec2() for s in running_game_instances(ec2)}
        with self._lock:
            gone = [a for i, a in self._agents.items() if i not in wanted]
            for agent in gone:
                del self._agents[agent.spec.instance_id]
            new = [(s, ec2) for i, (s, ec2) in wanted.items() if i not in self._agents]
            for found, ec2 in new:
                spec = replace(found, autostart=autostart_of(ec2, found.instance_id))
                self._agents[spec.instance_id] = self._spawn(spec)
        for agent in gone:
            self._end(agent)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile()
            except Exception:  # the emulator stopping under us, a transient error: try again next tick
                if self._stop.is_set():
                    return
                log.exception("local agents: could not reconcile with the emulator's instances")
            self._stop.wait(self._interval)

    def _spawn(self, spec: AgentSpec) -> _Running:
        directory = self._dir / spec.instance_id
        directory.mkdir(parents=True, exist_ok=True)
        table = f"gangway_{spec.instance_id.removeprefix('i-')[:16]}" if self._firewall else None
        cfg = agent_config(
            spec,
            mqtt_url=self._mqtt_url,
            directory=directory,
            game_port=self._free_port(),
            heartbeat_s=self._heartbeat_s,
            firewall_table=table,
        )
        with (directory / "disk.img").open("ab") as disk:
            disk.truncate(max(disk.tell(), DISK_BYTES))
        path = directory / "agent.json"
        path.write_text(json.dumps(cfg, indent=2) + "\n")
        log_file = (directory / "agent.log").open("ab")
        proc = subprocess.Popen(
            agent_command(path),
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the game goes with it on SIGKILL
        )
        log.info("agent for %s/%s (%s) started, pid %d", spec.tenant, spec.game, spec.instance_id, proc.pid)
        return _Running(spec, proc, log_file, table)

    def _end(self, agent: _Running) -> None:
        """SIGTERM (the agent stops its game, then exits), SIGKILL to the group after 10 s."""
        proc = agent.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        agent.log_file.close()
        if agent.firewall_table is not None:
            # An instance's firewall outlives its agent; this machine's must not outlive the instance.
            subprocess.run(
                ["nft", "delete", "table", "inet", agent.firewall_table],
                capture_output=True,
                check=False,
                timeout=10,
            )
        spec = agent.spec
        log.info(
            "agent for %s/%s (%s) ended: exit %s", spec.tenant, spec.game, spec.instance_id, proc.returncode
        )


class _Regions:
    """EC2 clients for the stack's region and every region a tenant chose (re-read every 10 s)."""

    def __init__(self, make_client: Callable[[str, str], Any], region: str, tenants_table: str) -> None:
        self._make = make_client
        self._home = region
        self._table = tenants_table
        self._clients: dict[str, Any] = {}
        self._regions: set[str] = {region}
        self._read_at = 0.0

    def __call__(self) -> list[Any]:
        now = time.monotonic()
        if now - self._read_at > 10:
            self._read_at = now
            pages = self._make("dynamodb", self._home).get_paginator("scan")
            for page in pages.paginate(
                TableName=self._table, ProjectionExpression="#r", ExpressionAttributeNames={"#r": "region"}
            ):
                self._regions.update(
                    item["region"]["S"] for item in page.get("Items", []) if "region" in item
                )
        for region in self._regions - set(self._clients):
            self._clients[region] = self._make("ec2", region)
        return list(self._clients.values())


def start_agent_side(
    container: Any, queue_url: str, mqtt_url: str, state_dir: Path, free_port: Callable[[], int]
) -> list[Callable[[], None]]:
    """The bridge and the agents' supervisor of a local stack; returns their stoppers, in start order."""
    import boto3

    from devstack.bridge import MqttBridge

    cfg = container.settings

    def make(service: str, region: str) -> Any:
        client: Any = boto3.client
        return client(service, region_name=region, endpoint_url=cfg.aws_endpoint_url)

    bridge = MqttBridge(mqtt_url, container.sqs(), queue_url).start()
    agents = LocalAgents(
        _Regions(make, cfg.region, cfg.tenants_table), mqtt_url, state_dir, free_port=free_port
    ).start()
    return [bridge.stop, agents.stop]

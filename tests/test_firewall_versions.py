"""A lost firewall delta does not leave a revoked address in: a real agent (its nftables in a network
namespace this test creates) on a real MQTT broker converges on the tenant's grants.

The backend publishes through the app's own path; a lossy stand-in for the network drops one delta on
the way (silently, as a lost QoS 1 message would be). What the agent publishes goes through the IoT
rule's stand-in (`devstack.bridge.rule_message`) into the agent_events Lambda, as in AWS.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import app as app_module
from chalicelib.access import Grant, GrantStore, LinkKind
from chalicelib.agents import MqttPublisher, Outgoing
from chalicelib.games import GameState
from chalicelib.wiring import container
from devstack.bridge import rule_message
from devstack.pump import LambdaContext, sqs_event
from tests.access_helpers import Broker, add_game, make_tenant, require_program

A, B, C = "198.18.7.1", "198.18.7.2", "198.18.7.3"


@dataclass
class LossyPublisher:
    """The app's publisher to the real broker, losing the deltas whose version is in `lose`."""

    inner: MqttPublisher
    lose: set[int] = field(default_factory=set)
    lost: list[bytes] = field(default_factory=list)

    def publish(self, messages: Sequence[Outgoing]) -> None:
        kept = []
        for m in messages:
            body = json.loads(m.payload)["body"]
            if body.get("mode") == "delta" and body.get("version") in self.lose:
                self.lost.append(m.payload)
            else:
                kept.append(m)
        if kept:
            self.inner.publish(kept)


@dataclass
class Host:
    """A real agent whose firewall lives in the namespace `ns`, and the events it sent."""

    agent: Any
    firewall: Any
    ns: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def addresses(self) -> set[str]:
        """What the kernel's set holds now."""
        return set(self.firewall.list_set("allowed_v4"))


def _deliver(body: str) -> None:
    message = {"MessageId": str(uuid.uuid4()), "ReceiptHandle": "r", "Body": body, "Attributes": {}}
    event = sqs_event(message, "arn:aws:sqs:us-east-1:123456789012:test-agent-events", "us-east-1")
    app_module.agent_events(event, LambdaContext(function_name="agent_events"))


@pytest.fixture
def lossy(emulator: object, mqtt_broker: Broker) -> Iterator[LossyPublisher]:
    c = container()
    publisher = LossyPublisher(MqttPublisher(mqtt_broker.url))
    c.__dict__["publisher"] = publisher
    yield publisher
    c.__dict__.pop("publisher", None)


@contextlib.contextmanager
def _host(tmp_path: Path, broker: Broker, tenant: str, heartbeat_s: float) -> Iterator[Host]:
    """Start the agent in this process (its link to the broker, its nft in a fresh namespace)."""
    require_program("nft", "/usr/sbin/nft")
    require_program("ip", "/usr/sbin/ip")
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and this test needs root (network namespaces)")
        pytest.skip("needs root (network namespaces)")
    import paho.mqtt.client as mqtt
    from gangway_agent import config
    from gangway_agent.activity import SocketTables, Watched
    from gangway_agent.agent import Agent, Services
    from gangway_agent.config import Ports
    from gangway_agent.firewall import Firewall
    from gangway_agent.link import MqttLink
    from gangway_agent.logsink import BatchingSink, FileShipper
    from gangway_agent.seams import SubprocessRunner, SystemClock
    from paho.mqtt.enums import CallbackAPIVersion

    ns = f"gwfv-{os.getpid()}-{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=30)
    events: list[dict[str, Any]] = []
    # The IoT rule's stand-in: the agent's `evt` into the agent_events Lambda, in order.
    rule = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rule-{uuid.uuid4().hex[:8]}")
    subscribed = threading.Event()

    def forward(_c: Any, _u: Any, msg: Any) -> None:
        body = rule_message(str(msg.topic), bytes(msg.payload))
        if body is not None:
            events.append(json.loads(body))
            _deliver(body)

    rule.on_message = forward
    rule.on_subscribe = lambda *_: subscribed.set()
    rule.on_connect = lambda c, *_: c.subscribe(f"gangway/{tenant}/+/evt", qos=1)
    rule.connect(broker.host, broker.port)
    rule.loop_start()
    assert subscribed.wait(5)
    cfg = config.parse(
        {
            "tenant": tenant,
            "game": "valheim",
            "state_dir": str(tmp_path / "state"),
            "heartbeat_interval_s": heartbeat_s,
            "mqtt": {
                "endpoint": broker.host,
                "port": broker.port,
                "transport": "plain",
                "min_reconnect_s": 0.1,
                "max_reconnect_s": 1.0,
            },
            "launch": {
                "command": [sys.executable, "-c", "import time; time.sleep(600)"],
                "cwd": str(tmp_path),
                "ports": {"tcp": [27015], "udp": []},
                "autostart": False,
            },
            "sftp": {"enabled": False},
            "logs": {"sink": "file", "path": str(tmp_path / "game.log"), "flush_interval_s": 0.05},
            "data": {"mountpoint": str(tmp_path)},
            "spot": {"enabled": False},
        }
    )
    clock, runner = SystemClock(), SubprocessRunner()
    fw = Firewall(
        table="gangway",
        tcp_ports=[27015],
        udp_ports=[],
        runner=runner,
        clock=clock,
        state_file=tmp_path / "state" / "grants.json",
        nft=("ip", "netns", "exec", ns, "nft"),
    )
    link = MqttLink(cfg.mqtt, sub_topic=cfg.cmd_topic, pub_topic=cfg.evt_topic)
    agent = Agent(
        cfg,
        Services(
            link=link,
            clock=clock,
            runner=runner,
            firewall=fw,
            sink=BatchingSink(FileShipper(cfg.logs.path), batch_lines=100, flush_interval_s=0.05),
            activity=SocketTables(Watched.of(Ports())),
        ),
    )
    agent.start()
    assert link.wait_connected(10)
    loop = threading.Thread(target=agent.run, daemon=True)
    loop.start()
    try:
        yield Host(agent, fw, ns, events)
    finally:
        agent.request_stop()
        loop.join(10)
        agent.close()
        rule.disconnect()
        rule.loop_stop()
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=30)


def _until(what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _setup(guild: str) -> GrantStore:
    make_tenant(guild)
    add_game(guild, "valheim", GameState.RUNNING)
    store = GrantStore()
    now = int(time.time())
    store.put(Grant(guild, A, LinkKind.MEMBER, "user#1", now, now + 3600))
    return store


def _change(store: GrantStore, tenant: str, grant: Grant | None, revoke: list[str]) -> None:
    """A grant change as the access service makes it: the rows, then the numbered delta."""
    if grant is not None:
        store.put(grant)
    for address in revoke:
        store.remove(tenant, address)
    container().access.firewall.changed(tenant, [grant] if grant else [], revoke, now=int(time.time()))


def test_a_lost_revocation_is_made_good_by_the_next_delta(
    tmp_path: Path, mqtt_broker: Broker, guild: str, lossy: LossyPublisher
) -> None:
    store = _setup(guild)
    with _host(tmp_path, mqtt_broker, guild, heartbeat_s=3600) as host:
        _until("the full set on ready", lambda: host.addresses() == {A})
        now = int(time.time())
        lossy.lose = {1}
        _change(store, guild, None, [A])  # version 1 revokes A: lost on the way
        assert len(lossy.lost) == 1
        time.sleep(0.5)
        assert host.addresses() == {A}  # the agent never heard of it
        _change(store, guild, Grant(guild, B, LinkKind.GUEST, "link#x", now, now + 600), [])  # version 2
        # the agent skips 2 (it does not follow 0), asks for the full set, and gets it
        _until("the agent to converge", lambda: host.addresses() == {B})
        assert host.firewall.version == 2
        assert any(e["type"] == "firewall.resync" and e["body"]["reason"] == "gap" for e in host.events)


def test_a_lost_last_revocation_is_corrected_by_the_heartbeat(
    tmp_path: Path, mqtt_broker: Broker, guild: str, lossy: LossyPublisher
) -> None:
    store = _setup(guild)
    with _host(tmp_path, mqtt_broker, guild, heartbeat_s=1.0) as host:
        _until("the full set on ready", lambda: host.addresses() == {A})
        lossy.lose = {1}
        _change(store, guild, None, [A])  # the only change, lost: no later delta shows the gap
        assert len(lossy.lost) == 1
        # the next heartbeat reports version 0; the backend, at 1, sends the full set
        _until("the heartbeat's correction", lambda: host.addresses() == set(), timeout=10)
        assert host.firewall.version == 1
        assert any(e["type"] == "heartbeat" and e["body"]["firewall_version"] == 0 for e in host.events)

"""A real gangway agent for backend tests: in this process, linked to a real MQTT broker, its nftables
in a network namespace it creates (named with the pid), and its events going through the IoT rule's
stand-in (`devstack.bridge.rule_message`) into the agent_events Lambda, as in AWS."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import app as app_module
from devstack.bridge import rule_message
from devstack.pump import LambdaContext, sqs_event
from tests.access_helpers import Broker, require_program

__all__ = ["Host", "agent_host"]


@dataclass
class Host:
    """A real agent whose firewall lives in the namespace `ns`, the events it sent (`events`, as the rule
    received them) and those the backend has finished handling (`handled`, in the same order)."""

    agent: Any
    firewall: Any
    ns: str
    events: list[dict[str, Any]] = field(default_factory=list)
    handled: list[dict[str, Any]] = field(default_factory=list)

    def addresses(self) -> set[str]:
        """What the kernel's set holds now."""
        return set(self.firewall.list_set("allowed_v4"))


def _deliver(body: str) -> None:
    message = {"MessageId": str(uuid.uuid4()), "ReceiptHandle": "r", "Body": body, "Attributes": {}}
    event = sqs_event(message, "arn:aws:sqs:us-east-1:123456789012:test-agent-events", "us-east-1")
    app_module.agent_events(event, LambdaContext(function_name="agent_events"))


@contextlib.contextmanager
def agent_host(
    tmp_path: Path, broker: Broker, tenant: str, game: str = "valheim", heartbeat_s: float = 3600.0
) -> Iterator[Host]:
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
    handled: list[dict[str, Any]] = []
    # The IoT rule's stand-in: the agent's `evt` into the agent_events Lambda, in order.
    rule = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rule-{uuid.uuid4().hex[:8]}")
    subscribed = threading.Event()

    def forward(_c: Any, _u: Any, msg: Any) -> None:
        body = rule_message(str(msg.topic), bytes(msg.payload))
        if body is not None:
            event = json.loads(body)
            events.append(event)
            _deliver(body)
            handled.append(event)

    rule.on_message = forward
    rule.on_subscribe = lambda *_: subscribed.set()
    rule.on_connect = lambda c, *_: c.subscribe(f"gangway/{tenant}/+/evt", qos=1)
    rule.connect(broker.host, broker.port)
    rule.loop_start()
    assert subscribed.wait(5)
    cfg = config.parse(
        {
            "tenant": tenant,
            "game": game,
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
        yield Host(agent, fw, ns, events, handled)
    finally:
        agent.request_stop()
        loop.join(10)
        agent.close()
        rule.disconnect()
        rule.loop_stop()
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=30)

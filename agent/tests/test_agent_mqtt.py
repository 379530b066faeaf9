"""The agent over a real Mosquitto: mTLS with a test CA, an ACL like the IoT policy, reconnect and queue."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_broker import PKI, BackendClient, Broker, start_broker
from agent_fakes import config_dict, free_port, wait_port

from gangway_agent import config
from gangway_agent.link import MqttLink
from gangway_agent.protocol import MAX_MESSAGE_BYTES, parse_outgoing

pytestmark = pytest.mark.requires("mosquitto", root=False)

NOT_AUTHORIZED = 0x87


def _mtls(pki: PKI, broker: Broker, cn: str) -> dict[str, Any]:
    cert, key = pki.clients[cn]
    return {"endpoint": "localhost", "port": broker.tls_port, "transport": "mtls", "cert": str(cert),
            "key": str(key), "ca": str(pki.ca), "client_id": f"agent-{cn.replace('/', '-')}",
            "min_reconnect_s": 0.1, "max_reconnect_s": 1.0}


@pytest.fixture
def backend(broker: Broker, pki: PKI) -> Iterator[BackendClient]:
    client = BackendClient("localhost", broker.tls_port, pki=pki)
    try:
        yield client
    finally:
        client.stop()


@pytest.fixture
def agent_proc(
    tmp_path: Path, pki: PKI, broker: Broker, backend: BackendClient,
) -> Iterator[subprocess.Popen[str]]:
    """The real ``gangway-agent`` process with an mTLS config, until it has said ``ready``."""
    data = config_dict(tmp_path, game_port=free_port())
    data["mqtt"] = _mtls(pki, broker, "t1/alpha")
    data["launch"]["autostart"] = True
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(data))
    log = (tmp_path / "agent.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "gangway_agent.cli", "-c", str(path)],
                            stdout=log, stderr=log, text=True)
    try:
        ready = backend.wait(lambda t, m: m["type"] == "ready", timeout=20)
        assert ready["body"]["game_running"] is True
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)
        log.close()


def test_requests_replies_and_events_round_trip_over_mtls(
    agent_proc: subprocess.Popen[str], backend: BackendClient,
) -> None:
    status = backend.request("t1", "alpha", "status", msg_id="s-1")
    assert status["type"] == "status.reply" and status["id"] == "s-1"
    assert status["body"]["game"]["running"] is True
    stop = backend.request("t1", "alpha", "game.stop", {"grace_s": 5})
    assert stop["type"] == "game.stop.reply" and stop["body"]["was_running"] is True
    start = backend.request("t1", "alpha", "game.start")
    assert start["body"]["started"] is True
    # bad input over the wire: error replies, and the agent still answers
    backend.publish("gangway/t1/alpha/cmd", b"{definitely not json")
    err = backend.wait(lambda t, m: m["type"] == "error" and m["id"] is None)
    assert err["body"]["code"] == "bad_json"
    big = json.dumps({"id": "big", "type": "status", "body": {"x": "y" * MAX_MESSAGE_BYTES}}).encode()
    backend.publish("gangway/t1/alpha/cmd", big)
    assert backend.wait(lambda t, m: m["type"] == "error")["body"]["code"] == "too_large"
    wrong = backend.request("t1", "alpha", "game.stop", {"grace_s": [1]})
    assert wrong["type"] == "error" and wrong["body"]["code"] == "bad_body"
    assert backend.request("t1", "alpha", "status")["type"] == "status.reply"
    # everything the agent said is on-contract and on its own topic
    for topic, msg in backend.seen:
        assert topic == "gangway/t1/alpha/evt"
        parse_outgoing(json.dumps(msg).encode())
    done = backend.request("t1", "alpha", "shutdown")
    assert done["body"] == {"stopping": True, "poweroff": False}
    assert agent_proc.wait(20) == 0


def test_sigterm_stops_the_game_then_the_agent(tmp_path: Path, broker: Broker) -> None:
    game_port = free_port()
    data = config_dict(tmp_path, game_port=game_port)
    data["mqtt"] = {"endpoint": "127.0.0.1", "port": broker.plain_port, "transport": "plain"}
    data["launch"]["autostart"] = True
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(data))
    backend = BackendClient("127.0.0.1", broker.plain_port, client_id="sigterm-backend")
    proc = subprocess.Popen([sys.executable, "-m", "gangway_agent.cli", "-c", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert backend.wait(lambda t, m: m["type"] == "ready", timeout=20)["body"]["game_running"]
        wait_port(game_port)  # the game is up, its SIGTERM handler installed
        game_pid = int((tmp_path / "game.pid").read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        exited = backend.wait(lambda t, m: m["type"] == "game.exited")
        assert exited["body"] == {"exit_code": 0, "restart_in_s": None, "restarts": 0}
        assert not Path(f"/proc/{game_pid}").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        backend.stop()


def test_acl_keeps_an_agent_to_its_own_topics(tmp_path: Path, pki: PKI, broker: Broker,
                                             backend: BackendClient) -> None:
    cfg = config.parse(config_dict(tmp_path) | {"mqtt": _mtls(pki, broker, "t1/alpha")})
    got: list[bytes] = []
    link = MqttLink(cfg.mqtt, sub_topic=cfg.cmd_topic, pub_topic=cfg.evt_topic)
    link.start(got.append)
    try:
        assert link.wait_connected(10)
        assert link.publish_to("gangway/t1/alpha/evt", b"{}") < 0x80
        for foreign in ("gangway/t1/beta/evt", "gangway/t1/beta/cmd", "gangway/t2/alpha/evt",
                        "gangway/t1/alpha/cmd"):  # not even its own cmd topic: no spoofed requests
            assert link.publish_to(foreign, b"{}") == NOT_AUTHORIZED, foreign
        # Mosquitto grants a SUBSCRIBE and enforces "read" on delivery (IoT Core refuses the SUBSCRIBE);
        # either way nothing from another game's topics may reach this agent.
        for wide in ("gangway/t1/beta/cmd", "gangway/t1/+/cmd", "gangway/#"):
            link.subscribe_to(wide)
        for topic, msg_id in (("gangway/t1/beta/cmd", "beta"), ("gangway/t2/alpha/cmd", "t2"),
                              ("gangway/t1/beta/evt", "beta-evt"), ("gangway/t1/alpha/cmd", "mine")):
            backend.publish(topic, json.dumps({"id": msg_id, "type": "status", "body": {}}).encode())
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        assert sorted({json.loads(g)["id"] for g in got}) == ["mine"]
    finally:
        link.stop()


# MQTT 5 CONNECT: protocol "MQTT", level 5, clean start, keep-alive 60, no properties, client id "x".
_CONNECT = b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01x"


def _connack(pki: PKI, port: int, client_cert: tuple[Path, Path] | None) -> bytes:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if client_cert is not None:
        ctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(_CONNECT)
            return tls.recv(16)
    except (ssl.SSLError, ConnectionError):
        return b""


def test_a_certificate_is_required(pki: PKI, broker: Broker) -> None:
    assert _connack(pki, broker.tls_port, pki.clients["t1/alpha"])[:1] == b"\x20"  # CONNACK
    assert _connack(pki, broker.tls_port, None) == b""


@pytest.mark.requires("mosquitto", root=False)
def test_events_are_queued_while_offline_and_flushed_after_reconnect(tmp_path: Path, pki: PKI) -> None:
    plain = free_port()
    broker = start_broker(tmp_path, pki, plain_port=plain, persist=True)
    backend = BackendClient("127.0.0.1", plain, persistent=True)
    try:
        broker.stop()  # the broker saves the backend's session (and its subscription) on the way out
        cfg = config.parse(config_dict(tmp_path) | {"mqtt": {
            "endpoint": "127.0.0.1", "port": plain, "transport": "plain", "offline_queue": 3,
            "min_reconnect_s": 0.1, "max_reconnect_s": 0.5}})
        link = MqttLink(cfg.mqtt, sub_topic=cfg.cmd_topic, pub_topic=cfg.evt_topic)
        link.start(lambda _raw: None)
        try:
            for n in range(5):
                link.send(json.dumps({"id": str(n), "type": "heartbeat", "body": {}}).encode())
            assert not link.connected and link.dropped == 2
            broker = start_broker(tmp_path, pki, plain_port=plain, tls_port=broker.tls_port, persist=True)
            assert link.wait_connected(15)
            got = [backend.wait(lambda t, m: True)["id"] for _ in range(3)]
            assert got == ["2", "3", "4"]  # bounded: the oldest two were dropped, the rest arrive in order
        finally:
            link.stop()
    finally:
        backend.stop()
        broker.stop()

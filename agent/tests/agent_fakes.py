"""Test doubles that speak the real protocols, and helpers that start real components.

No mock.patch anywhere: the agent takes its clock, command runner, link and paths as arguments,
and these are the small typed stand-ins the tests pass in.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gangway_agent.errors import CommandFailed
from gangway_agent.seams import Completed


class FakeClock:
    """A clock the test moves by hand; wall time and monotonic move together."""

    def __init__(self, start: float = 1_795_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        return self.now()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


Reply = Completed | Callable[[tuple[str, ...], str | None], Completed]


@dataclass
class ScriptedRunner:
    """Records every command; answers from a script keyed by argv prefix (default: rc 0, no output)."""

    script: dict[tuple[str, ...], list[Reply]] = field(default_factory=dict)
    calls: list[tuple[tuple[str, ...], str | None]] = field(default_factory=list)

    def on(self, prefix: Sequence[str], *replies: Reply) -> None:
        self.script.setdefault(tuple(prefix), []).extend(replies)

    def run(
        self, argv: Sequence[str], *, input_text: str | None = None, timeout: float = 30.0,
        check: bool = True, env: Mapping[str, str] | None = None, cwd: Path | None = None,
    ) -> Completed:
        args = tuple(argv)
        self.calls.append((args, input_text))
        done = Completed(args, 0, "", "")
        for prefix, replies in sorted(self.script.items(), key=lambda kv: -len(kv[0])):
            if args[: len(prefix)] == prefix and replies:
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
                done = reply(args, input_text) if callable(reply) else reply
                break
        if check and done.returncode != 0:
            raise CommandFailed(args, done.returncode, done.stderr)
        return done

    def argvs(self) -> list[tuple[str, ...]]:
        return [c[0] for c in self.calls]


class MemoryLink:
    """An in-process Link: the test injects requests and reads what the agent sent."""

    def __init__(self) -> None:
        self.sent: queue.Queue[dict[str, Any]] = queue.Queue()
        self.on_message: Callable[[bytes], None] | None = None

    def start(self, on_message: Callable[[bytes], None]) -> None:
        self.on_message = on_message

    def send(self, payload: bytes) -> None:
        self.sent.put(json.loads(payload))

    def stop(self) -> None:
        """Nothing to close."""

    def drain(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self.sent.get_nowait())
            except queue.Empty:
                return out

    def next_of(self, msg_type: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.sent.get(timeout=max(0.01, deadline - time.monotonic()))
            if msg["type"] == msg_type:
                return msg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- PKI -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PKI:
    ca: Path
    server_cert: Path
    server_key: Path
    clients: dict[str, tuple[Path, Path]]


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


_CA_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
)


def make_pki(root: Path, client_cns: Sequence[str]) -> PKI:
    """A throw-away CA, a server certificate for localhost/127.0.0.1, and client certificates."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gangway test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(cn: str, server: bool) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    root.mkdir(parents=True, exist_ok=True)
    (root / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert, key = issue("localhost", True)
    (root / "server.pem").write_bytes(cert)
    (root / "server.key").write_bytes(key)
    clients = {}
    for cn in client_cns:
        cert, key = issue(cn, False)
        safe = cn.replace("/", "_")
        (root / f"{safe}.pem").write_bytes(cert)
        (root / f"{safe}.key").write_bytes(key)
        clients[cn] = (root / f"{safe}.pem", root / f"{safe}.key")
    for p in root.iterdir():
        p.chmod(0o644)  # mosquitto may drop privileges; the keys are throw-away
    return PKI(root / "ca.pem", root / "server.pem", root / "server.key", clients)


# -- Mosquitto -----------------------------------------------------------------------------------

ACL = """\
# Like the IoT policy: the backend may use every game's topics; an agent only its own.
user backend
topic readwrite gangway/#

pattern read gangway/%u/cmd
pattern write gangway/%u/evt
"""


@dataclass
class Broker:
    proc: subprocess.Popen[bytes]
    plain_port: int
    tls_port: int
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_broker(
    workdir: Path, pki: PKI, plain_port: int | None = None, tls_port: int | None = None,
    persist: bool = False,
) -> Broker:
    """Start mosquitto with its own config; stop it with ``Broker.stop``."""
    plain = plain_port or free_port()
    tls = tls_port or free_port()
    (workdir / "acl").write_text(ACL)
    conf = workdir / "mosquitto.conf"
    user = "user root\n" if os.geteuid() == 0 else ""  # root: keep it, the test keys are ours
    conf.write_text(f"""\
{user}per_listener_settings true
persistence {"true" if persist else "false"}
persistence_location {workdir}/
set_tcp_nodelay true
log_dest stderr
listener {plain} 127.0.0.1
allow_anonymous true
listener {tls} 127.0.0.1
cafile {pki.ca}
certfile {pki.server_cert}
keyfile {pki.server_key}
require_certificate true
use_identity_as_username true
allow_anonymous false
acl_file {workdir / 'acl'}
""")
    log = workdir / "mosquitto.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=fh, stderr=fh, start_new_session=True)
    broker = Broker(proc, plain, tls, log)
    try:
        wait_port(plain)
        wait_port(tls)
    except OSError:
        broker.stop()
        raise RuntimeError(f"mosquitto did not start: {log.read_text()[-2000:]}") from None
    return broker


# -- a fake game ---------------------------------------------------------------------------------

FAKE_GAME = r'''
"""A stand-in game server: listens on TCP, holds connections, obeys (or ignores) SIGTERM."""
import os, signal, socket, sys, threading, time
port = int(os.environ.get("GAME_PORT", "0"))
with open("game.pid", "w") as fh:
    fh.write(str(os.getpid()))
if os.environ.get("CRASH"):
    print("crashing", flush=True)
    sys.exit(3)
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
else:
    signal.signal(signal.SIGTERM, lambda *_: (print("bye", flush=True), sys.exit(0)))
conns = []
if port:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen()
    def accept():
        while True:
            c, _ = srv.accept()
            conns.append(c)
    threading.Thread(target=accept, daemon=True).start()
print(f"game up on {port}", flush=True)
print("a warning line", file=sys.stderr, flush=True)
while True:
    time.sleep(0.1)
'''


def write_fake_game(directory: Path) -> Path:
    path = directory / "fake_game.py"
    path.write_text(FAKE_GAME)
    return path


def config_dict(tmp: Path, *, game_port: int = 0, **extra: Any) -> dict[str, Any]:
    """A valid local config (plain MQTT, file logs) for tests; ``extra`` overrides top-level keys."""
    import sys

    game = write_fake_game(tmp)
    data: dict[str, Any] = {
        "tenant": "t1",
        "game": "alpha",
        "state_dir": str(tmp / "state"),
        "mqtt": {"endpoint": "127.0.0.1", "port": 1883, "transport": "plain", "min_reconnect_s": 0.1,
                 "max_reconnect_s": 1.0},
        "launch": {
            "command": [sys.executable, str(game)], "cwd": str(tmp), "env": {"GAME_PORT": str(game_port)},
            "stop_grace_s": 5, "ports": {"tcp": [game_port] if game_port else [], "udp": []},
            "autostart": False, "restart_backoff_s": 0.05, "restart_backoff_max_s": 0.2,
        },
        "idle": {"warn_after_s": 1200, "stop_after_s": 1800, "startup_grace_s": 300, "check_interval_s": 60},
        "sftp": {"enabled": False},
        "firewall": {"enabled": False},
        "logs": {"sink": "file", "path": str(tmp / "logs" / "game.log"), "flush_interval_s": 0.05},
        "data": {"mountpoint": str(tmp)},
        "spot": {"enabled": False},
    }
    data.update(extra)
    return data


# -- the backend side of MQTT, for tests ----------------------------------------------------------


class BackendClient:
    """Plays the backend: publishes requests on ``cmd`` and collects everything on ``evt``."""

    def __init__(self, host: str, port: int, *, pki: PKI | None = None, cn: str = "backend",
                 client_id: str = "test-backend", persistent: bool = False) -> None:
        from awscrt import mqtt5
        from awsiot import mqtt5_client_builder

        self._mqtt5 = mqtt5
        self.messages: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.raw: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._subscribed = threading.Event()
        self._stopped = threading.Event()
        common: dict[str, Any] = {
            "on_publish_received": self._on_publish,
            "on_lifecycle_connection_success": self._on_connected,
            "on_lifecycle_stopped": lambda _d: self._stopped.set(),
            "min_reconnect_delay_ms": 100,
            "max_reconnect_delay_ms": 500,
            "client_id": client_id,
        }
        if persistent:
            common["session_behavior"] = mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS
            common["session_expiry_interval_sec"] = 300
        if pki is not None:
            cert, key = pki.clients[cn]
            self._client = mqtt5_client_builder.mtls_from_path(
                endpoint=host, port=port, cert_filepath=str(cert), pri_key_filepath=str(key),
                ca_filepath=str(pki.ca), **common)
        else:
            options = mqtt5.ClientOptions(
                host_name=host, port=port,
                connect_options=mqtt5.ConnectPacket(
                    client_id=client_id,
                    session_expiry_interval_sec=common.get("session_expiry_interval_sec"),
                ),
                session_behavior=common.get("session_behavior"),
                on_publish_callback_fn=self._on_publish,
                on_lifecycle_event_connection_success_fn=self._on_connected,
                on_lifecycle_event_stopped_fn=common["on_lifecycle_stopped"],
                min_reconnect_delay_ms=100, max_reconnect_delay_ms=500)
            self._client = mqtt5.Client(options)
        self._client.start()
        if not self._subscribed.wait(10):
            raise RuntimeError("backend test client did not connect")

    def _on_connected(self, data: Any) -> None:
        if getattr(data.connack_packet, "session_present", False):
            self._subscribed.set()
            return
        m = self._mqtt5
        sub = m.SubscribePacket(subscriptions=[m.Subscription("gangway/+/+/evt", m.QoS.AT_LEAST_ONCE)])
        self._client.subscribe(sub).add_done_callback(lambda _f: self._subscribed.set())

    def _on_publish(self, data: Any) -> None:
        packet = data.publish_packet
        payload = bytes(packet.payload or b"")
        self.raw.put((packet.topic, payload))
        try:
            msg = json.loads(payload)
            self.seen.append((packet.topic, msg))
            self.messages.put((packet.topic, msg))
        except ValueError:
            pass

    def publish(self, topic: str, payload: bytes) -> int:
        m = self._mqtt5
        fut = self._client.publish(m.PublishPacket(topic=topic, payload=payload, qos=m.QoS.AT_LEAST_ONCE))
        return int(fut.result(10).puback.reason_code)

    def request(self, tenant: str, game: str, msg_type: str, body: dict[str, Any] | None = None,
                msg_id: str | None = None, timeout: float = 15.0) -> dict[str, Any]:
        msg_id = msg_id or f"req-{time.monotonic_ns()}"
        payload = json.dumps({"id": msg_id, "type": msg_type, "body": body or {}}).encode()
        self.publish(f"gangway/{tenant}/{game}/cmd", payload)
        return self.wait(lambda _t, m: m.get("id") == msg_id, timeout)

    def wait(self, match: Callable[[str, dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            topic, msg = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            if match(topic, msg):
                return msg

    def stop(self) -> None:
        self._client.stop()
        self._stopped.wait(5)

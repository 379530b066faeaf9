"""Real MQTT for tests: a throw-away CA, a Mosquitto started per test, and a backend stand-in."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_fakes import free_port, wait_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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

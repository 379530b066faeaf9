"""IoT Core for a booted instance: a throw-away CA and an mTLS Mosquitto (certificate required, the
client's identity is its certificate's CN `tenant/game`, each game's topics only, as the IoT policy)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.stack import free_port

__all__ = ["Pki", "TlsBroker", "make_pki", "tls_mosquitto"]


@dataclass(frozen=True)
class Pki:
    ca: bytes
    server: tuple[bytes, bytes]
    issue_key: ec.EllipticCurvePrivateKey
    ca_name: x509.Name

    def client(self, cn: str) -> tuple[str, str]:
        """A certificate for `cn` signed by the CA (as IoT's CreateKeysAndCertificate gives), PEM texts."""
        cert, key = _issue(self.issue_key, self.ca_name, cn, server=False)
        return cert.decode(), key.decode()


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    cn: str,
    *,
    server: bool,
    dns_names: Sequence[str] = (),
) -> tuple[bytes, bytes]:
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if server:
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in ("localhost", *dns_names)]
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    pem = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    return pem, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_pki(*, regions: Sequence[str] = ()) -> Pki:
    """A CA and the broker's certificate; with `regions`, the certificate also names IoT Core's data
    endpoints there (`*.iot.<region>.amazonaws.com`, as Amazon's does), so an agent given the endpoint
    the backend reports connects to this broker with the host name checked."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gangway booted test CA")])
    usage = x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
    )  # fmt: skip
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return Pki(
        ca.public_bytes(serialization.Encoding.PEM),
        _issue(
            ca_key, name, "localhost", server=True, dns_names=[f"*.iot.{r}.amazonaws.com" for r in regions]
        ),
        ca_key,
        name,
    )


# Every certificate `tenant/game` (the tests' own) uses only that game's topics.
_PATTERNS: Final = "pattern read gangway/%u/cmd\npattern write gangway/%u/evt\n"


@dataclass(frozen=True)
class TlsBroker:
    plain_port: int  # the backend's side (loopback, this machine only)
    tls_port: int  # the agents' side: a certificate required, its CN is the client's identity
    acl: Path
    pid: int

    def authorize(self, grants: Mapping[str, str]) -> None:
        """From now on the certificate named `cn` uses only the topics of `gangway/<root>/` (cn → root),
        besides the `tenant/game` pattern; every other certificate nothing. Mosquitto rereads its ACL on
        SIGHUP and checks every later message against it."""
        users = "".join(
            f"user {cn}\ntopic read gangway/{root}/cmd\ntopic write gangway/{root}/evt\n"
            for cn, root in sorted(grants.items())
        )
        self.acl.write_text(_PATTERNS + users)
        os.kill(self.pid, signal.SIGHUP)


@contextmanager
def tls_mosquitto(directory: Path, pki: Pki) -> Iterator[TlsBroker]:
    """Mosquitto with IoT's rules for agents: mTLS, and a certificate `tenant/game` uses only that game's
    topics (`cmd` to read, `evt` to write)."""
    for name, data in (("ca.pem", pki.ca), ("server.pem", pki.server[0]), ("server.key", pki.server[1])):
        (directory / name).write_bytes(data)
    (directory / "acl").write_text(_PATTERNS)
    plain, tls = free_port(), free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"user root\nper_listener_settings true\npersistence false\nlog_dest stderr\n"
        f"listener {plain} 127.0.0.1\nallow_anonymous true\n"
        f"listener {tls} 127.0.0.1\ncafile {directory / 'ca.pem'}\ncertfile {directory / 'server.pem'}\n"
        f"keyfile {directory / 'server.key'}\nrequire_certificate true\nuse_identity_as_username true\n"
        f"allow_anonymous false\nacl_file {directory / 'acl'}\n"
    )
    with (directory / "mosquitto.log").open("wb") as log:
        proc = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=log, stderr=log, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 10
        for port in (plain, tls):
            while True:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(
                        f"mosquitto did not start: {(directory / 'mosquitto.log').read_text()}"
                    )
                time.sleep(0.05)
        yield TlsBroker(plain, tls, directory / "acl", proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

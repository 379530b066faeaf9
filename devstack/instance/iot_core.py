"""The emulator's IoT Core, as far as a booted agent needs it to reach the stand-in broker
(devstack/instance/iot.py) with the identity the backend made for its instance.

In AWS, CreateKeysAndCertificate signs with Amazon's CA, which IoT Core trusts, and IoT Core lets a
certificate use the topics its attached policy allows, the policy's variables resolved from the thing
it is attached to. moto signs each certificate with its own key (nothing can trust it), so while a
booted test runs the emulator issues from the stand-in broker's CA (`issue_from`), and `grants` reads
the emulator's IoT state (things, their attributes and certificates, the instance policy attached) into
what the broker allows each certificate (TlsBroker.authorize).
"""

from __future__ import annotations

import datetime
import secrets
import threading
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from devstack.instance.iot import Pki

__all__ = ["grants", "issue_from"]

# The CN the broker knows a certificate by (mosquitto's use_identity_as_username): unique per certificate.
_CN_PREFIX: Final = "AWSIoTCertificate-"
_lock = threading.Lock()
_issuer: list[Pki] = []  # the CA the emulator issues from now; empty: moto's own certificates
_original: list[Any] = []


def _certificate(pki: Pki) -> tuple[str, str, str]:
    """(certificate PEM, RSA private key PEM as IoT gives it, public key PEM): signed by `pki`'s CA."""
    now = datetime.datetime.now(datetime.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _CN_PREFIX + secrets.token_hex(8))]))
        .issuer_name(pki.ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(pki.issue_key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM).decode(),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode(),
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    )


def issue_from(pki: Pki | None) -> None:
    """The in-process emulator's CreateKeysAndCertificate signs with `pki`'s CA from now on (None: as
    moto does). The moto server runs in this process (devstack/aws.py Emulator)."""
    from moto.iot.models import FakeCertificate, IoTBackend

    with _lock:
        if not _original:
            _original.append(IoTBackend.create_keys_and_certificate)

            def create(self: Any, set_as_active: bool) -> tuple[Any, dict[str, str]]:
                with _lock:
                    issuer = _issuer[0] if _issuer else None
                if issuer is None:
                    return _original[0](self, set_as_active)  # type: ignore[no-any-return]
                pem, private, public = _certificate(issuer)
                cert = FakeCertificate(
                    pem, "ACTIVE" if set_as_active else "INACTIVE", self.account_id, self.region_name
                )
                self.certificates[cert.certificate_id] = cert
                return cert, {"PublicKey": public, "PrivateKey": private}

            IoTBackend.create_keys_and_certificate = create  # type: ignore[method-assign]
        _issuer.clear()
        if pki is not None:
            _issuer.append(pki)


def grants(iot: Any, policy: str) -> dict[str, str]:
    """What IoT Core would let each certificate do under the instance policy (deploy/template/iot.py):
    CN → `tenant/game` for every ACTIVE certificate with `policy` attached, attached to a thing whose
    `tenant` and `game` attributes name the topics."""
    out: dict[str, str] = {}
    for page in iot.get_paginator("list_things").paginate():
        for thing in page["things"]:
            attrs = thing.get("attributes", {})
            if not attrs.get("tenant") or not attrs.get("game"):
                continue
            for arn in iot.list_thing_principals(thingName=thing["thingName"])["principals"]:
                cert_id = arn.rsplit("/", 1)[-1]
                described = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
                attached = iot.list_attached_policies(target=arn)["policies"]
                if described["status"] != "ACTIVE" or policy not in {p["policyName"] for p in attached}:
                    continue
                cert = x509.load_pem_x509_certificate(described["certificatePem"].encode())
                cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                if cn and str(cn[0].value).startswith(_CN_PREFIX):
                    out[str(cn[0].value)] = f"{attrs['tenant']}/{attrs['game']}"
    return out

"""IoT Core's stand-in for booted instances, as strict as IoT Core where the agent meets it: the emulator's
CreateKeysAndCertificate issues (while a booted test runs) from the broker's CA, and the broker lets a
certificate use only the topics the instance policy gives its thing: another game's topics, a certificate
without the policy, or one made INACTIVE get nothing (devstack/instance/iot_core.py, iot.py)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.instances.identity import policy_name
from chalicelib.wiring import container
from devstack.aws import Emulator
from devstack.discord_user import snowflake
from devstack.instance.iot import Pki, TlsBroker, make_pki, tls_mosquitto
from devstack.instance.iot_core import grants, issue_from
from tests.access_helpers import Subscriber, require_program


@pytest.fixture
def pki(emulator: Emulator) -> Iterator[Pki]:
    made = make_pki()
    issue_from(made)
    yield made
    issue_from(None)


def _identity(iot: Any, tenant: str, game: str, *, policy: str | None) -> dict[str, Any]:
    """What instances/identity.py `issue` makes: a thing naming its topics, a certificate, the policy."""
    thing = f"gangway-test-{tenant}-{game}"
    iot.create_thing(thingName=thing, attributePayload={"attributes": {"tenant": tenant, "game": game}})
    cert: dict[str, Any] = iot.create_keys_and_certificate(setAsActive=True)
    if policy:
        iot.attach_policy(policyName=policy, target=cert["certificateArn"])
    iot.attach_thing_principal(thingName=thing, principal=cert["certificateArn"])
    return cert


def _publish(broker: TlsBroker, pki: Pki, cert: dict[str, Any], topic: str, tmp: Path) -> None:
    """One QoS 1 publish over mTLS with `cert` (the broker acknowledges even what its ACL drops)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    (tmp / "ca.pem").write_bytes(pki.ca)
    (tmp / "cert.pem").write_text(cert["certificatePem"])
    (tmp / "key.pem").write_text(cert["keyPair"]["PrivateKey"])
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"agent-{snowflake()}")
    client.tls_set(ca_certs=str(tmp / "ca.pem"), certfile=str(tmp / "cert.pem"), keyfile=str(tmp / "key.pem"))
    client.connect("localhost", broker.tls_port)
    client.loop_start()
    try:
        info = client.publish(topic, json.dumps({"id": "1", "type": "heartbeat", "body": {}}), qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def test_the_broker_trusts_what_the_emulator_issues_and_allows_only_what_the_policy_does(
    pki: Pki, tmp_path: Path
) -> None:
    require_program("mosquitto", "/usr/sbin/mosquitto")
    iot = container().client("iot")
    policy = policy_name(container().settings.stage)
    tenant = snowflake()
    valheim = _identity(iot, tenant, "valheim", policy=policy)
    _identity(iot, tenant, "factorio", policy=policy)
    _identity(iot, tenant, "nopolicy", policy=None)
    allowed = {cn: root for cn, root in grants(iot, policy).items() if root.startswith(tenant)}
    assert sorted(allowed.values()) == [f"{tenant}/factorio", f"{tenant}/valheim"]
    with tls_mosquitto(tmp_path, pki) as broker:
        broker.authorize(allowed)
        time.sleep(0.5)  # mosquitto rereads its ACL on SIGHUP, asynchronously
        _accepting(broker.plain_port)
        sub = Subscriber("127.0.0.1", broker.plain_port, f"gangway/{tenant}/+/evt")
        try:
            _publish(broker, pki, valheim, f"gangway/{tenant}/valheim/evt", tmp_path)
            assert sub.next(timeout=5)[0] == f"gangway/{tenant}/valheim/evt"
            _publish(broker, pki, valheim, f"gangway/{tenant}/factorio/evt", tmp_path)  # not its game
            assert sub.drain(wait=1) == []
            iot.update_certificate(certificateId=valheim["certificateId"], newStatus="INACTIVE")
            after = {cn: root for cn, root in grants(iot, policy).items() if root.startswith(tenant)}
            assert sorted(after.values()) == [f"{tenant}/factorio"]
            broker.authorize(after)
            time.sleep(0.5)
            _publish(broker, pki, valheim, f"gangway/{tenant}/valheim/evt", tmp_path)
            assert sub.drain(wait=1) == []
        finally:
            sub.close()


def test_without_a_booted_test_the_emulator_issues_as_moto_does(emulator: Emulator) -> None:
    issue_from(None)
    cert = container().client("iot").create_keys_and_certificate(setAsActive=True)
    from cryptography import x509

    parsed = x509.load_pem_x509_certificate(cert["certificatePem"].encode())
    assert parsed.subject.rfc4514_string() == "CN=AWS IoT Certificate"


def _accepting(port: int, timeout: float = 15.0) -> None:
    """Wait until the broker takes connections again after its reload (slow on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"the broker stopped taking connections on {port} after its reload")
        time.sleep(0.1)

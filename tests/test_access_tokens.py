"""IPAuth tokens: KMS authenticated encryption bound to the tenant; and the access packages' surfaces."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.access import LinkKind, TokenSealer
from chalicelib.errors import LinkRejected
from chalicelib.wiring import container


@pytest.fixture(scope="module")
def sealer(emulator: object) -> TokenSealer:
    c = container()
    return TokenSealer(lambda: c.client("kms"), c.settings.ipauth_key_id)


def test_a_sealed_member_token_opens_to_the_same_claims(sealer: TokenSealer) -> None:
    now = int(time.time())
    token, claims = sealer.seal(
        tenant_id="42", kind=LinkKind.MEMBER, issued_at=now, lifetime_s=60, user_id="7"
    )
    assert token.startswith("g1.42.") and len(token) < 600
    opened = sealer.open(token, now=now + 59)
    assert opened == claims and opened.owner == "user#7" and opened.max_uses is None


def test_a_guest_token_carries_its_use_limit_and_owner(sealer: TokenSealer) -> None:
    now = int(time.time())
    token, claims = sealer.seal(tenant_id="42", kind=LinkKind.GUEST, issued_at=now, lifetime_s=60, max_uses=4)
    opened = sealer.open(token, now=now)
    assert opened.max_uses == 4 and opened.user_id is None and opened.owner == f"link#{claims.nonce}"


def test_two_links_never_share_a_nonce(sealer: TokenSealer) -> None:
    now = int(time.time())
    nonces = {
        sealer.seal(tenant_id="1", kind=LinkKind.GUEST, issued_at=now, lifetime_s=9)[1].nonce
        for _ in range(5)
    }
    assert len(nonces) == 5


def test_an_expired_token_is_refused_as_expired(sealer: TokenSealer) -> None:
    token, _ = sealer.seal(tenant_id="42", kind=LinkKind.MEMBER, issued_at=1000, lifetime_s=60, user_id="7")
    with pytest.raises(LinkRejected) as err:
        sealer.open(token, now=1060)
    assert err.value.code == "expired"


def test_a_token_sealed_with_another_deployments_key_is_invalid(sealer: TokenSealer) -> None:
    c = container()
    kms = c.client("kms")
    other_key = kms.create_key(Description="another deployment")["KeyMetadata"]["KeyId"]
    foreign = TokenSealer(lambda: kms, other_key)
    token, _ = foreign.seal(
        tenant_id="42", kind=LinkKind.MEMBER, issued_at=int(time.time()), lifetime_s=60, user_id="7"
    )
    with pytest.raises(LinkRejected) as err:
        sealer.open(token, now=int(time.time()))
    assert err.value.code == "invalid"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300) | st.from_regex(r"g1\.[0-9]{1,5}\.[A-Za-z0-9_-]{0,200}", fullmatch=True))
def test_arbitrary_strings_never_open(sealer: TokenSealer, junk: str) -> None:
    with pytest.raises(LinkRejected) as err:
        sealer.open(junk, now=int(time.time()))
    assert err.value.code == "invalid"


SURFACES = {
    "chalicelib.access": {
        "MAX_API_BODY_BYTES",
        "MEMBER_LINK_SECONDS",
        "AccessPolicy",
        "AccessRecord",
        "AccessService",
        "Authorized",
        "Claims",
        "FirewallSync",
        "Grant",
        "GrantRecord",
        "GrantStore",
        "IpAuthApi",
        "Limit",
        "Link",
        "LinkKind",
        "RateLimiter",
        "RateRecord",
        "TokenSealer",
        "full_sync_request",
    },
    "chalicelib.agents": {
        "AGENT_EVENTS",
        "MAX_MESSAGE_BYTES",
        "AgentEvent",
        "AgentEventRouter",
        "BoundAgentEvents",
        "AgentRequest",
        "FirewallGrant",
        "IotDataPublisher",
        "MqttPublisher",
        "Outgoing",
        "Publisher",
        "cmd_topic",
        "evt_topic",
        "firewall_sync",
        "parse_agent_event",
    },
}


@pytest.mark.parametrize("package", sorted(SURFACES))
def test_access_packages_export_exactly_their_public_surface(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) == SURFACES[package]
    assert all(hasattr(module, name) for name in module.__all__)


def test_the_ipauth_path_loads_no_mqtt_client() -> None:
    """paho-mqtt is a development dependency; the api Lambda publishes through boto3's iot-data."""
    code = (
        "import sys, app; from chalicelib.wiring import container; c = container(); c.ipauth; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'paho'}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "MQTT_URL"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""IPAuth tokens: AES-GCM under the deployment's link keys, bound to the tenant, opened without a paid
AWS call per token; and the access packages' surfaces."""

from __future__ import annotations

import importlib
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.access import LinkKeyRing, LinkKeySource, LinkKind, TokenSealer
from chalicelib.errors import InfraError, LinkRejected
from chalicelib.wiring import container
from deploy.parameters import ensure_link_keys, read_secure, rotate_link_keys


def _ssm() -> Any:
    return container().client("ssm")


def _fresh_parameter() -> str:
    """A parameter of its own, so rotating it cannot break the other tests' links."""
    name = f"/gangway/test/ipauth-keys-{os.getpid()}-{secrets.token_hex(4)}"
    ensure_link_keys(_ssm(), name)
    return name


@pytest.fixture(scope="module")
def sealer(emulator: object) -> TokenSealer:
    return container().sealer


def test_a_sealed_member_token_opens_to_the_same_claims(sealer: TokenSealer) -> None:
    now = int(time.time())
    token, claims = sealer.seal(
        tenant_id="42", kind=LinkKind.MEMBER, issued_at=now, lifetime_s=60, user_id="7"
    )
    assert token.startswith("g2.42.") and len(token) < 300
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
    ssm = _ssm()
    foreign = TokenSealer(LinkKeySource(lambda: ssm, _fresh_parameter()))
    token, _ = foreign.seal(
        tenant_id="42", kind=LinkKind.MEMBER, issued_at=int(time.time()), lifetime_s=60, user_id="7"
    )
    with pytest.raises(LinkRejected) as err:
        sealer.open(token, now=int(time.time()))
    assert err.value.code == "invalid"
    # The same key id on our side (ids are 32 bits: a clash must still fail on the tag, not open).
    ours = container().sealer
    own_id = token.split(".")[2]
    ring = LinkKeyRing.parse(str(read_secure(ssm, container().settings.ipauth_keys_parameter)))
    relabelled = token.replace(f".{own_id}.", f".{ring.current.key_id}.")
    with pytest.raises(LinkRejected):
        ours.open(relabelled, now=int(time.time()))


def test_changing_the_tenant_or_key_id_of_a_token_makes_it_invalid(sealer: TokenSealer) -> None:
    now = int(time.time())
    token, _ = sealer.seal(tenant_id="42", kind=LinkKind.MEMBER, issued_at=now, lifetime_s=60, user_id="7")
    prefix, tenant, key_id, blob = token.split(".")
    flipped = blob[:30] + ("A" if blob[30] != "A" else "B") + blob[31:]
    for bad in (
        f"{prefix}.43.{key_id}.{blob}",
        f"{prefix}.{tenant}.{'0' * 8 if key_id != '0' * 8 else '1' * 8}.{blob}",
        f"{prefix}.{tenant}.{key_id}.{flipped}",
        f"{prefix}.{tenant}.{key_id}.{blob[:20]}",
    ):
        with pytest.raises(LinkRejected) as err:
            sealer.open(bad, now=now)
        assert err.value.code == "invalid", bad


def test_a_link_from_before_the_upgrade_says_so_and_what_to_do(sealer: TokenSealer) -> None:
    with pytest.raises(LinkRejected) as err:
        sealer.open("g1.42.AQICAHh" + "A" * 300, now=int(time.time()))
    assert err.value.code == "expired" and "/addip" in str(err.value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.text(max_size=300).filter(lambda s: not s.startswith("g1."))
    | st.from_regex(r"g2\.[0-9]{1,5}\.[0-9a-f]{8}\.[A-Za-z0-9_-]{0,200}", fullmatch=True)
)
def test_arbitrary_strings_never_open(sealer: TokenSealer, junk: str) -> None:
    with pytest.raises(LinkRejected) as err:
        sealer.open(junk, now=int(time.time()))
    assert err.value.code == "invalid"


def _count_calls(client: Any) -> Counter[str]:
    """Every request `client` sends, counted by operation (botocore's before-call event, no patching)."""
    seen: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        seen[f"{model.service_model.service_name}:{model.name}"] += 1

    client.meta.events.register("before-call.*.*", count)
    return seen


def test_a_flood_of_made_up_tokens_makes_no_aws_call_after_the_first_key_read(emulator: object) -> None:
    """Issue 15.3: a syntactically valid token used to cost a KMS Decrypt each. Now the keys are read
    once per container and every token is opened in-process."""
    ssm = _ssm()
    ssm_calls = _count_calls(ssm)
    kms = container().client("kms")
    kms_calls = _count_calls(kms)
    sealer = TokenSealer(LinkKeySource(lambda: ssm, container().settings.ipauth_keys_parameter))
    now = int(time.time())
    real, _ = sealer.seal(tenant_id="42", kind=LinkKind.MEMBER, issued_at=now, lifetime_s=60, user_id="7")
    key_id = real.split(".")[2]
    for n in range(500):
        blob = secrets.token_urlsafe(48 + n % 50)
        made_up = f"g2.{n}.{key_id if n % 2 else secrets.token_hex(4)}.{blob}"
        with pytest.raises(LinkRejected):
            sealer.open(made_up, now=now)
    assert sealer.open(real, now=now).user_id == "7"
    assert ssm_calls == Counter({"ssm:GetParameter": 1}) and not kms_calls


def test_links_sealed_before_a_rotation_still_open_and_two_rotations_retire_them(emulator: object) -> None:
    ssm = _ssm()
    name = _fresh_parameter()
    now = int(time.time())

    def fresh() -> TokenSealer:  # a new container: reads the parameter as it is now
        return TokenSealer(LinkKeySource(lambda: ssm, name))

    before, _ = fresh().seal(tenant_id="5", kind=LinkKind.GUEST, issued_at=now, lifetime_s=600, max_uses=2)
    rotate_link_keys(ssm, name)
    after, _ = fresh().seal(tenant_id="5", kind=LinkKind.GUEST, issued_at=now, lifetime_s=600, max_uses=2)
    assert before.split(".")[2] != after.split(".")[2]
    assert fresh().open(before, now=now).max_uses == 2 and fresh().open(after, now=now).max_uses == 2
    rotate_link_keys(ssm, name)
    with pytest.raises(LinkRejected):
        fresh().open(before, now=now)
    assert fresh().open(after, now=now).tenant_id == "5"


def test_a_warm_container_rereads_the_keys_only_after_their_max_age(emulator: object) -> None:
    ssm = _ssm()
    name = _fresh_parameter()
    calls = _count_calls(ssm)
    clock = [1000.0]
    source = LinkKeySource(lambda: ssm, name, max_age_s=600, clock=lambda: clock[0])
    first = source.ring()
    clock[0] += 599
    assert source.ring() is first and calls["ssm:GetParameter"] == 1
    rotate_link_keys(ssm, name)
    clock[0] += 2
    assert source.ring().previous == first.current and calls["ssm:GetParameter"] == 3  # 2 = the rotation


def test_missing_or_malformed_keys_are_an_infra_error_naming_the_fix(emulator: object) -> None:
    ssm = _ssm()
    missing = TokenSealer(LinkKeySource(lambda: ssm, f"/gangway/test/absent-{secrets.token_hex(4)}"))
    with pytest.raises(InfraError):
        missing.seal(tenant_id="1", kind=LinkKind.GUEST, issued_at=1, lifetime_s=9)
    name = f"/gangway/test/bad-{secrets.token_hex(4)}"
    ssm.put_parameter(Name=name, Value="unset", Type="SecureString")
    with pytest.raises(InfraError, match="rotate-link-key"):
        TokenSealer(LinkKeySource(lambda: ssm, name)).open(
            "g2.1.00000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", now=1
        )


def test_the_parameter_is_a_standard_securestring_under_the_aws_managed_key(emulator: object) -> None:
    ssm = _ssm()
    name = _fresh_parameter()
    found = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])["Parameters"][0]
    assert found["Type"] == "SecureString" and found["Tier"] == "Standard"
    assert found.get("KeyId", "alias/aws/ssm") == "alias/aws/ssm"


SURFACES = {
    "chalicelib.access": {
        "MAX_API_BODY_BYTES",
        "MEMBER_LINK_SECONDS",
        "AccessEntry",
        "AccessPolicy",
        "AccessRecord",
        "AccessService",
        "Authorized",
        "Claims",
        "FirewallSync",
        "Grant",
        "GrantRecord",
        "GrantStore",
        "GuestLink",
        "IpAuthApi",
        "Limit",
        "Link",
        "LinkKey",
        "LinkKeyRing",
        "LinkKeySource",
        "LinkKind",
        "RateLimiter",
        "RateRecord",
        "Revocations",
        "Revoked",
        "TokenSealer",
        "full_sync_request",
    },
    "chalicelib.agents": {
        "AGENT_EVENTS",
        "MAX_MESSAGE_BYTES",
        "AgentEvent",
        "AgentEventRouter",
        "AgentIntake",
        "AgentRequest",
        "BatchResponse",
        "BoundAgentEvents",
        "FirewallGrant",
        "FirewallPorts",
        "IntakeRecord",
        "IotDataPublisher",
        "MqttPublisher",
        "Outgoing",
        "Publisher",
        "cmd_topic",
        "evt_topic",
        "firewall_sync",
        "parse_agent_event",
        "tenant_of",
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

"""The page's push API (`GET /push/key`, `POST`/`DELETE /push/subscribe`) through the api Lambda's entry
point, its hostile-input behaviour, the package surface, and the rule that only sending imports
pywebpush (never the interaction path)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.access import LinkKind
from chalicelib.push import MAX_DEVICES, PushService
from chalicelib.wiring import container
from devstack.discord_user import snowflake
from devstack.push_service import PushServiceStandIn
from tests.access_helpers import ApiAnswer, call_api, make_tenant

ROOT = Path(__file__).resolve().parents[1]
SITE = {"Origin": "https://site.gangway.test"}


def _seal(tenant: str, kind: LinkKind = LinkKind.MEMBER, *, user: str | None = None, age: int = 0) -> str:
    c = container()
    token, _ = c.sealer.seal(
        tenant_id=tenant,
        kind=kind,
        issued_at=int(time.time()) - age,
        lifetime_s=3600,
        user_id=user if kind is not LinkKind.GUEST else None,
        max_uses=2 if kind is LinkKind.GUEST else None,
    )
    return token


def _subscribe(body: Any, ip: str | None = None, headers: dict[str, str] | None = None) -> ApiAnswer:
    n = int(snowflake())
    ip = ip or f"198.{n % 200 + 18}.{n // 256 % 256}.{n // 65536 % 250 + 1}"  # a fresh address per call
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    return call_api(
        "POST", "/push/subscribe", body=raw, source_ip=ip, headers=SITE if headers is None else headers
    )


@pytest.fixture
def tenant(emulator: Any) -> str:
    t = snowflake()
    make_tenant(t)
    return t


def test_the_page_gets_the_vapid_public_key_with_cors_and_no_store(push_loopback: PushService) -> None:
    got = call_api("GET", "/push/key", headers=SITE)
    assert got.status == 200 and got.json == {"public_key": push_loopback.public_key()}
    assert len(got.json["public_key"]) == 87  # base64url of a 65-byte uncompressed P-256 point
    assert got.headers["access-control-allow-origin"] == SITE["Origin"]
    assert got.headers["cache-control"] == "no-store"
    pre = call_api("OPTIONS", "/push/subscribe", headers={**SITE, "Access-Control-Request-Method": "DELETE"})
    assert pre.status == 204 and "DELETE" in pre.headers["access-control-allow-methods"]
    foreign = call_api("OPTIONS", "/push/subscribe", headers={"Origin": "https://evil.example"})
    assert foreign.status == 403 and "access-control-allow-origin" not in foreign.headers


def test_a_member_link_subscribes_this_browser_for_that_member(
    tenant: str, push_loopback: PushService, push_standin: PushServiceStandIn
) -> None:
    user = snowflake()
    device = push_standin.device()
    got = _subscribe(
        {"token": _seal(tenant, user=user), "subscription": device.subscription, "preference": "start"}
    )
    assert got.status == 200, got.json
    assert got.json == {"subscribed": True, "preference": "start", "tenant": tenant, "confirmed": False}
    assert got.headers["cache-control"] == "no-store"
    [sub] = push_loopback.store.subscriptions(tenant, user)
    assert sub.endpoint == device.endpoint and sub.preference.value == "start"
    # Subscribing the same browser again replaces its row (one per device).
    again = _subscribe(
        {"token": _seal(tenant, user=user), "subscription": device.subscription, "preference": "addip"}
    )
    assert again.status == 200
    assert [s.preference.value for s in push_loopback.store.subscriptions(tenant, user)] == ["addip"]


def test_a_subscription_expires_like_a_member_grant_and_goes_with_revoked_access(
    tenant: str, push_loopback: PushService, push_standin: PushServiceStandIn
) -> None:
    from chalicelib.access import AccessPolicy, GrantStore

    GrantStore().set_policy(tenant, AccessPolicy(member_days=7), int(time.time()))
    user, other = snowflake(), snowflake()
    for who in (user, user, other):
        device = push_standin.device()
        token = _seal(tenant, user=who)
        body = {"token": token, "subscription": device.subscription, "preference": "addip"}
        assert _subscribe(body).status == 200
    subs = push_loopback.store.subscriptions(tenant, user)
    assert len(subs) == 2 and all(s.expires_at - s.created_at == 7 * 86400 for s in subs)
    # after the tenant's member grant length the browser no longer counts (and /addip sends the link)
    later = max(s.expires_at for s in subs)
    assert push_loopback.store.subscriptions(tenant, user, now=later) == []
    assert not push_loopback.wants_push(tenant, user)  # not confirmed in Discord yet
    for sub in subs:
        assert push_loopback.confirm(tenant, user, sub.link, int(time.time())) == 1
    assert push_loopback.wants_push(tenant, user)
    # revoking the member's access forgets their browsers, not another member's
    done = container().access.revocations.member(tenant, user, int(time.time()))
    assert done.browsers == 2 and done.addresses == ()
    assert push_loopback.store.subscriptions(tenant, user) == []
    assert not push_loopback.wants_push(tenant, user)
    assert len(push_loopback.store.subscriptions(tenant, other)) == 1
    assert container().access.revocations.everything(tenant, int(time.time())).browsers == 1
    assert push_loopback.store.subscriptions(tenant, other) == []


def test_guest_push_and_expired_tokens_cannot_subscribe(
    tenant: str, push_loopback: PushService, push_standin: PushServiceStandIn
) -> None:
    sub = push_standin.device().subscription
    user = snowflake()
    for token, code in [
        (_seal(tenant, LinkKind.GUEST), "invalid"),
        (_seal(tenant, LinkKind.PUSH, user=user), "invalid"),
        (_seal(tenant, user=user, age=7200), "expired"),
        ("g2.1.00000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAA", "invalid"),
    ]:
        got = _subscribe({"token": token, "subscription": sub, "preference": "addip"})
        assert got.status == 403 and got.json["error"]["code"] == code, got.json
    assert push_loopback.store.subscriptions(tenant, user) == []


def _point() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    raw = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


GOOD_P256DH = _point()


def _sub(endpoint: str, p256dh: str | None = None, auth: str = "AAAAAAAAAAAAAAAAAAAAAA") -> dict[str, Any]:
    return {"endpoint": endpoint, "keys": {"p256dh": p256dh or GOOD_P256DH, "auth": auth}}


@pytest.mark.parametrize(
    "subscription",
    [
        _sub("https://evil.example/push/1"),  # not a push service: the Lambda would POST anywhere
        _sub("https://fcm.googleapis.com.evil.example/wp/1"),
        _sub("https://user:pw@fcm.googleapis.com/wp/1"),
        _sub("https://fcm.googleapis.com:8443/wp/1"),
        _sub("http://fcm.googleapis.com/wp/1"),  # plain http outside loopback
        _sub("http://10.0.0.1/push/1"),
        _sub("file:///etc/passwd"),
        _sub("https://fcm.googleapis.com/wp/" + "a" * 2000),
        _sub("https://fcm.googleapis.com/wp/1\r\nX-Injected: 1"),
        _sub("https://fcm.googleapis.com/wp/1", p256dh="BAAA"),  # too short
        _sub("https://fcm.googleapis.com/wp/1", p256dh="B" + "A" * 86),  # 65 bytes, not on the curve
        _sub("https://fcm.googleapis.com/wp/1", auth="AAAA"),
        _sub("https://fcm.googleapis.com/wp/1", auth="!!!!!!!!!!!!!!!!!!!!!!"),
        {"endpoint": "https://fcm.googleapis.com/wp/1"},
        {"endpoint": "https://fcm.googleapis.com/wp/1", "keys": {"p256dh": "x", "auth": "y", "extra": 1}},
        {**_sub("https://fcm.googleapis.com/wp/1"), "surprise": True},
        "https://fcm.googleapis.com/wp/1",
        None,
        [],
    ],
)
def test_hostile_subscriptions_get_400_and_store_nothing(
    tenant: str, push_loopback: PushService, subscription: Any
) -> None:
    user = snowflake()
    got = _subscribe({"token": _seal(tenant, user=user), "subscription": subscription, "preference": "addip"})
    assert got.status == 400 and got.json["error"]["code"] == "bad_request", got.json
    assert push_loopback.store.subscriptions(tenant, user) == []


def test_a_real_push_service_endpoint_is_accepted(tenant: str, push_loopback: PushService) -> None:
    user = snowflake()
    got = _subscribe(
        {
            "token": _seal(tenant, user=user),
            "subscription": _sub("https://fcm.googleapis.com/wp/abc:d-1"),
            "preference": "addip",
        }
    )
    assert got.status == 200, got.json


@pytest.mark.parametrize(
    "body",
    [
        "",
        "null",
        "[]",
        "{",
        '{"token": "x"}',
        '{"token": 1, "subscription": {}, "preference": "addip"}',
        '{"token": "", "subscription": {}, "preference": "addip"}',
        "\xff\xfe\x00",
        '"string"',
    ],
)
def test_malformed_bodies_get_400(tenant: str, push_loopback: PushService, body: str) -> None:
    got = _subscribe(body)
    assert got.status == 400, got.json


def test_bad_preference_oversized_body_and_foreign_origin_are_refused(
    tenant: str, push_loopback: PushService, push_standin: PushServiceStandIn
) -> None:
    user = snowflake()
    sub = push_standin.device().subscription
    token = _seal(tenant, user=user)
    assert _subscribe({"token": token, "subscription": sub, "preference": "always"}).status == 400
    big = _subscribe({"token": token, "subscription": sub, "preference": "addip", "pad": "x" * 5000})
    assert big.status == 413 and big.json["error"]["code"] == "too_large"
    evil = _subscribe(
        {"token": token, "subscription": sub, "preference": "addip"},
        headers={"Origin": "https://evil.example"},
    )
    assert evil.status == 403 and "access-control-allow-origin" not in evil.headers
    assert push_loopback.store.subscriptions(tenant, user) == []


def test_too_many_subscribe_calls_from_one_address_get_429(tenant: str, push_loopback: PushService) -> None:
    ip = f"198.51.100.{int(snowflake()) % 200 + 20}"
    statuses = [_subscribe("{}", ip=ip).status for _ in range(21)]
    assert statuses[:20] == [400] * 20 and statuses[20] == 429


def test_a_member_keeps_at_most_a_few_browsers_oldest_out_first(
    tenant: str, push_loopback: PushService, push_standin: PushServiceStandIn
) -> None:
    user = snowflake()
    devices = [push_standin.device() for _ in range(MAX_DEVICES + 1)]
    for n, dev in enumerate(devices):
        push_loopback.subscribe(_seal(tenant, user=user), dev.subscription, "addip", int(time.time()) + n)
    kept = [s.endpoint for s in push_loopback.store.subscriptions(tenant, user)]
    assert kept == [d.endpoint for d in devices[1:]]


def test_delete_forgets_the_browser_in_every_tenant_only_with_its_auth_secret(
    tenant: str, push_loopback: PushService, push_standin: PushServiceStandIn
) -> None:
    other = snowflake()
    make_tenant(other)
    user = snowflake()
    dev = push_standin.device()
    for t in (tenant, other):
        push_loopback.subscribe(_seal(t, user=user), dev.subscription, "addip", int(time.time()))
    wrong = call_api(
        "DELETE",
        "/push/subscribe",
        headers=SITE,
        body=json.dumps({"endpoint": dev.endpoint, "auth": "AAAAAAAAAAAAAAAAAAAAAA"}),
    )
    assert wrong.status == 200 and wrong.json == {"deleted": 0}
    right = call_api(
        "DELETE",
        "/push/subscribe",
        headers=SITE,
        body=json.dumps({"endpoint": dev.endpoint, "auth": dev.subscription["keys"]["auth"]}),
    )
    assert right.status == 200 and right.json == {"deleted": 2}
    assert (
        push_loopback.store.subscriptions(tenant, user)
        == push_loopback.store.subscriptions(other, user)
        == []
    )
    for body in ("{}", '{"endpoint": 1, "auth": "x"}', '{"endpoint": "", "auth": ""}', "x" * 5000):
        assert call_api("DELETE", "/push/subscribe", headers=SITE, body=body).status in (400, 413)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=300).map(lambda b: b.decode("latin-1")),  # API Gateway hands over text
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=40),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
            ),
            max_leaves=12,
        ).map(json.dumps),
    ),
    method=st.sampled_from(["POST", "DELETE"]),
)
def test_hostile_bodies_get_a_4xx_never_a_500(push_loopback: PushService, body: Any, method: str) -> None:
    ip = f"203.0.113.{int(snowflake()) % 250}"  # a fresh address mostly: the rate limit is not the subject
    got = call_api(method, "/push/subscribe", body=body, source_ip=ip, headers=SITE)
    assert 400 <= got.status < 500, (got.status, got.json)
    assert set(got.json) == {"error"}


SURFACE = {
    "FLOW_ID",
    "MAX_DEVICES",
    "MAX_PUSH_BODY_BYTES",
    "Delivery",
    "Outcome",
    "Preference",
    "PushApi",
    "PushRecord",
    "PushService",
    "PushStore",
    "Sent",
    "Subscription",
    "SubscriptionRules",
    "VapidKeys",
    "VapidSource",
    "Waiting",
    "WebPushSender",
    "device_id",
    "parse_subscription",
}


def test_package_exports_exactly_its_public_surface() -> None:
    from chalicelib import push

    assert set(push.__all__) == SURFACE
    assert all(hasattr(push, name) for name in push.__all__)


_PROBE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import app
from devstack.pump import LambdaContext
from tests.access_helpers import gateway_event
for request in json.loads(sys.stdin.read()):
    out = app.app(gateway_event("POST", request["path"], body=request["body"], headers=request["headers"]), LambdaContext("api_handler"))
    print(out["statusCode"], out["body"][:60], file=sys.stderr)
import chalicelib.push.addip_push  # the steps module itself loads it lazily too
heavy = sorted(m for m in ("pywebpush", "aiohttp", "http_ece", "py_vapid", "requests") if m in sys.modules)
print(json.dumps(heavy))
"""


def test_the_interaction_path_never_imports_pywebpush(
    harness: Any, push_loopback: PushService, push_standin: PushServiceStandIn
) -> None:
    """A fresh interpreter (a cold api Lambda) answers /addip for an onboarded member (the deferral and
    its job message) and one who is not, and the page's authorise and subscribe calls: no pywebpush,
    aiohttp, http_ece, py_vapid or requests is loaded."""
    harness.command("setup")
    tenant = harness.user.who.guild_id or ""
    onboarded = snowflake()
    sub = push_loopback.subscribe(
        _seal(tenant, user=onboarded), push_standin.device().subscription, "addip", int(time.time())
    )
    push_loopback.confirm(tenant, onboarded, sub.link, int(time.time()))
    requests = []
    for uid in (onboarded, snowflake()):
        payload = harness.user.command(
            "addip", {}, harness.user.who.__class__(guild_id=tenant, user_id=uid, permissions=0)
        )
        body = json.dumps(payload)
        requests.append(
            {"path": "/discord/interactions", "body": body, "headers": dict(harness.user.sign(body.encode()))}
        )
    requests.append(
        {
            "path": "/ipauth/authorize",
            "body": json.dumps({"token": _seal(tenant, user=onboarded)}),
            "headers": SITE,
        }
    )
    requests.append({"path": "/push/subscribe", "body": "{}", "headers": SITE})
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(ROOT)],
        check=False,
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr
    lines = out.stderr.strip().splitlines()[-4:]
    assert re.match(r'200 \{"type": ?5', lines[0]) and re.match(r'200 \{"type": ?4', lines[1]), lines
    assert lines[2].startswith("200") and lines[3].startswith("400"), lines
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.usefixtures("restore_environ")
def test_gangway_vapid_creates_the_key_pair_once_and_rotates_on_request(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from devstack.aws import fake_credentials
    from devstack.cli import main
    from devstack.iam import tool_environment

    for key, value in {**fake_credentials(), "GANGWAY_STAGE": "local"}.items():
        monkeypatch.setenv(key, value)  # restored afterwards: the CLI sets them for its run
    stack = {"aws_endpoint_url": os.environ["AWS_ENDPOINT_URL"], "tool_environment": tool_environment("local")}
    (tmp_path / "stack.json").write_text(json.dumps(stack))  # as `make run` writes it: the admin's keys
    ssm = container().client("ssm")
    name = "/gangway/local/vapid-keys"
    ssm.put_parameter(Name=name, Value="unset", Type="SecureString", Overwrite=True)  # a malformed value
    assert main(["--state-dir", str(tmp_path), "vapid", "--local"]) == 0
    first = capsys.readouterr().out.split("public key: ")[1].strip()
    stored = json.loads(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
    assert stored["public"] == first and len(stored["private"]) == 43  # 32 bytes, base64url
    found = ssm.get_parameter(Name="/gangway/local/vapid-public", WithDecryption=True)["Parameter"]["Value"]
    public_only = json.loads(found)
    assert public_only == {"public": first}  # the API function's half: no private key in it
    assert main(["--state-dir", str(tmp_path), "vapid", "--local"]) == 0  # kept
    assert capsys.readouterr().out.split("public key: ")[1].strip() == first
    assert main(["--state-dir", str(tmp_path), "vapid", "--local", "--rotate"]) == 0
    assert capsys.readouterr().out.split("public key: ")[1].strip() != first


def test_a_missing_or_unset_vapid_secret_is_an_infra_error_not_a_crash() -> None:
    from chalicelib.errors import InfraError
    from chalicelib.push import VapidKeys

    for bad in ("unset", "{}", '{"public": "x", "private": "y"}', "null"):
        with pytest.raises(InfraError):
            VapidKeys.from_json(bad)
    keys = VapidKeys.generate()
    assert VapidKeys.from_json(keys.to_json()) == keys
    assert keys.private not in repr(keys)


def test_the_api_function_reads_only_the_public_vapid_key(emulator: Any) -> None:
    """The API serves the public key from its own parameter; its policy names no other VAPID parameter,
    so a bug or an injection in the API function cannot read the private key (issue 15, item 6)."""
    from chalicelib.errors import InfraError
    from chalicelib.push import VapidKeys, VapidSource
    from deploy.parameters import put_secure

    api = json.loads((Path(__file__).resolve().parents[1] / "policies" / "api_handler.json").read_text())
    readable = [
        r
        for st in api["Statement"]
        if "ssm:GetParameter" in st["Action"]
        for r in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])
        if "vapid" in r
    ]
    assert readable and all(r.endswith("/vapid-public") for r in readable)

    ssm = container().client("ssm")
    keys = VapidKeys.generate()
    name = f"/gangway/test-{os.getpid()}/vapid-public"
    put_secure(ssm, name, json.dumps({"public": keys.public}), overwrite=True)
    source = VapidSource(lambda: ssm, f"/gangway/test-{os.getpid()}/no-such-pair", name)
    assert source.public() == keys.public  # never touched the pair's parameter
    with pytest.raises(InfraError):
        source.keys()
    put_secure(ssm, name, "unset", overwrite=True)
    with pytest.raises(InfraError, match="gangway vapid"):
        VapidSource(lambda: ssm, "/x", name).public()


def test_the_p256_check_agrees_with_cryptography() -> None:
    """parse_subscription's pure-Python curve check accepts and refuses what cryptography does (the
    compressed form, which cryptography also reads, it refuses: the Push API gives 65-byte points)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from chalicelib.push.subscription import on_p256

    def loads(point: bytes) -> bool:
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        except ValueError:
            return False
        return True

    for _ in range(50):
        good = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        tampered = good[:40] + bytes([good[40] ^ 1]) + good[41:]
        compressed = bytes([2 + (good[-1] & 1)]) + good[1:33]
        outside = b"\x04" + b"\xff" * 64
        for point in (good, tampered, compressed, outside, b"\x04" + os.urandom(64)):
            assert on_p256(point) == loads(point) or (point == compressed and not on_p256(point))
        assert on_p256(good)

"""The IPAuth REST API through the api Lambda's real entry point (API Gateway events with a source IP)."""

from __future__ import annotations

import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.access import AccessPolicy, AccessRecord, GrantStore, Limit, LinkKind
from chalicelib.access.ratelimit import address_subjects
from chalicelib.wiring import container
from devstack.discord_user import snowflake
from tests.access_helpers import add_game, authorize, call_api, make_tenant

SITE = "http://127.0.0.1:8002"


@pytest.fixture
def tenant(emulator: object, guild: str) -> str:
    make_tenant(guild)
    return guild


def _member_token(tenant: str, user: str = "200000000000000001", now: int | None = None) -> str:
    link = container().access.member_link(tenant, user, int(time.time()) if now is None else now)
    return link.url.split("#", 1)[1]


def _guest_token(tenant: str, uses: int = 2, now: int | None = None) -> str:
    link = container().access.guest_link(tenant, int(time.time()) if now is None else now, max_uses=uses)
    return link.url.split("#", 1)[1]


def test_member_link_authorises_the_gateway_source_address(tenant: str) -> None:
    from chalicelib.games import GameState

    add_game(tenant, "valheim", GameState.RUNNING)
    add_game(tenant, "factorio")
    answer = authorize(_member_token(tenant), "198.51.100.7")
    assert answer.status == 200, answer.json
    assert answer.json["status"] == "authorised"
    assert answer.json["address"] == "198.51.100.7"
    assert answer.json["kind"] == "member"
    assert answer.json["games"] == ["factorio", "valheim"] and answer.json["running"] == ["valheim"]
    days = (answer.json["expires_at"] - time.time()) / 86400
    assert 89.9 < days <= 90
    assert answer.headers["cache-control"] == "no-store"
    grant = GrantStore().get(tenant, "198.51.100.7")
    assert grant is not None and grant.kind is LinkKind.MEMBER and grant.owner == "user#200000000000000001"


def test_member_link_from_a_new_address_replaces_the_old_one(tenant: str) -> None:
    token = _member_token(tenant)
    assert authorize(token, "198.51.100.7").json["status"] == "authorised"
    answer = authorize(token, "2001:db8::42")
    assert answer.json["status"] == "replaced" and answer.json["replaced"] == ["198.51.100.7"]
    assert [g.address for g in GrantStore().all(tenant)] == ["2001:db8::42"]


def test_reopening_a_member_link_from_the_same_address_says_already_authorised(tenant: str) -> None:
    token = _member_token(tenant)
    authorize(token, "198.51.100.7")
    answer = authorize(token, "198.51.100.7")
    assert answer.status == 200 and answer.json["status"] == "already"
    assert len(GrantStore().all(tenant)) == 1


def test_ipv4_mapped_ipv6_source_is_stored_as_ipv4(tenant: str) -> None:
    assert authorize(_member_token(tenant), "::ffff:203.0.113.9").json["address"] == "203.0.113.9"


def test_guest_link_stops_working_after_its_uses(tenant: str) -> None:
    token = _guest_token(tenant, uses=2)
    first = authorize(token, "203.0.113.1")
    assert first.status == 200 and first.json["kind"] == "guest"
    assert 2.9 < (first.json["expires_at"] - time.time()) / 86400 <= 3
    # The same guest again spends no use.
    assert authorize(token, "203.0.113.1").json["status"] == "already"
    assert authorize(token, "203.0.113.2").status == 200
    third = authorize(token, "203.0.113.3")
    assert third.status == 403 and third.json["error"]["code"] == "used_up"
    assert GrantStore().get(tenant, "203.0.113.3") is None


def test_expired_link_is_refused_and_writes_nothing(tenant: str) -> None:
    token = _member_token(tenant, now=int(time.time()) - 2 * 86400)
    answer = authorize(token, "198.51.100.9")
    assert answer.status == 403 and answer.json["error"]["code"] == "expired"
    assert GrantStore().all(tenant) == []


def test_tampered_and_foreign_tenant_tokens_are_invalid_and_write_nothing(tenant: str) -> None:
    token = _member_token(tenant)
    prefix, tid, key_id, blob = token.split(".")
    flipped = blob[:20] + ("A" if blob[20] != "A" else "B") + blob[21:]
    other = snowflake()
    make_tenant(other)
    for bad in (
        f"{prefix}.{tid}.{key_id}.{flipped}",  # a changed byte
        f"{prefix}.{other}.{key_id}.{blob}",  # sealed for this tenant, presented as another's
        _member_token(other).replace(other, tenant),  # another tenant's link relabelled
        "g2.123.0badbeef.notbase64!!",
        "hello",
    ):
        answer = authorize(bad, "198.51.100.10")
        assert answer.status == 403, (bad, answer.json)
        assert answer.json["error"]["code"] == "invalid"
    assert GrantStore().all(tenant) == [] and GrantStore().all(other) == []


def test_link_of_a_server_that_left_gangway_is_invalid(emulator: object, guild: str) -> None:
    token = _member_token(guild)  # never ran /setup
    answer = authorize(token)
    assert answer.status == 403 and answer.json["error"]["code"] == "invalid"


def test_over_the_maximum_guests_are_evicted_before_members(tenant: str) -> None:
    GrantStore().set_policy(tenant, AccessPolicy(max_grants=2), int(time.time()))
    authorize(_member_token(tenant, "1"), "198.51.100.1")
    authorize(_guest_token(tenant, uses=5), "203.0.113.1")
    answer = authorize(_member_token(tenant, "2"), "198.51.100.2")
    assert answer.status == 200
    assert sorted(g.address for g in GrantStore().all(tenant)) == ["198.51.100.1", "198.51.100.2"]
    authorize(_member_token(tenant, "3"), "198.51.100.3")
    # Then the oldest member makes room.
    assert sorted(g.address for g in GrantStore().all(tenant)) == ["198.51.100.2", "198.51.100.3"]


def test_check_reports_the_callers_grants_across_tenants(tenant: str) -> None:
    authorize(_member_token(tenant), "198.51.100.20")
    answer = call_api("GET", "/ipauth/check", source_ip="198.51.100.20", body=None)
    assert answer.status == 200
    assert answer.json["address"] == "198.51.100.20" and answer.json["authorised"] is True
    assert [g["tenant"] for g in answer.json["grants"]] == [tenant]
    nobody = call_api("GET", "/ipauth/check", source_ip="198.51.100.21")
    assert nobody.json == {"address": "198.51.100.21", "authorised": False, "grants": []}


def test_cors_allows_only_the_site_origin(tenant: str) -> None:
    site = container().settings.site_url
    pre = call_api("OPTIONS", "/ipauth/authorize", headers={"Origin": site})
    assert pre.status == 204 and pre.headers["access-control-allow-origin"] == site
    assert pre.json is None  # a 204 has no body
    assert "POST" in pre.headers["access-control-allow-methods"]
    evil = call_api("OPTIONS", "/ipauth/authorize", headers={"Origin": "https://evil.example"})
    assert evil.status == 403 and "access-control-allow-origin" not in evil.headers
    answer = authorize(_member_token(tenant), headers={"Origin": "https://evil.example"})
    assert answer.status == 403 and GrantStore().all(tenant) == []
    answer = authorize(_member_token(tenant), headers={"Origin": site})
    assert answer.status == 200 and answer.headers["access-control-allow-origin"] == site


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "[]",
        '{"token": 5}',
        '{"token": ["a"]}',
        '{"token": ""}',
        '{"token": "x", "address": "1.2.3.4"}',
        '{"token": null}',
        json.dumps({"token": "g2.1.00000000." + "A" * 3000}),
    ],
    ids=["empty", "not-json", "array", "number", "list", "blank", "extra-key", "null", "long-token"],
)
def test_malformed_bodies_get_400_and_change_nothing(tenant: str, body: str) -> None:
    answer = call_api("POST", "/ipauth/authorize", body=body, source_ip=f"192.0.2.{len(body) % 250}")
    assert answer.status in (400, 413), answer.json
    assert answer.json["error"]["code"] in {"bad_request", "too_large"}
    assert GrantStore().all(tenant) == []


def test_huge_body_gets_413_and_changes_nothing(tenant: str) -> None:
    body = json.dumps({"token": _member_token(tenant), "pad": "x" * 2_000_000})
    answer = call_api("POST", "/ipauth/authorize", body=body)
    assert answer.status == 413 and GrantStore().all(tenant) == []


def test_forged_forwarded_headers_are_ignored(tenant: str) -> None:
    answer = authorize(
        _member_token(tenant),
        "198.51.100.30",
        headers={"X-Forwarded-For": "10.0.0.1", "X-Real-IP": "10.0.0.2", "Forwarded": "for=10.0.0.3"},
    )
    assert answer.json["address"] == "198.51.100.30"
    assert [g.address for g in GrantStore().all(tenant)] == ["198.51.100.30"]


def test_non_json_content_type_is_refused(tenant: str) -> None:
    answer = call_api(
        "POST",
        "/ipauth/authorize",
        body=json.dumps({"token": _member_token(tenant)}),
        headers={"Content-Type": "text/plain"},
    )
    assert 400 <= answer.status < 500 and GrantStore().all(tenant) == []


def test_too_many_tries_from_one_address_get_429(tenant: str) -> None:
    address = "192.0.2.250"
    statuses = [authorize(f"g2.1.00000000.AAAA{i}", address).status for i in range(21)]
    assert statuses[:20] == [403] * 20 and statuses[20] == 429
    answer = authorize(_member_token(tenant), address)
    assert answer.status == 429 and int(answer.headers["retry-after"]) >= 1
    assert answer.json["error"]["code"] == "rate_limited"
    assert GrantStore().all(tenant) == []


def test_an_ipv6_client_rotating_addresses_inside_its_64_is_limited_too(tenant: str) -> None:
    """Issue 15.3: each address of a /64 has its own counter, and so has the /64 (four addresses' worth)."""
    net = f"2001:db8:{int(snowflake()) % 65536:x}:{os.getpid() % 65536:x}"
    statuses = [authorize(f"g2.1.00000000.AAAA{i}", f"{net}::{i + 1:x}").status for i in range(81)]
    assert statuses[:80] == [403] * 80 and statuses[80] == 429
    assert authorize(_member_token(tenant), f"{net}::ffff").status == 429
    assert GrantStore().all(tenant) == []
    # The neighbouring /64 is someone else: not limited.
    neighbour = net.rsplit(":", 1)[0] + f":{(int(net.rsplit(':', 1)[1], 16) + 1) % 65536:x}"
    assert authorize(_member_token(tenant), f"{neighbour}::1").status == 200


def test_the_rate_counters_of_an_address_are_its_own_and_for_ipv6_its_64() -> None:
    limit = Limit("probe", 20, 600)
    assert address_subjects(limit, "192.0.2.9") == [(limit, "192.0.2.9")]
    assert address_subjects(limit, "::ffff:192.0.2.9") == [(limit, "192.0.2.9")]
    wider = Limit("probe-v6net", 80, 600)
    assert address_subjects(limit, "2001:DB8:1:2:aaaa::1") == [
        (limit, "2001:db8:1:2:aaaa::1"),
        (wider, "2001:db8:1:2::/64"),
    ]


def test_too_many_tries_of_one_link_get_429(tenant: str) -> None:
    token = _member_token(tenant)
    statuses = [authorize(token, f"192.0.2.{i}").status for i in range(11)]
    assert statuses[:10] == [200] * 10 and statuses[10] == 429


def test_guest_link_uses_are_counted_in_the_access_table(tenant: str) -> None:
    token = _guest_token(tenant, uses=3)
    authorize(token, "203.0.113.50")
    rows = [r for r in AccessRecord.query(tenant) if r.item.startswith("link#")]
    assert len(rows) == 1 and rows[0].uses == 1 and rows[0].max_uses == 3


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        _JSON.map(json.dumps),
        st.dictionaries(st.just("token"), _JSON).map(json.dumps),
        st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    ),
    headers=st.dictionaries(
        st.sampled_from(["X-Forwarded-For", "Forwarded", "X-Real-IP", "Origin", "Content-Type"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
        max_size=3,
    ),
    last_octet=st.integers(1, 254),
)
def test_hostile_requests_get_4xx_and_write_no_grant(
    tenant: str, body: str, headers: dict[str, str], last_octet: int
) -> None:
    answer = call_api(
        "POST", "/ipauth/authorize", body=body, headers=headers, source_ip=f"100.64.{last_octet}.1"
    )
    assert 400 <= answer.status < 500, (body, headers, answer.json)
    assert answer.headers.get("cache-control", "no-store") == "no-store"
    assert GrantStore().all(tenant) == []

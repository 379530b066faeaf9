"""Firewall sync: every grant change reaches the tenant's running agents over a real MQTT broker, an
agent that connects gets the full set, and the reaper removes expired grants and says so."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from chalicelib.access import Grant, GrantStore, LinkKind, full_sync_request
from chalicelib.agents import AgentRequest, FirewallGrant, FirewallPorts, cmd_topic, firewall_sync
from chalicelib.games import GameState
from chalicelib.wiring import container
from tests.access_helpers import Subscriber, add_game, authorize, make_tenant

CONTRACT = Path(__file__).resolve().parent.parent / "agent" / "contract" / "requests"


@pytest.fixture
def tenant(emulator: object, guild: str) -> str:
    make_tenant(guild)
    return guild


def _token(tenant: str, user: str = "7") -> str:
    return container().access.member_link(tenant, user, int(time.time())).url.split("#", 1)[1]


def _only_messages(sub: Subscriber) -> list[tuple[str, dict[str, Any]]]:
    return sub.drain(wait=0.3)


def test_an_authorised_address_is_synced_to_each_running_game_only(
    tenant: str, agent_link: Subscriber
) -> None:
    add_game(tenant, "valheim", GameState.RUNNING)
    add_game(tenant, "factorio", GameState.RUNNING)
    add_game(tenant, "satisfactory", GameState.STOPPED)
    answer = authorize(_token(tenant), "198.51.100.7")
    assert answer.status == 200
    got = sorted([agent_link.next(), agent_link.next()])
    assert [t for t, _ in got] == [cmd_topic(tenant, "factorio"), cmd_topic(tenant, "valheim")]
    for _, msg in got:
        assert msg["type"] == "firewall.sync" and len(msg["id"]) == 32
        assert msg["body"] == {
            "mode": "delta",
            "grants": [{"address": "198.51.100.7", "expires_at": answer.json["expires_at"]}],
            "revoke": [],
            "version": 1,  # the tenant's grant set's first change
        }
    assert _only_messages(agent_link) == []


def test_replacing_a_members_address_revokes_the_old_one(tenant: str, agent_link: Subscriber) -> None:
    add_game(tenant, "valheim", GameState.RUNNING)
    token = _token(tenant)
    authorize(token, "198.51.100.7")
    agent_link.next()
    authorize(token, "2001:db8::42")
    _, msg = agent_link.next()
    assert [g["address"] for g in msg["body"]["grants"]] == ["2001:db8::42"]
    assert msg["body"]["revoke"] == ["198.51.100.7"]


def test_no_running_game_means_nothing_is_published(tenant: str, agent_link: Subscriber) -> None:
    add_game(tenant, "valheim", GameState.STOPPED)
    assert authorize(_token(tenant), "198.51.100.7").status == 200
    assert _only_messages(agent_link) == []


def test_the_reaper_removes_expired_grants_and_syncs_the_removal(tenant: str, agent_link: Subscriber) -> None:
    add_game(tenant, "valheim", GameState.RUNNING)
    now = int(time.time())
    store = GrantStore()
    store.put(Grant(tenant, "203.0.113.5", LinkKind.GUEST, "link#x", now - 4 * 86400, now - 60))
    store.put(Grant(tenant, "203.0.113.6", LinkKind.MEMBER, "user#1", now - 86400, now + 86400))
    removed = container().access.reap(now)
    assert removed[tenant] == ["203.0.113.5"]
    assert [g.address for g in store.all(tenant)] == ["203.0.113.6"]
    topic, msg = agent_link.next()
    assert topic == cmd_topic(tenant, "valheim")
    assert msg["body"] == {"mode": "delta", "grants": [], "revoke": ["203.0.113.5"], "version": 1}


def test_the_reaper_binding_runs_as_the_schedule_invokes_it(tenant: str) -> None:
    import app as app_module
    from devstack.pump import LambdaContext, scheduled_event

    now = int(time.time())
    GrantStore().put(Grant(tenant, "203.0.113.9", LinkKind.GUEST, "link#y", now - 300, now - 1))
    app_module.reaper(scheduled_event("reaper", "us-east-1"), LambdaContext("reaper"))
    assert GrantStore().all(tenant) == []


def test_a_connecting_agent_gets_the_full_current_set(tenant: str, agent_link: Subscriber) -> None:
    now = int(time.time())
    store = GrantStore()
    store.put(Grant(tenant, "2001:db8::42", LinkKind.MEMBER, "user#1", now, now + 3600))
    store.put(Grant(tenant, "198.51.100.7", LinkKind.GUEST, "link#z", now, now + 60))
    store.put(Grant(tenant, "198.51.100.8", LinkKind.GUEST, "link#z", now - 90, now - 1))  # expired
    store.next_version(tenant, now)
    store.next_version(tenant, now)
    request = container().access.full_sync(tenant, now)
    assert request.type == "firewall.sync"
    assert request.body == {
        "mode": "full",
        "grants": [
            {"address": "198.51.100.7", "expires_at": now + 60},
            {"address": "2001:db8::42", "expires_at": now + 3600},
        ],
        "version": 2,
    }
    container().access.send_full_sync(tenant, "valheim", now)
    topic, msg = agent_link.next()
    assert topic == cmd_topic(tenant, "valheim") and msg["body"] == request.body


def test_a_failed_publish_keeps_the_grant(tenant: str) -> None:
    from chalicelib.agents import MqttPublisher

    c = container()
    c.__dict__["publisher"] = MqttPublisher("mqtt://127.0.0.1:9")  # nothing listens there
    try:
        add_game(tenant, "valheim", GameState.RUNNING)
        assert authorize(_token(tenant), "198.51.100.77").status == 200
        assert GrantStore().get(tenant, "198.51.100.77") is not None
    finally:
        c.__dict__.pop("publisher", None)


@pytest.mark.parametrize("name", ["firewall.sync.json", "firewall.sync.delta.json"])
def test_our_firewall_sync_matches_the_agent_contract_examples(name: str) -> None:
    example = json.loads((CONTRACT / name).read_text())
    body = example["body"]
    grants = [FirewallGrant(g["address"], g["expires_at"]) for g in body["grants"]]
    ports = body.get("ports")
    wire_ports = FirewallPorts(tuple(ports["tcp"]), tuple(ports["udp"])) if ports else None
    ours = json.loads(
        firewall_sync(
            body["mode"], grants, body.get("revoke", []), version=body["version"], ports=wire_ports
        ).to_json()
    )
    assert set(ours) == set(example) == {"id", "type", "body"}
    assert ours["type"] == example["type"] and ours["body"] == example["body"]


def test_full_sync_request_has_no_revoke_list_and_refuses_one() -> None:
    req = full_sync_request([])
    assert req.body == {"mode": "full", "grants": []}
    with pytest.raises(ValueError, match="no revoke"):
        firewall_sync("full", [], ["198.51.100.1"])


def test_requests_over_the_agents_size_limit_are_refused() -> None:
    with pytest.raises(ValueError, match="accepts"):
        AgentRequest("firewall.sync", {"pad": "x" * 70_000}).to_json()


def test_iot_core_publisher_sends_qos1_to_the_cmd_topic_and_wraps_failures() -> None:
    import boto3
    from botocore.stub import Stubber

    from chalicelib.agents import IotDataPublisher, Outgoing
    from chalicelib.errors import InfraError

    client = boto3.client("iot-data", region_name="us-east-1", endpoint_url="https://iot.example")
    payload = firewall_sync("delta", [], ["198.51.100.1"]).to_json()
    with Stubber(client) as stub:
        stub.add_response("publish", {}, {"topic": "gangway/1/valheim/cmd", "qos": 1, "payload": payload})
        stub.add_client_error("publish", "ForbiddenException", http_status_code=403)
        publisher = IotDataPublisher(client)
        publisher.publish([Outgoing("gangway/1/valheim/cmd", payload)])
        with pytest.raises(InfraError, match="IoT publish"):
            publisher.publish([Outgoing("gangway/1/valheim/cmd", payload)])
        stub.assert_no_pending_responses()


def test_a_full_sync_at_the_largest_allowed_maximum_fits_the_agents_limit() -> None:
    from chalicelib.agents import MAX_MESSAGE_BYTES

    widest = [
        Grant(
            "1", f"2001:db8:ffff:ffff:ffff:ffff:ffff:{i:04x}", LinkKind.MEMBER, f"user#{i}", 0, 4_000_000_000
        )
        for i in range(500)  # /ipsettings caps max_grants at 500
    ]
    assert len(full_sync_request(widest).to_json()) < MAX_MESSAGE_BYTES

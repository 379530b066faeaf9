"""A lost firewall delta does not leave a revoked address in: a real agent (its nftables in a network
namespace this test creates) on a real MQTT broker converges on the tenant's grants.

The backend publishes through the app's own path; a lossy stand-in for the network drops one delta on
the way (silently, as a lost QoS 1 message would be). What the agent publishes goes through the IoT
rule's stand-in (`devstack.bridge.rule_message`) into the agent_events Lambda, as in AWS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chalicelib.access import Grant, GrantStore, LinkKind
from chalicelib.agents import MqttPublisher, Outgoing
from chalicelib.games import GameState
from chalicelib.wiring import container
from tests.access_helpers import Broker, add_game, make_tenant
from tests.agent_host import Host, agent_host

A, B, C = "198.18.7.1", "198.18.7.2", "198.18.7.3"


@dataclass
class LossyPublisher:
    """The app's publisher to the real broker, losing the deltas whose version is in `lose`."""

    inner: MqttPublisher
    lose: set[int] = field(default_factory=set)
    lost: list[bytes] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)  # the ids of the requests passed on

    def publish(self, messages: Sequence[Outgoing]) -> None:
        kept = []
        for m in messages:
            body = json.loads(m.payload)["body"]
            if body.get("mode") == "delta" and body.get("version") in self.lose:
                self.lost.append(m.payload)
            else:
                kept.append(m)
                self.sent.append(json.loads(m.payload)["id"])
        if kept:
            self.inner.publish(kept)


@pytest.fixture
def lossy(emulator: object, mqtt_broker: Broker) -> Iterator[LossyPublisher]:
    c = container()
    publisher = LossyPublisher(MqttPublisher(mqtt_broker.url))
    c.__dict__["publisher"] = publisher
    yield publisher
    c.__dict__.pop("publisher", None)


def _until(what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _quiet(host: Host, lossy: LossyPublisher) -> bool:
    """Nothing in flight between the agent and the backend: the agent's start-up heartbeat (its first
    tick sends one, with the version it held then) has been handled, so has every event the rule passed
    on, and every request the backend sent has been answered. A heartbeat still in flight when a change is
    numbered would rightly be answered with the full set at the new version."""
    answered = {e["id"] for e in host.handled}
    return (
        any(e["type"] == "heartbeat" for e in host.handled)
        and len(host.handled) == len(host.events)
        and set(lossy.sent) <= answered
    )


def _setup(guild: str) -> GrantStore:
    make_tenant(guild)
    add_game(guild, "valheim", GameState.RUNNING)
    store = GrantStore()
    now = int(time.time())
    store.put(Grant(guild, A, LinkKind.MEMBER, "user#1", now, now + 3600))
    return store


def _change(store: GrantStore, tenant: str, grant: Grant | None, revoke: list[str]) -> None:
    """A grant change as the access service makes it: the rows, then the numbered delta."""
    if grant is not None:
        store.put(grant)
    for address in revoke:
        store.remove(tenant, address)
    container().access.firewall.changed(tenant, [grant] if grant else [], revoke, now=int(time.time()))


def test_a_lost_revocation_is_made_good_by_the_next_delta(
    tmp_path: Path, mqtt_broker: Broker, guild: str, lossy: LossyPublisher
) -> None:
    store = _setup(guild)
    with agent_host(tmp_path, mqtt_broker, guild, heartbeat_s=3600) as host:
        _until("the full set on ready", lambda: host.addresses() == {A})
        _until("the start-up exchanges to settle", lambda: _quiet(host, lossy))
        now = int(time.time())
        lossy.lose = {1}
        _change(store, guild, None, [A])  # version 1 revokes A: lost on the way
        assert len(lossy.lost) == 1
        time.sleep(0.5)
        assert host.addresses() == {A}  # the agent never heard of it
        _change(store, guild, Grant(guild, B, LinkKind.GUEST, "link#x", now, now + 600), [])  # version 2
        # the agent skips 2 (it does not follow 0), asks for the full set, and gets it
        # settled too: the kernel's set changes just before the agent records the version it holds
        _until("the agent to converge", lambda: host.addresses() == {B} and _quiet(host, lossy))
        assert host.firewall.version == 2
        assert any(e["type"] == "firewall.resync" and e["body"]["reason"] == "gap" for e in host.events)


def test_a_lost_last_revocation_is_corrected_by_the_heartbeat(
    tmp_path: Path, mqtt_broker: Broker, guild: str, lossy: LossyPublisher
) -> None:
    store = _setup(guild)
    with agent_host(tmp_path, mqtt_broker, guild, heartbeat_s=1.0) as host:
        _until("the full set on ready", lambda: host.addresses() == {A})
        lossy.lose = {1}
        _change(store, guild, None, [A])  # the only change, lost: no later delta shows the gap
        assert len(lossy.lost) == 1
        # the next heartbeat reports version 0; the backend, at 1, sends the full set
        _until("the heartbeat's correction", lambda: host.addresses() == set() and _quiet(host, lossy), timeout=10)
        assert host.firewall.version == 1
        assert any(e["type"] == "heartbeat" and e["body"]["firewall_version"] == 0 for e in host.events)

"""Property: whatever random callers of random guilds do, no read or write crosses tenants.

Tenants have games and grants (player addresses let in); callers list, show, autocomplete, ask for
their address status, open links, read plans and settings.

Every DynamoDB request the app makes while handling a caller's interaction is inspected at the botocore
layer: no Scan, and no other tenant's id anywhere in the request. Answers never show another tenant's
game names, and naming another tenant's game is answered as if it did not exist.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.access import Grant, GrantRecord, GrantStore, LinkKind
from chalicelib.games import GameRecord, GameStore
from chalicelib.jobs import InteractionRecord
from chalicelib.tenancy import AuditRecord, TenantRecord, TenantStore
from chalicelib.wiring import container
from devstack.discord_user import DiscordUser, Who
from tests.conftest import APPLICATION_ID, SIGNING_KEY

GUILDS = ("710000000000000001", "710000000000000002", "710000000000000003")
MAIN_ROLE = "720000000000000001"
WORDS = ("valheim", "factorio", "vrising", "terraria", "ark", "rust")
GAMES = {g: [f"t{i}-{w}" for w in WORDS[i : i + 3]] for i, g in enumerate(GUILDS)}


class _Watch:
    """Records the DynamoDB requests made while `active` is the caller's guild."""

    def __init__(self) -> None:
        self.active: str | None = None
        self.violations: list[str] = []

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if self.active is None:
            return
        if model.name == "Scan":
            self.violations.append("Scan")
        body = params.get("body", b"")
        text = body.decode() if isinstance(body, bytes) else str(body)
        for guild in GUILDS:
            if guild != self.active and guild in text:
                self.violations.append(f"{model.name} touched {guild} for {self.active}")


@pytest.fixture(scope="module")
def watch(emulator: Any) -> Iterator[_Watch]:
    store = TenantStore(default_region="us-east-1")
    for guild in GUILDS:
        store.ensure(guild, created_by="1")
        store.set_roles(guild, "main", [MAIN_ROLE])
        for name in GAMES[guild]:
            if GameStore().get(guild, name) is None:
                GameStore().create(guild, name, description=f"{name} of {guild}", created_by="1")
        now = int(time.time())
        for n, address in enumerate(ADDRESSES[guild]):
            GrantStore().put(
                Grant(guild, address, LinkKind.MEMBER, f"user#73000000000000000{n}", now, now + 3600)
            )
    w = _Watch()
    clients = [
        m._get_connection().connection.client
        for m in (TenantRecord, GameRecord, InteractionRecord, AuditRecord, GrantRecord)
    ]
    for client in clients:
        client.meta.events.register("before-call.dynamodb", w)
    yield w
    for client in clients:
        client.meta.events.unregister("before-call.dynamodb", w)


ALL_NAMES = [n for names in GAMES.values() for n in names]
# Every tenant lets in a few player addresses; no answer may ever show another tenant's.
ADDRESSES = {g: [f"198.51.100.{101 + 10 * i + k}" for k in range(2)] for i, g in enumerate(GUILDS)}
operations = st.one_of(
    st.just(("games", {})),
    st.builds(lambda n: ("games", {"game": n}), st.sampled_from(ALL_NAMES)),
    st.builds(lambda p: ("autocomplete", {"game": p}), st.sampled_from(["", "t", "t0", "t1-", "t2-a", "v"])),
    st.just(("help", {})),
    st.just(("plan", {})),
    st.just(("status", {})),
    st.just(("setup", {})),
    st.just(("ip", {})),
    st.just(("ipsettings", {})),
    st.just(("addip", {})),
    st.just(("audit", {})),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(guild=st.sampled_from(GUILDS), admin=st.booleans(), op=operations)
def test_no_interaction_ever_reads_or_writes_another_tenant(
    watch: _Watch, guild: str, admin: bool, op: tuple[str, dict[str, Any]]
) -> None:
    who = Who(
        guild_id=guild, user_id="730000000000000001", role_ids=(MAIN_ROLE,), permissions=int(admin and 8)
    )
    user = DiscordUser(SIGNING_KEY, APPLICATION_ID, who=who)
    name, options = op
    if name == "autocomplete":
        payload = user.command("games", options, focused="game")
    else:
        payload = user.command(name, options)
    body = json.dumps(payload).encode()
    container().services.tenants._forget(guild)  # make every example read its tenant, not the cache
    watch.active, watch.violations = guild, []
    try:
        reply = container().endpoint.handle(body, user.sign(body))
    finally:
        watch.active = None
    assert watch.violations == []
    answer = json.dumps(json.loads(reply.body))
    foreign = [n for g, names in GAMES.items() if g != guild for n in names]
    typed = options.get("game")
    # The name the caller typed may be echoed back; nothing else of another tenant may appear.
    assert not any(n in answer for n in foreign if n != typed), answer
    assert not any(a in answer for g, addrs in ADDRESSES.items() if g != guild for a in addrs), answer
    if name == "games" and options.get("game") in foreign:
        assert "does not exist" in answer

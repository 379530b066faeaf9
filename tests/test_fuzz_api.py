"""The HTTP doors under generated hostile input, through the api Lambda's entry point (the Chalice app
called with API Gateway events): the interactions endpoint (signed with the test key, so input reaches
the parser) and every REST route in app.py.

Property: a 2xx or a clear 4xx with a JSON error, never a 5xx or an exception; input refused with a
4xx changes no row and queues nothing. `GANGWAY_FUZZ_EXAMPLES` sets the inputs per door (docs/security.md).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.games import GameState
from chalicelib.wiring import container
from devstack.aws import Emulator
from devstack.discord_api import DiscordStandIn
from devstack.discord_schemas import check_callback
from devstack.discord_user import DiscordUser, Who, snowflake
from tests.access_helpers import add_game, call_api, make_tenant
from tests.conftest import APPLICATION_ID, SIGNING_KEY
from tests.fuzzing import Door, EmulatorState, bodies, fuzz_settings, hostile_json, hostile_text

SITE = "https://site.gangway.test"


def _state() -> EmulatorState:
    s = container().settings
    return EmulatorState(s.ratelimit_table, s.audit_table)


def _tenant_with_game(state: GameState = GameState.STOPPED) -> str:
    guild = snowflake()
    make_tenant(guild)
    add_game(guild, "valheim", state)
    return guild


def _check(door: Door, state: EmulatorState, before: dict[str, str], answer: tuple[int, Any], what: str) -> None:
    """The door's property for one answer (status, JSON body); tallies it."""
    status, body = answer
    assert status < 500, f"{what}: {status} {body!r}"
    if 400 <= status < 500:
        assert isinstance(body, dict) and body, f"{what}: a {status} without a JSON error: {body!r}"
        changed = state.diff(before, state.take())
        assert not changed, f"{what}: refused with {status} but changed:\n" + "\n".join(changed)
    door.seen(str(status))


ip_addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(["198.51.100.7", "2001:db8::42", "127.0.0.1", "::1", "0.0.0.0"]),
)
_header_value = st.one_of(st.just(SITE), st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80))
headers = st.dictionaries(
    st.sampled_from(["Origin", "Content-Type", "Access-Control-Request-Method", "X-Forwarded-For", "Cookie"]),
    _header_value,
    max_size=4,
)
# For the doors that take a body: its Content-Type stays JSON (another is a 415 before any parsing).
body_headers = st.dictionaries(
    st.sampled_from(["Origin", "Access-Control-Request-Method", "X-Forwarded-For", "Cookie"]), _header_value, max_size=3
)


# -- POST /discord/interactions ------------------------------------------------------------------------


def test_interactions_door(emulator: Emulator, standin: DiscordStandIn) -> None:
    guild = _tenant_with_game()
    user = DiscordUser(SIGNING_KEY, APPLICATION_ID, who=Who(guild_id=guild))
    member = DiscordUser(SIGNING_KEY, APPLICATION_ID, who=Who(guild_id=guild, permissions=0))
    bases = [
        user.command("help", {"command": "games"}),
        user.command("games", {"game": "valheim"}),
        member.command("games"),
        user.command("games", {"game": "v"}, focused="game"),
        user.command("setup"),
        user.component("setup:main", ["400000000000000001"]),
        member.component("games:edit:valheim"),
        user.modal_submit("setup:main", {"name": "x"}),
        {"type": 1, "id": "1", "application_id": APPLICATION_ID, "token": "t", "version": 1},
    ]
    door, state = Door("POST /discord/interactions"), _state()

    @fuzz_settings()
    @given(body=bodies(bases), signed=st.integers(0, 9), sig=hostile_text)
    def run(body: str, signed: int, sig: str) -> None:
        raw = body.encode("utf-8", "surrogatepass")
        # Hypothesis favours 0 and the ends of a range: 5 (one input in ten, roughly) goes unsigned.
        forged = {"X-Signature-Ed25519": sig, "X-Signature-Timestamp": str(int(time.time()))}
        hdrs = user.sign(raw) if signed != 5 else forged
        before = state.take()
        answer = call_api("POST", "/discord/interactions", body=body, headers=hdrs)
        if signed == 5:  # refused unread: too large (before the signature check), else forged
            assert answer.status in (401, 413), answer
        if answer.status == 200:
            check_callback(answer.json)  # Discord's own schema for what it would accept
        _check(door, state, before, (answer.status, answer.json), body[:200])

    run()
    door.write()


# -- the IPAuth page's API ------------------------------------------------------------------------------


def _token(url: str) -> str:
    return url.split("#", 1)[1]


def test_ipauth_authorize_door(emulator: Emulator) -> None:
    guild = _tenant_with_game(GameState.RUNNING)
    now = int(time.time())
    member = _token(container().access.member_link(guild, "200000000000000001", now).url)
    guest = _token(container().access.guest_link(guild, now, max_uses=3).url)
    bases = [{"token": member}, {"token": guest}, {"token": member[:-4] + "AAAA"}, {"token": ""}]
    door, state = Door("POST /ipauth/authorize"), _state()

    @fuzz_settings()
    @given(body=bodies(bases), hdrs=body_headers, ip=ip_addresses, site=st.booleans())
    def run(body: str, hdrs: dict[str, str], ip: str, site: bool) -> None:
        hdrs = {**hdrs, "Origin": SITE} if site else hdrs
        before = state.take()
        answer = call_api("POST", "/ipauth/authorize", body=body, headers=hdrs, source_ip=ip)
        _check(door, state, before, (answer.status, answer.json), body[:200])

    run()
    door.write()


@pytest.mark.parametrize(
    "route",
    [
        ("GET", "/ipauth/check"),
        ("OPTIONS", "/ipauth/check"),
        ("OPTIONS", "/ipauth/authorize"),
        ("GET", "/push/key"),
        ("OPTIONS", "/push/key"),
        ("OPTIONS", "/push/subscribe"),
    ],
)
def test_header_only_doors(emulator: Emulator, route: tuple[str, str]) -> None:
    _tenant_with_game(GameState.RUNNING)
    method, path = route
    door, state = Door(f"{method} {path}"), _state()

    @fuzz_settings()
    @given(hdrs=headers, ip=ip_addresses, body=st.none() | hostile_text)
    def run(hdrs: dict[str, str], ip: str, body: str | None) -> None:
        before = state.take()
        answer = call_api(method, path, headers=hdrs, source_ip=ip, body=body)
        if method == "OPTIONS" and answer.status < 400:
            assert answer.headers.get("access-control-allow-origin") in (None, SITE), answer
        _check(door, state, before, (answer.status, answer.json or {"preflight": "empty"}), str(hdrs))

    run()
    door.write()


# -- web push --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_push_subscribe_doors(emulator: Emulator, method: str) -> None:
    guild = _tenant_with_game(GameState.RUNNING)
    member = _token(container().access.member_link(guild, "200000000000000001", int(time.time())).url)
    subscription = {
        "endpoint": "https://push.example.test/send/abc",
        "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
                 "auth": "tBHItJI5svbpez7KI4CCXg"},
    }
    subscribe = [
        {"token": member, "subscription": subscription, "preference": "auto"},
        {"token": member, "subscription": subscription, "preference": "off"},
    ]
    unsubscribe = [{"endpoint": subscription["endpoint"], "auth": "tBHItJI5svbpez7KI4CCXg"}]
    bases = subscribe if method == "POST" else unsubscribe
    door, state = Door(f"{method} /push/subscribe"), _state()

    @fuzz_settings()
    @given(body=bodies(bases), hdrs=body_headers, ip=ip_addresses, site=st.integers(0, 4))
    def run(body: str, hdrs: dict[str, str], ip: str, site: int) -> None:
        hdrs = {**hdrs, "Origin": SITE} if site != 2 else hdrs  # one input in five from anywhere
        before = state.take()
        answer = call_api(method, "/push/subscribe", body=body, headers=hdrs, source_ip=ip)
        _check(door, state, before, (answer.status, answer.json), body[:200])

    run()
    door.write()


# -- the internal game-state API (IAM-authorised in AWS) --------------------------------------------------


def _internal(method: str, tenant: str, name: str, body: str | None) -> tuple[int, Any]:
    import app as app_module
    from devstack.pump import LambdaContext
    from tests.access_helpers import gateway_event

    resource = "/internal/games/{tenant}/{name}" + ("/transition" if method == "POST" else "")
    event = gateway_event(method, resource, body=body)
    event["pathParameters"] = {"tenant": tenant, "name": name}
    event["path"] = f"/internal/games/{tenant}/{name}" + ("/transition" if method == "POST" else "")
    out = app_module.app(event, LambdaContext("api_handler"))
    text = out.get("body") or ""
    try:
        return int(out["statusCode"]), json.loads(text) if text else None
    except ValueError:
        return int(out["statusCode"]), text


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_internal_game_api_doors(emulator: Emulator, method: str) -> None:
    guild = _tenant_with_game()
    tenants = st.one_of(st.just(guild), hostile_text)
    names = st.one_of(st.just("valheim"), hostile_text)
    bases = [{"to": "STOPPED", "expected_version": 10**6}, {"to": "RUNNING", "expected_version": 10**6}]
    path = "/internal/games/{tenant}/{name}" + ("/transition" if method == "POST" else "")
    door, state = Door(f"{method} {path}"), _state()

    @fuzz_settings()
    @given(tenant=tenants, name=names, body=bodies(bases) | hostile_json.map(json.dumps))
    def run(tenant: str, name: str, body: str) -> None:
        before = state.take()
        status, answer = _internal(method, tenant, name, body if method == "POST" else None)
        _check(door, state, before, (status, answer), f"{tenant!r} {name!r} {body[:200]}")

    run()
    door.write()

"""Hostile and malformed input at every entry point: a clear error, never a 500, nothing changed."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.jobs import JobMessage
from chalicelib.tenancy import TenantStore
from chalicelib.wiring import container
from devstack.discord_user import DiscordUser, Who
from tests.conftest import APPLICATION_ID, SIGNING_KEY

FUZZ_GUILD = "123456789012345678"
USER = DiscordUser(SIGNING_KEY, APPLICATION_ID, who=Who(guild_id=FUZZ_GUILD))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)


def _mutations() -> st.SearchStrategy[dict[str, Any]]:
    """Real interactions with one field replaced by an arbitrary JSON value."""
    base = st.sampled_from(
        [
            USER.command("help", {"command": "games"}),
            USER.command("games", {"game": "valheim"}),
            USER.command("setup"),
            USER.command("games", {"game": "v"}, focused="game"),
            USER.component("setup:main", ["400000000000000001"]),
            USER.modal_submit("setup:main", {"name": "x"}),
        ]
    )
    paths = st.sampled_from(
        [
            ("type",),
            ("id",),
            ("token",),
            ("guild_id",),
            ("member",),
            ("member", "roles"),
            ("member", "permissions"),
            ("member", "user"),
            ("data",),
            ("data", "name"),
            ("data", "options"),
            ("data", "custom_id"),
            ("data", "values"),
            ("data", "components"),
            ("application_id",),
        ]
    )

    def mutate(args: tuple[dict[str, Any], tuple[str, ...], Any]) -> dict[str, Any]:
        payload, path, value = args
        payload = dict(json.loads(json.dumps(payload)))
        target = payload
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(target.get(key), dict) else {}
        target[path[-1]] = value
        return payload

    return st.tuples(base, paths, json_values).map(mutate)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=_mutations())
def test_signed_but_mangled_interactions_get_400_or_a_reply_never_500(
    emulator: Any, payload: dict[str, Any]
) -> None:
    store = TenantStore(default_region="us-east-1")
    before = store.read(FUZZ_GUILD)
    body = json.dumps(payload).encode()
    reply = container().endpoint.handle(body, USER.sign(body))
    assert reply.status in (200, 400)
    answer = json.loads(reply.body)
    if reply.status == 200:
        assert answer["type"] in (4, 5, 7, 8, 9)
    else:
        assert store.read(FUZZ_GUILD) == before  # refused input changed nothing


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=2048))
def test_arbitrary_signed_bytes_never_crash_the_endpoint(body: bytes) -> None:
    reply = container().endpoint.handle(body, USER.sign(body))
    assert reply.status in (200, 400)


@settings(max_examples=100, deadline=None)
@given(sig=st.text(max_size=200), ts=st.text(max_size=30), body=st.binary(max_size=512))
def test_arbitrary_headers_are_401(sig: str, ts: str, body: bytes) -> None:
    reply = container().endpoint.handle(body, {"X-Signature-Ed25519": sig, "X-Signature-Timestamp": ts})
    assert reply.status == 401


@settings(max_examples=200, deadline=None)
@given(raw=json_values)
def test_job_messages_that_are_not_jobs_are_refused(raw: Any) -> None:
    try:
        JobMessage.from_json(json.dumps(raw))
    except Exception as exc:
        assert type(exc).__name__ == "ValidationError"

"""The interactions endpoint through Chalice's test client, with really signed (and forged) requests."""

from __future__ import annotations

import json
import time

import pytest
from nacl.signing import SigningKey

from chalicelib.discord import CallbackType, MessageFlag
from devstack.discord_user import Who
from tests.helpers import Harness

EPHEMERAL = int(MessageFlag.EPHEMERAL)


def _ping() -> bytes:
    return json.dumps({"type": 1, "id": "1", "application_id": "1"}).encode()


def test_ping_is_answered_with_pong(harness: Harness) -> None:
    body = _ping()
    assert harness.post_raw(body, harness.user.sign(body)) == (200, {"type": 1})


def _forgeries(harness: Harness) -> dict[str, tuple[bytes, dict[str, str]]]:
    body = _ping()
    good = harness.user.sign(body)
    other = SigningKey.generate()
    ts = good["X-Signature-Timestamp"]
    wrong_key_sig = other.sign(ts.encode() + body).signature.hex()
    stale_ts = str(int(time.time()) - 301)
    stale_sig = harness.user.signing_key.sign(stale_ts.encode() + body).signature.hex()
    future_ts = str(int(time.time()) + 301)
    future_sig = harness.user.signing_key.sign(future_ts.encode() + body).signature.hex()
    ct = {"Content-Type": "application/json"}
    return {
        "no headers": (body, ct),
        "no signature": (body, {**ct, "X-Signature-Timestamp": ts}),
        "no timestamp": (body, {**ct, "X-Signature-Ed25519": good["X-Signature-Ed25519"]}),
        "non-hex signature": (body, {**good, "X-Signature-Ed25519": "zz" * 64}),
        "short signature": (body, {**good, "X-Signature-Ed25519": good["X-Signature-Ed25519"][:-2]}),
        "non-numeric timestamp": (body, {**good, "X-Signature-Timestamp": "yesterday"}),
        "wrong key": (body, {**good, "X-Signature-Ed25519": wrong_key_sig}),
        "tampered body": (body.replace(b'"id": "1"', b'"id": "2"'), good),
        "other timestamp than signed": (body, {**good, "X-Signature-Timestamp": str(int(ts) + 1)}),
        "stale timestamp": (
            body,
            {**ct, "X-Signature-Ed25519": stale_sig, "X-Signature-Timestamp": stale_ts},
        ),
        "future timestamp": (
            body,
            {**ct, "X-Signature-Ed25519": future_sig, "X-Signature-Timestamp": future_ts},
        ),
    }


@pytest.mark.parametrize(
    "variant",
    [
        "no headers",
        "no signature",
        "no timestamp",
        "non-hex signature",
        "short signature",
        "non-numeric timestamp",
        "wrong key",
        "tampered body",
        "other timestamp than signed",
        "stale timestamp",
        "future timestamp",
    ],
)
def test_forged_request_is_refused_with_401(harness: Harness, variant: str) -> None:
    body, headers = _forgeries(harness)[variant]
    status, answer = harness.post_raw(body, headers)
    assert status == 401
    assert "type" not in answer


def test_forged_command_changes_nothing(harness: Harness) -> None:
    payload = harness.user.command("setup")
    body = json.dumps(payload).encode()
    headers = {**harness.user.sign(body), "X-Signature-Ed25519": "00" * 64}
    assert harness.post_raw(body, headers)[0] == 401
    from chalicelib.tenancy import TenantStore

    assert TenantStore(default_region="us-east-1").read(payload["guild_id"]) is None


def test_headers_are_case_insensitive(harness: Harness) -> None:
    body = _ping()
    lower = {k.lower(): v for k, v in harness.user.sign(body).items()}
    assert harness.post_raw(body, lower) == (200, {"type": 1})


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"ping"',
        b"{}",
        b'{"type": 99}',
        b'{"type": 2}',
        b'{"type": 2, "id": "x"}',
    ],
)
def test_signed_non_interaction_is_400(harness: Harness, body: bytes) -> None:
    status, answer = harness.post_raw(body, harness.user.sign(body))
    assert status == 400
    assert "error" in answer


def test_body_over_64_kib_is_413(harness: Harness) -> None:
    payload = harness.user.command("help")
    payload["padding"] = "x" * (64 * 1024)
    body = json.dumps(payload).encode()
    assert harness.post_raw(body, harness.user.sign(body))[0] == 413


def test_help_is_answered_inline_with_type_4(harness: Harness) -> None:
    _, answer = harness.command("help")
    assert answer["type"] == CallbackType.CHANNEL_MESSAGE
    assert answer["data"]["flags"] == EPHEMERAL
    text = json.dumps(answer["data"]["embeds"])
    assert "/help" in text and "/setup" in text
    assert answer["data"]["allowed_mentions"] == {"parse": []}


def test_help_explains_one_command(harness: Harness) -> None:
    _, answer = harness.command("help", command="games")
    embed = answer["data"]["embeds"][0]
    assert embed["title"] == "/games"
    assert "Usage: `/games [game]`" in embed["description"]
    assert embed["fields"][0]["name"] == "game (optional)"


def test_help_for_unknown_command_says_so(harness: Harness) -> None:
    _, answer = harness.command("help", command="fly")
    assert answer["data"]["flags"] == EPHEMERAL
    assert "isn't a gangway command" in answer["data"]["content"]


def test_unknown_command_gets_ephemeral_explanation(harness: Harness) -> None:
    _, answer = harness.command("teleport")
    assert answer["type"] == CallbackType.CHANNEL_MESSAGE
    assert answer["data"]["flags"] == EPHEMERAL
    assert "doesn't know the command `/teleport`" in answer["data"]["content"]


def test_unknown_component_gets_ephemeral_explanation(harness: Harness) -> None:
    answer = harness.component("ghost:click:1")
    assert answer["data"]["flags"] == EPHEMERAL
    assert "no longer knows" in answer["data"]["content"]


def test_unknown_modal_gets_ephemeral_explanation(harness: Harness) -> None:
    status, answer = harness.post(harness.user.modal_submit("ghost:form", {"name": "x"}))
    assert status == 200
    assert answer["data"]["flags"] == EPHEMERAL


def test_guild_without_setup_is_pointed_to_setup(harness: Harness) -> None:
    _, answer = harness.command("games")
    assert answer["data"]["flags"] == EPHEMERAL
    assert "/setup" in answer["data"]["content"]


def test_direct_message_gets_pointer_to_a_server(harness: Harness) -> None:
    _, answer = harness.command("games", who=Who(guild_id=None))
    assert answer["data"]["flags"] == EPHEMERAL
    assert "inside a Discord server" in answer["data"]["content"]


def test_wrong_option_type_is_a_clear_error(harness: Harness) -> None:
    _, answer = harness.command("help", command=12)
    assert answer["data"]["flags"] == EPHEMERAL
    assert "`command` must be a str" in answer["data"]["content"]


def test_autocomplete_answers_with_at_most_25_choices(harness: Harness) -> None:
    payload = harness.user.command("help", {"command": "s"}, focused="command")
    status, answer = harness.post(payload)
    assert status == 200
    assert answer["type"] == CallbackType.AUTOCOMPLETE_RESULT
    names = [c["value"] for c in answer["data"]["choices"]]
    assert "setup" in names and "status" in names and len(names) <= 25
    assert all(n.startswith("s") for n in names)

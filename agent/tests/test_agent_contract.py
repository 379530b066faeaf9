"""The example messages in contract/ are the contract: each one parses with the agent's own parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gangway_agent.errors import ErrorCode, ProtocolError
from gangway_agent.protocol import (
    ERROR_TYPE,
    MAX_MESSAGE_BYTES,
    OUTGOING_FIELDS,
    EventType,
    FirewallMode,
    FirewallSync,
    RequestType,
    parse_envelope,
    parse_outgoing,
    parse_request,
)

CONTRACT = Path(__file__).resolve().parents[1] / "contract"
EXAMPLES = sorted(CONTRACT.rglob("*.json"))


def test_there_is_an_example_for_every_message() -> None:
    requests = {parse_envelope(p.read_bytes()).type for p in (CONTRACT / "requests").glob("*.json")}
    replies = {parse_envelope(p.read_bytes()).type for p in (CONTRACT / "replies").glob("*.json")}
    events = {parse_envelope(p.read_bytes()).type for p in (CONTRACT / "events").glob("*.json")}
    assert requests == {t.value for t in RequestType}
    assert replies == {t.reply_type for t in RequestType} | {ERROR_TYPE}
    assert events == {t.value for t in EventType}
    assert set(OUTGOING_FIELDS) == replies | events


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_parses(path: Path) -> None:
    raw = path.read_bytes()
    assert set(json.loads(raw)) == {"id", "type", "body"}
    if path.parent.name == "requests":
        req = parse_request(raw)
        assert req.type.value == json.loads(raw)["type"]
    else:
        parse_outgoing(raw)


def test_readme_documents_every_type() -> None:
    text = (CONTRACT / "README.md").read_text()
    for name in [*(t.value for t in RequestType), *(t.value for t in EventType)]:
        assert f"`{name}`" in text, name


def test_firewall_examples_decode() -> None:
    full = parse_request((CONTRACT / "requests" / "firewall.sync.json").read_bytes()).body
    delta = parse_request((CONTRACT / "requests" / "firewall.sync.delta.json").read_bytes()).body
    assert isinstance(full, FirewallSync) and full.mode is FirewallMode.FULL
    assert {g.address.version for g in full.grants} == {4, 6}
    assert isinstance(delta, FirewallSync) and delta.mode is FirewallMode.DELTA and len(delta.revoke) == 1


@pytest.mark.parametrize(("raw", "code"), [
    (b"{not json", ErrorCode.BAD_JSON),
    (b"\xff\xfe", ErrorCode.BAD_JSON),
    (b"[1, 2]", ErrorCode.BAD_ENVELOPE),
    (b'{"id": "1", "type": 5, "body": {}}', ErrorCode.BAD_ENVELOPE),
    (b'{"id": 7, "type": "status", "body": {}}', ErrorCode.BAD_ENVELOPE),
    (b'{"type": "status", "body": {}}', ErrorCode.BAD_ENVELOPE),
    (b'{"id": "1", "type": "status", "body": []}', ErrorCode.BAD_ENVELOPE),
    (b'{"id": "1", "type": "status", "body": {}, "extra": 1}', ErrorCode.BAD_ENVELOPE),
    (b'{"id": "1", "type": "game.explode", "body": {}}', ErrorCode.UNKNOWN_TYPE),
    (b'{"id": "1", "type": "status", "body": {"x": 1}}', ErrorCode.BAD_BODY),
    (b'{"id": "1", "type": "game.stop", "body": {"grace_s": "soon"}}', ErrorCode.BAD_BODY),
    (b'{"id": "1", "type": "game.stop", "body": {"grace_s": true}}', ErrorCode.BAD_BODY),
    (b'{"id": "1", "type": "firewall.sync", "body": {"mode": "all"}}', ErrorCode.BAD_BODY),
    (b'{"id": "1", "type": "firewall.sync", "body": {"mode": "full", "grants": [{"address": "1.2.3.4/24",'
     b' "expires_at": 1}]}}', ErrorCode.BAD_BODY),
    (b'{"id": "1", "type": "firewall.sync", "body": {"mode": "full", "revoke": ["1.2.3.4"]}}',
     ErrorCode.BAD_BODY),
    (b'{"id": "1", "type": "sftp.open", "body": {"ttl_s": 5}}', ErrorCode.BAD_BODY),
    (b'{"id": "1", "type": "shutdown", "body": {"poweroff": "yes"}}', ErrorCode.BAD_BODY),
    (b'{"id": "1", "type": "status", "body": {}, "pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}',
     ErrorCode.TOO_LARGE),
])
def test_bad_requests_are_refused_with_a_code(raw: bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(raw)
    assert info.value.code is code


def test_request_id_is_kept_for_the_error_reply_when_readable() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(b'{"id": "abc", "type": "nope", "body": {}}')
    assert info.value.request_id == "abc"

"""X-Ray: real segments, sent over UDP to a capture socket on loopback, as the daemon would get them."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.config import settings
from chalicelib.wiring import Container
from tests.helpers import Harness


@pytest.fixture
def daemon() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(3)
    yield sock
    sock.close()


def _segments(sock: socket.socket, count: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(count):
        data, _ = sock.recvfrom(65536)
        header, _, body = data.partition(b"\n")
        assert json.loads(header) == {"format": "json", "version": 1}
        out.append(json.loads(body))
    return out


def _walk(entity: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield entity
    for sub in entity.get("subsegments", []):
        yield from _walk(sub)


def test_command_subsegment_carries_annotations_and_jobs_continue_the_trace(
    harness: Harness, daemon: socket.socket
) -> None:
    harness.command("setup")
    address = f"127.0.0.1:{daemon.getsockname()[1]}"
    traced = Container(dataclasses.replace(settings(), tracing=True, xray_daemon_address=address))

    body = json.dumps(harness.user.command("help")).encode()
    assert traced.endpoint.handle(body, harness.user.sign(body)).status == 200
    (segment,) = _segments(daemon, 1)
    assert segment["name"] == "gangway-test"
    by_name = {e["name"]: e for e in _walk(segment)}
    sub = by_name["application_command:help"]
    assert sub["annotations"] == {
        "tenant": harness.user.who.guild_id,
        "command": "help",
        "deferred": False,
        "outcome": "ok",
    }
    assert "interaction" in by_name

    payload = harness.user.command("status")
    body = json.dumps(payload).encode()
    assert json.loads(traced.endpoint.handle(body, harness.user.sign(body)).body)["type"] == 5
    (enqueue_segment,) = _segments(daemon, 1)
    status_sub = {e["name"]: e for e in _walk(enqueue_segment)}["application_command:status"]
    assert status_sub["annotations"]["deferred"] is True
    # boto3 is patched: the SQS calls that queue the job are traced under the command.
    assert [e["name"] for e in status_sub["subsegments"] if e.get("namespace") == "aws"] == ["sqs", "sqs"]

    message = next(m for m in harness.receive_jobs() if payload["token"] in m["Body"])
    outcome = traced.job_runner.run(message["Body"])
    assert outcome == "edited"
    (job_segment,) = _segments(daemon, 1)
    assert job_segment["trace_id"] == enqueue_segment["trace_id"]
    assert job_segment["parent_id"] == status_sub["id"]
    job = {e["name"]: e for e in _walk(job_segment)}["job"]
    assert job["annotations"]["job"] == "status" and job["annotations"]["outcome"] == "edited"


def test_ping_path_loads_neither_the_xray_sdk_nor_boto3_even_with_tracing_on() -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import SIGNING_KEY

    code = (
        "import json, os, sys, time\n"
        "from nacl.signing import SigningKey\n"
        "from chalicelib.wiring import container\n"
        "key = SigningKey(bytes.fromhex(os.environ['SEED']))\n"
        "body, ts = b'{\"type\": 1}', str(int(time.time()))\n"
        "sig = key.sign(ts.encode() + body).signature.hex()\n"
        "reply = container().endpoint.handle(body, {'X-Signature-Ed25519': sig, 'X-Signature-Timestamp': ts})\n"
        "heavy = sorted(m for m in ('aws_xray_sdk', 'boto3', 'botocore', 'pynamodb') if m in sys.modules)\n"
        "print(json.dumps([reply.status, heavy]))\n"
    )
    env = {
        **os.environ,
        "SEED": SIGNING_KEY.encode().hex(),
        "GANGWAY_TRACING": "1",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60, env=env
    ).stdout
    assert json.loads(out) == [200, []]

"""X-Ray: real segments, sent over UDP to a capture socket on loopback, as the daemon would get them."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.config import settings
from chalicelib.wiring import Container, container
from tests.helpers import Harness
from tests.lifecycle_helpers import create_game, start_until_running


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
        # As in AWS: no CREDENTIALS_SOURCE (the enforced emulator's per-function keys sign every table
        # when the container is built, which a Lambda never does).
        **{k: v for k, v in os.environ.items() if k != "CREDENTIALS_SOURCE"},
        "SEED": SIGNING_KEY.encode().hex(),
        "GANGWAY_TRACING": "1",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60, env=env
    ).stdout
    assert json.loads(out) == [200, []]


# Objects that hold the tracer they were built with; rebuilt around a traced test (wiring.py builds
# them lazily, so popping the cached value is enough).
_HOLD_THE_TRACER = ("tracer", "endpoint", "dispatcher", "job_runner", "step_runner", "agent_events")


@contextlib.contextmanager
def _tracing_on(daemon: socket.socket) -> Iterator[Container]:
    """The process-wide container (the one app.py's handlers use) with tracing on, sending to `daemon`."""
    c = container()
    saved = c.settings
    address = f"127.0.0.1:{daemon.getsockname()[1]}"
    c.settings = dataclasses.replace(saved, tracing=True, xray_daemon_address=address)
    for name in _HOLD_THE_TRACER:
        c.__dict__.pop(name, None)
    try:
        yield c
    finally:
        c.settings = saved
        for name in _HOLD_THE_TRACER:
            c.__dict__.pop(name, None)


def _all_segments(sock: socket.socket, quiet: float = 1.0) -> list[dict[str, Any]]:
    """Every document the daemon got until it has been quiet for `quiet` seconds."""
    sock.settimeout(quiet)
    out: list[dict[str, Any]] = []
    while True:
        try:
            data, _ = sock.recvfrom(65536)
        except TimeoutError:
            return out
        out.append(json.loads(data.partition(b"\n")[2]))


def test_a_start_is_one_trace_from_the_click_to_running(
    harness: Harness, tenant: str, daemon: socket.socket
) -> None:
    """Interaction → StartExecution → every StartGame step → the agent's `ready` → start.running's
    edit: one trace id. The emulator drops StartExecution's traceHeader and sets no AWSTraceHeader, so
    the steps here continue the trace the execution's input carries (engine.py's TRACE_FIELD)."""
    create_game(harness)  # untraced: the trace under test begins at the click on /start
    with _tracing_on(daemon):
        start_until_running(harness, tenant)
        documents = _all_segments(daemon)

    assert documents, "no segments reached the daemon"
    assert {d["trace_id"] for d in documents} == {documents[0]["trace_id"]}
    entities = [e for d in documents for e in _walk(d)]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for e in entities:
        by_name.setdefault(e["name"], []).append(e)
    (command,) = by_name["application_command:start"]
    calls = [e["aws"].get("operation") for e in command.get("subsegments", []) if e.get("namespace") == "aws"]
    assert "StartExecution" in calls  # under the click
    steps = [e["annotations"]["step"] for e in by_name["step"]]
    for step in ("start.launch", "start.volume", "start.volume_ready", "start.attach", "start.wait_agent"):
        assert step in steps
    assert steps[-1] == "start.running"
    (ready,) = [e for e in by_name["agent_event"] if e["annotations"]["event"] == "ready"]
    (wait_agent,) = [e for e in by_name["step"] if e["annotations"]["step"] == "start.wait_agent"]
    ready_segment = next(d for d in documents if ready in _walk(d))
    assert ready_segment["parent_id"] == wait_agent["id"]  # the wait's stored trace, continued
    # start.running's edit of the /start reply (the Discord webhook PATCH) is in the same trace.
    (running,) = [e for e in by_name["step"] if e["annotations"]["step"] == "start.running"]
    assert running["annotations"]["outcome"] == "ok"

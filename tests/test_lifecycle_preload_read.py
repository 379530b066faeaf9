"""Preload mode `read`: the agent starts without the game, reads every block of its disk (progress in
the reply, throttled), and only then is asked to start the game; then the game is RUNNING.

The workflow is the real ASL on moto; the backend's requests go out over a real Mosquitto (the
`agent_link` subscriber sees them), and the agent's part is played by its events and replies, as the
contract in agent/contract/ shapes them.
"""

from __future__ import annotations

import base64
import json
import queue
import time
from typing import Any

import pytest

from chalicelib.games import GameRecord, GameState
from chalicelib.lifecycle.start_game import game_start_request_id, preload_request_id
from chalicelib.wiring import container
from tests.access_helpers import Subscriber
from tests.helpers import Harness
from tests.lifecycle_helpers import agent_event, create_game, ec2_of, game_row, pump_steps
from tests.test_lifecycle_faults import _with_snapshot

GIB = 2**30


def _wait_for(sub: Subscriber, kind: str, timeout: float = 10) -> dict[str, Any]:
    """The next request of `kind` the backend sent to the agent (others, like `status`, are skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, message = sub.next(timeout=max(deadline - time.monotonic(), 0.1))
        except queue.Empty:
            break
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} request reached the agent")


def _execution(tenant: str, name: str) -> str:
    return (game_row(tenant, name).wait.execution or "").rsplit(":", 1)[-1]


def _wait(tenant: str, name: str) -> str | None:
    raw = game_row(tenant, name).wait.task_wait
    return str(json.loads(raw)["for"]) if raw else None


def _reading_game(harness: Harness, tenant: str, name: str, sub: Subscriber) -> dict[str, Any]:
    """A game with a snapshot and preload `read`, started until its agent is reading the disk."""
    create_game(harness, name)
    _with_snapshot(tenant, name)
    GameRecord.get(tenant, name).update(actions=[GameRecord.preload.set("read")])
    payload, _ = harness.command("start", game=name)
    pump_steps(lambda: bool(game_row(tenant, name).wait.task_token))  # waiting for the agent's `ready`
    agent_event(tenant, name, "ready", {"version": "test", "game_running": False})
    pump_steps(lambda: _wait(tenant, name) == "preload")
    request = _wait_for(sub, "disk.preload")
    assert request["id"] == preload_request_id(_execution(tenant, name)) and request["body"] == {}
    agent_event(
        tenant,
        name,
        "disk.preload.reply",
        {"started": True, "device": "/dev/nvme1n1"},
        reply_to=request["id"],
    )
    return payload


def _progress(tenant: str, name: str, percent: float, total: int = 20 * GIB) -> None:
    agent_event(
        tenant,
        name,
        "preload.progress",
        {"bytes_read": int(total * percent / 100), "bytes_total": total, "percent": percent},
    )


def _told(harness: Harness, payload: dict[str, Any]) -> list[str]:
    return [c["json"]["content"] for c in harness.calls_for(payload["token"])]


def test_the_disk_is_read_before_the_game_starts_with_throttled_progress(
    harness: Harness, tenant: str, agent_link: Subscriber
) -> None:
    payload = _reading_game(harness, tenant, "valheim", agent_link)
    game = game_row(tenant, "valheim")
    user_data = (
        container()
        .client("ec2")
        .describe_instance_attribute(InstanceId=game.resources.instance_id, Attribute="userData")
    )
    assert "autostart = false" in base64.b64decode(user_data["UserData"]["Value"]).decode()
    for percent in (0.0, 5.0, 12.5, 40.0, 41.0, 100.0):
        _progress(tenant, "valheim", percent)
    edits = _told(harness, payload)
    reading = [e for e in edits if "reading the disk" in e]
    assert reading[-4:] == [
        f"⏳ Starting **valheim**: reading the disk of 20.0 GiB… {p} %" for p in (0, 12, 40, 100)
    ]  # 5 % and 41 % came too soon after the one before
    # A late `ready` (the agent reconnecting) is not the end of the preload.
    agent_event(tenant, "valheim", "ready", {"version": "test", "game_running": False})
    assert game_row(tenant, "valheim").wait.task_token and _wait(tenant, "valheim") == "preload"

    agent_event(
        tenant,
        "valheim",
        "preload.done",
        {"device": "/dev/nvme1n1", "bytes_read": 20 * GIB, "seconds": 412.5},
    )
    pump_steps(lambda: _wait(tenant, "valheim") == "game.start")
    start = _wait_for(agent_link, "game.start")
    assert start["id"] == game_start_request_id(_execution(tenant, "valheim"))
    assert game_row(tenant, "valheim").state is GameState.STARTING  # not before the agent says it started
    agent_event(tenant, "valheim", "game.start.reply", {"pid": 4242, "started": True}, reply_to=start["id"])
    pump_steps(lambda: game_row(tenant, "valheim").state is GameState.RUNNING)
    game = game_row(tenant, "valheim")
    assert (game.wait.task_token, game.wait.task_wait) == (None, None)
    edits = _told(harness, payload)
    assert any("the disk is read (read in 412 s); starting the game" in e for e in edits)
    assert edits[-1].startswith("🟢 **valheim** is up at")


@pytest.mark.parametrize(
    ("kind", "body", "to_request"),
    [
        (
            "agent.error",
            {"code": "failed", "message": "preload: reading /dev/nvme1n1 failed at byte 4096: EIO"},
            False,
        ),
        ("error", {"code": "conflict", "message": "a preload is already running"}, True),
    ],
)
def test_a_preload_that_fails_undoes_the_start(  # noqa: PLR0917 - fixtures and parameters
    harness: Harness, tenant: str, agent_link: Subscriber, kind: str, body: dict[str, Any], to_request: bool
) -> None:
    payload = _reading_game(harness, tenant, "ark", agent_link)
    snapshot = game_row(tenant, "ark").resources.snapshot_id
    reply_to = preload_request_id(_execution(tenant, "ark")) if to_request else None
    agent_event(tenant, "ark", kind, body, reply_to=reply_to)
    pump_steps(lambda: game_row(tenant, "ark").state is GameState.STOPPED)
    game = game_row(tenant, "ark")
    assert (game.resources.instance_id, game.resources.volume_id, game.wait.task_token, game.wait.task_wait) == (None, None, None, None)
    assert game.resources.snapshot_id == snapshot
    assert ec2_of(tenant, "ark").leftovers() == {"instances": [], "volumes": []}
    told = _told(harness, payload)[-1]
    assert "could not start" in told and "could not read its disk" in told


def test_a_game_that_will_not_start_after_the_preload_undoes_the_start(
    harness: Harness, tenant: str, agent_link: Subscriber
) -> None:
    payload = _reading_game(harness, tenant, "rust", agent_link)
    agent_event(tenant, "rust", "preload.done", {"device": "/dev/nvme1n1", "bytes_read": 1, "seconds": 1.0})
    pump_steps(lambda: _wait(tenant, "rust") == "game.start")
    start = _wait_for(agent_link, "game.start")
    agent_event(
        tenant, "rust", "error", {"code": "failed", "message": "start.sh: not found"}, reply_to=start["id"]
    )
    pump_steps(lambda: game_row(tenant, "rust").state is GameState.STOPPED)
    assert ec2_of(tenant, "rust").leftovers() == {"instances": [], "volumes": []}
    assert "could not start" in _told(harness, payload)[-1]


def test_events_that_are_not_this_preloads_change_nothing(
    harness: Harness, tenant: str, agent_link: Subscriber
) -> None:
    _reading_game(harness, tenant, "mc", agent_link)
    before = game_row(tenant, "mc")
    agent_event(tenant, "mc", "error", {"code": "failed", "message": "nft failed"}, reply_to="someone-else")
    agent_event(tenant, "mc", "agent.error", {"code": "failed", "message": "firewall: nft failed"})
    agent_event(tenant, "mc", "game.start.reply", {"pid": 1, "started": True}, reply_to="not-the-start")
    for body in ({"percent": "lots"}, {"percent": True}, {}, {"percent": None}):
        agent_event(tenant, "mc", "preload.progress", body)
    agent_event(tenant, "other-game", "preload.done", {"device": "/dev/x", "bytes_read": 1, "seconds": 1.0})
    after = game_row(tenant, "mc")
    assert (after.state, after.wait.task_token, after.wait.task_wait) == (
        GameState.STARTING,
        before.wait.task_token,
        before.wait.task_wait,
    )


def test_a_first_start_has_nothing_to_read_and_starts_the_game_at_once(
    harness: Harness, tenant: str, agent_link: Subscriber
) -> None:
    create_game(harness, "fresh")
    GameRecord.get(tenant, "fresh").update(actions=[GameRecord.preload.set("read")])
    harness.command("start", game="fresh")
    pump_steps(lambda: bool(game_row(tenant, "fresh").wait.task_token))
    game = game_row(tenant, "fresh")
    user_data = (
        container()
        .client("ec2")
        .describe_instance_attribute(InstanceId=game.resources.instance_id, Attribute="userData")
    )
    assert "autostart = true" in base64.b64decode(user_data["UserData"]["Value"]).decode()
    agent_event(tenant, "fresh", "ready", {"version": "test", "game_running": True})
    pump_steps(lambda: game_row(tenant, "fresh").state is GameState.RUNNING)
    sent = [m["type"] for _, m in agent_link.drain()]
    assert "disk.preload" not in sent and "game.start" not in sent

"""Game states: the transition table, versioned conditional writes, and the internal state API."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from chalice.test import Client

import app as app_module
from chalicelib.errors import Conflict, NotFound
from chalicelib.games import TRANSITIONS, GameRecord, GameState, GameStore, can_move
from devstack.discord_user import snowflake

STORE = GameStore()


@pytest.fixture
def game(emulator: Any) -> tuple[str, str]:
    tenant = snowflake()
    STORE.create(tenant, "valheim", description="", created_by="1")
    return tenant, "valheim"


def test_every_state_can_get_back_to_stopped() -> None:
    for start in GameState:
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert GameState.STOPPED in seen or start is GameState.STOPPED
    assert not can_move(GameState.STOPPED, GameState.RUNNING)
    assert not can_move(GameState.RUNNING, GameState.STARTING)


def test_a_transition_bumps_the_version_and_a_stale_one_conflicts(game: tuple[str, str]) -> None:
    tenant, name = game
    before = STORE.get(tenant, name)
    assert before is not None and before.state is GameState.STOPPED
    after = STORE.transition(tenant, name, to=GameState.STARTING, expected_version=before.version)
    assert (after.state, after.version) == (GameState.STARTING, before.version + 1)
    with pytest.raises(Conflict, match="is starting"):
        STORE.transition(tenant, name, to=GameState.RUNNING, expected_version=before.version)


def test_a_move_outside_the_table_conflicts_and_changes_nothing(game: tuple[str, str]) -> None:
    tenant, name = game
    current = STORE.get(tenant, name)
    assert current is not None
    with pytest.raises(Conflict, match="can't become running"):
        STORE.transition(tenant, name, to=GameState.RUNNING, expected_version=current.version)
    assert STORE.get(tenant, name) == current


def test_of_two_concurrent_starts_exactly_one_wins(game: tuple[str, str]) -> None:
    tenant, name = game
    version = STORE.get(tenant, name).version  # type: ignore[union-attr]
    results: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        try:
            STORE.transition(tenant, name, to=GameState.STARTING, expected_version=version)
            results.append("won")
        except Conflict:
            results.append("lost")

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["lost"] * 7 + ["won"]


def _api(method: str, path: str, body: Any = None) -> tuple[int, Any]:
    with Client(app_module.app) as client:
        if method == "GET":
            resp = client.http.get(path)
        else:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            resp = client.http.post(path, headers={"Content-Type": "application/json"}, body=raw)
    return resp.status_code, json.loads(resp.body)


def test_state_api_reads_and_transitions_with_409_on_a_lost_race(game: tuple[str, str]) -> None:
    tenant, name = game
    status, body = _api("GET", f"/internal/games/{tenant}/{name}")
    assert status == 200 and body["state"] == "STOPPED"
    version = body["version"]
    ok = _api(
        "POST", f"/internal/games/{tenant}/{name}/transition", {"to": "STARTING", "expected_version": version}
    )
    assert ok[0] == 200 and ok[1]["version"] == version + 1
    lost = _api(
        "POST", f"/internal/games/{tenant}/{name}/transition", {"to": "STARTING", "expected_version": version}
    )
    assert lost[0] == 409 and lost[1]["state"] == "STARTING" and lost[1]["version"] == version + 1


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/internal/games/not-a-guild/valheim", 400),
        ("/internal/games/123/Bad%20Name", 400),
        ("/internal/games/123/nosuchgame", 404),
    ],
)
def test_state_api_refuses_bad_paths(emulator: Any, path: str, status: int) -> None:
    assert _api("GET", path)[0] == status


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        {"to": "FLYING", "expected_version": 1},
        {"to": "STARTING"},
        {"to": "STARTING", "expected_version": "1"},
        {"to": "STARTING", "expected_version": True},
        {"to": "STARTING", "expected_version": 1, "extra": 1},
        b"{" + b" " * 2000 + b"}",
    ],
)
def test_state_api_refuses_malformed_transitions_and_changes_nothing(
    game: tuple[str, str], body: Any
) -> None:
    tenant, name = game
    before = STORE.get(tenant, name)
    status, _ = _api("POST", f"/internal/games/{tenant}/{name}/transition", body)
    assert status in (400, 413)
    assert STORE.get(tenant, name) == before


def test_a_start_whose_workflow_cannot_start_puts_the_game_back(game: tuple[str, str]) -> None:
    """If Step Functions refuses, no workflow owns STARTING: the game must not stay there."""
    from botocore.stub import Stubber

    from chalicelib.lifecycle import begin_start
    from chalicelib.wiring import container
    from chalicelib.workflows import Workflows

    tenant, name = game
    container().services.tenants.ensure(tenant, created_by="1")
    sfn = container().client("stepfunctions")
    lc = container().lifecycle
    broken = replace(lc, workflows=Workflows(lambda: sfn, "gangway-test"))
    with Stubber(sfn) as stub:
        stub.add_client_error(
            "list_state_machines", service_error_code="ServiceUnavailable", http_status_code=503
        )
        with pytest.raises(Exception, match="ServiceUnavailable"):
            begin_start(broken, STORE.get(tenant, name), reply=None)  # type: ignore[arg-type]
    assert STORE.get(tenant, name).state is GameState.STOPPED  # type: ignore[union-attr]


def test_a_move_survives_a_change_of_other_fields_and_fails_only_on_a_real_conflict(
    game: tuple[str, str],
) -> None:
    """A settings edit between a step's read and its write is not a conflict (issue 15, item 9)."""
    tenant, name = game
    seen = STORE.get(tenant, name)
    assert seen is not None
    STORE.change(tenant, name, disk_gb=24)  # someone edits a setting meanwhile: the version moves on
    with pytest.raises(Conflict):  # the strict write (the REST route) still refuses
        STORE.transition(tenant, name, to=GameState.STARTING, expected_version=seen.version)
    moved = STORE.move(seen, to=GameState.STARTING)
    assert moved.state is GameState.STARTING and moved.settings.disk_gb == 24
    # A second press that read the game stopped finds it starting: a real conflict, said in words.
    with pytest.raises(Conflict) as refused:
        STORE.move(seen, to=GameState.STARTING)
    assert "is starting" in refused.value.message and "version" not in refused.value.message
    # Another execution owning the same state is a real conflict too.
    STORE.owned_by(tenant, name, "arn:other")
    with pytest.raises(Conflict):
        STORE.move(moved, to=GameState.RUNNING)


def test_no_write_recreates_a_deleted_game_as_a_half_row(game: tuple[str, str]) -> None:
    """A workflow step recording a resource just as the row is deleted must not bring it back: the
    row goes between the write's read and its UpdateItem (DynamoDB's UpdateItem creates missing items)."""
    tenant, name = game
    client: Any = GameRecord._get_connection().connection.client

    def delete_first(**_: Any) -> None:
        GameRecord(tenant, name).delete(add_version_condition=False)

    writes: list[Callable[[], object]] = [
        lambda: STORE.volume_made(tenant, name, "vol-1"),
        lambda: STORE.end_wait(tenant, name),
        lambda: STORE.keep_agent_reply(tenant, name, "{}"),
    ]
    for write in writes:
        if STORE.get(tenant, name) is None:
            STORE.create(tenant, name, description="", created_by="1")
        client.meta.events.register("before-call.dynamodb.UpdateItem", delete_first)
        try:
            with pytest.raises(NotFound):
                write()
        finally:
            client.meta.events.unregister("before-call.dynamodb.UpdateItem", delete_first)
        assert STORE.get(tenant, name) is None and STORE.all(tenant) == []

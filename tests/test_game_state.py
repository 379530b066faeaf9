"""Game states: the transition table, versioned conditional writes, and the internal state API."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from typing import Any

import pytest
from chalice.test import Client

import app as app_module
from chalicelib.errors import Conflict
from chalicelib.games import TRANSITIONS, GameState, GameStore, can_move
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

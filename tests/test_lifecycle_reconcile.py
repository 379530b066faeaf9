"""Reconciliation (issue 15, item 7): a workflow aborted at any step, or one Step Functions no longer
knows, leaves its game in a transitional state; the reaper's pass brings it back through the rescue
path (nothing left running, data kept) and tells the user in the command's reply."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest

import app as app_module
from chalicelib.games import GameRecord, GameState
from chalicelib.lifecycle.reconcile import GRACE_SECONDS, reconcile
from chalicelib.wiring import container
from devstack.pump import LambdaContext, scheduled_event
from tests.helpers import Harness
from tests.lifecycle_helpers import (
    STORE,
    create_game,
    ec2_of,
    game_row,
    pump_steps,
    start_until_running,
    stop_reply,
)


def _abort(tenant: str, name: str) -> None:
    """Stop the game's execution by hand, as an operator in the console would."""
    arn = game_row(tenant, name).wait.execution
    assert arn
    sfn = container().client("stepfunctions")
    sfn.stop_execution(executionArn=arn, cause="aborted by the test")
    deadline = time.monotonic() + 20  # the emulator's interpreter notices the stop between states
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)


def _drain_steps() -> None:
    """Steps already queued still run (in AWS too); their answers to the aborted execution are stale."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError):  # nothing made it true: it ran what was queued
            pump_steps(lambda: False, timeout=1)


def _later() -> float:
    return time.time() + GRACE_SECONDS + 1


def _start_before_any_step(harness: Harness, tenant: str) -> dict[str, Any]:
    payload, _ = harness.command("start", game="valheim")
    return payload


def _start_after_launch(harness: Harness, tenant: str) -> dict[str, Any]:
    payload, _ = harness.command("start", game="valheim")
    pump_steps(lambda: bool(game_row(tenant, "valheim").resources.instance_id))
    return payload


def _stop_after_the_agent_stopped_the_game(harness: Harness, tenant: str) -> dict[str, Any]:
    start_until_running(harness, tenant)
    payload, _ = harness.command("stop", game="valheim")
    pump_steps(lambda: bool(game_row(tenant, "valheim").wait.task_token))
    stop_reply(tenant, "valheim")
    return payload


# The emulator's interpreter does not stop an execution while it waits for a task token (AWS does), so
# the aborts land between states: before the first step, after the launch, after the agent's reply.
@pytest.mark.parametrize(
    "begin",
    [_start_before_any_step, _start_after_launch, _stop_after_the_agent_stopped_the_game],
    ids=["start:first-step", "start:after-launch", "stop:after-agent-reply"],
)
def test_an_aborted_workflow_is_rescued_by_the_reconciliation_pass(
    harness: Harness, tenant: str, begin: Callable[[Harness, str], dict[str, Any]]
) -> None:
    create_game(harness, "valheim")
    payload = begin(harness, tenant)
    assert game_row(tenant, "valheim").state in (GameState.STARTING, GameState.STOPPING)
    _abort(tenant, "valheim")
    _drain_steps()
    assert game_row(tenant, "valheim").state in (GameState.STARTING, GameState.STOPPING)  # stuck

    assert f"{tenant}/valheim" not in reconcile(container().lifecycle)  # within the grace period
    outcome = reconcile(container().lifecycle, now=_later())
    # Aborted; moto's interpreter may record the stopped execution as failed once its queued step answers.
    assert outcome[f"{tenant}/valheim"] in ("rescued:ABORTED", "rescued:FAILED")
    game = game_row(tenant, "valheim")
    assert game.state is GameState.STOPPED and game.resources.instance_id is None and not game.wait.task_token
    assert ec2_of(tenant, "valheim").leftovers()["instances"] == []
    told = harness.calls_for(payload["token"])[-1]["json"]["content"]
    assert "its workflow" in told and ("could not start" in told or "stopped" in told), told
    # A second pass finds nothing to do.
    assert f"{tenant}/valheim" not in reconcile(container().lifecycle, now=_later())


def test_a_game_whose_execution_vanished_is_rescued_and_a_young_transition_is_left_alone(
    harness: Harness, tenant: str
) -> None:
    create_game(harness, "valheim")
    harness.command("start", game="valheim")
    _abort(tenant, "valheim")
    _drain_steps()
    gone = "arn:aws:states:us-east-1:123456789012:execution:gangway-test-start-game:never-was"
    GameRecord.get(tenant, "valheim").update(actions=[GameRecord.execution.set(gone)])
    assert f"{tenant}/valheim" not in reconcile(container().lifecycle)  # within the grace period
    assert reconcile(container().lifecycle, now=_later())[f"{tenant}/valheim"] == "rescued:vanished"
    assert game_row(tenant, "valheim").state is GameState.STOPPED


def test_an_aborted_create_gives_the_name_back(harness: Harness, tenant: str) -> None:
    payload = harness.user.modal_submit("games:create", {"name": "rust", "description": ""})
    harness.post(payload)
    assert game_row(tenant, "rust").state is GameState.CREATING
    _abort(tenant, "rust")
    _drain_steps()
    assert reconcile(container().lifecycle, now=_later())[f"{tenant}/rust"] in (
        "rescued:ABORTED",
        "rescued:FAILED",
    )
    assert STORE.get(tenant, "rust") is None
    told = harness.calls_for(payload["token"])[-1]["json"]["content"]
    assert "could not be created" in told and "/newgame" in told


def test_the_reaper_schedule_runs_the_pass(harness: Harness, tenant: str) -> None:
    create_game(harness, "valheim")
    app_module.reaper(scheduled_event("reaper", "us-east-1"), LambdaContext("reaper"))  # nothing stuck
    assert game_row(tenant, "valheim").state is GameState.STOPPED

"""The workflow engine on the embedded emulator: real ASL executed by moto, every Task a message on the
steps queue (`sqs:sendMessage.waitForTaskToken`), answered by the steps runner; Retry and Catch work."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from chalicelib.tracing import NullTracer, Span
from chalicelib.wiring import container
from chalicelib.workflows import (
    DEFINITIONS,
    ERROR_TRANSIENT,
    STEPS,
    StepContext,
    StepFailed,
    StepRegistry,
    StepRunner,
    placeholders,
)
from devstack.discord_user import snowflake

TASK = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"


def _task(step: str, nxt: str | None, *, catch_to: str | None = "Compensate") -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": TASK,
        "Parameters": {
            "QueueUrl": "${StepsQueueUrl}",
            "MessageBody": {"step": step, "input.$": "$", "token.$": "$$.Task.Token"},
        },
        "ResultPath": f"$.results.{step.replace('.', '_')}",
        "TimeoutSeconds": 60,
        "Retry": [
            {"ErrorEquals": [ERROR_TRANSIENT], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 1}
        ],
    }
    if catch_to:
        state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": catch_to}]
    if nxt:
        state["Next"] = nxt
    else:
        state["End"] = True
    return state


DEMO: dict[str, Any] = {
    "Comment": "engine test: one, flaky, maybe boom; compensation on failure",
    "StartAt": "One",
    "States": {
        "One": _task("t.one", "Flaky"),
        "Flaky": _task("t.flaky", "Boom"),
        "Boom": _task("t.boom", None),
        "Compensate": {**_task("t.compensate", "Failed", catch_to=None)},
        "Failed": {"Type": "Fail", "Error": "gangway.Compensated", "Cause": "the workflow was undone"},
    },
}


def _registry(calls: list[str]) -> StepRegistry:
    reg = StepRegistry()
    flaky = {"left": 1}

    @reg.step("t.one")
    def one(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
        calls.append(f"one:{ctx.game}")
        return {"volume": "vol-1"}

    @reg.step("t.flaky")
    def flaky_step(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
        calls.append("flaky")
        if flaky["left"]:
            flaky["left"] -= 1
            raise TimeoutError("EC2 did not answer")
        return {"ok": True}

    @reg.step("t.boom")
    def boom(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
        calls.append("boom")
        if data.get("explode"):
            raise StepFailed("gangway.Capacity", "no capacity in any allowed zone")
        return {"fine": True}

    @reg.step("t.compensate")
    def compensate(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
        calls.append(f"compensate:{data['error']['Error']}:{data['results']['t_one']['volume']}")
        return {}

    return reg


def _drive(runner: StepRunner, execution: str, timeout: float = 20) -> dict[str, Any]:
    c = container()
    sfn, sqs = c.client("stepfunctions"), c.sqs()
    url = sqs.get_queue_url(QueueName=c.settings.steps_queue)["QueueUrl"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=5, WaitTimeSeconds=1, VisibilityTimeout=60
        )
        for message in got.get("Messages", []):
            runner.run(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    raise AssertionError("the execution did not finish")


@pytest.fixture
def demo(emulator: Any) -> str:
    c = container()
    url = c.sqs().get_queue_url(QueueName=c.settings.steps_queue)["QueueUrl"]
    text = json.dumps(DEMO).replace("${StepsQueueUrl}", url)
    sfn = c.client("stepfunctions")
    name = f"gangway-test-demo-{snowflake()}"
    arn: str = sfn.create_state_machine(
        name=name, definition=text, roleArn="arn:aws:iam::123456789012:role/x"
    )["stateMachineArn"]
    return arn


def _runner(calls: list[str]) -> StepRunner:
    c = container()
    return StepRunner(
        steps=_registry(calls),
        sfn=lambda: c.client("stepfunctions"),
        lifecycle=lambda: c.lifecycle,
        tracer=NullTracer(),
    )


def test_steps_run_through_the_queue_and_transient_errors_are_retried(demo: str) -> None:
    calls: list[str] = []
    sfn = container().client("stepfunctions")
    started = sfn.start_execution(
        stateMachineArn=demo, name=snowflake(), input=json.dumps({"tenant": "1", "game": "valheim"})
    )
    done = _drive(_runner(calls), started["executionArn"])
    assert done["status"] == "SUCCEEDED"
    # Delivery is at least once (moto even re-sends a retried Task's message under the same token), so
    # steps are idempotent; what matters is that the transient failure was retried and the run went on.
    assert calls[0] == "one:valheim" and calls.count("flaky") >= 2 and calls[-1] == "boom"
    output = json.loads(done["output"])
    assert output["results"]["t_one"] == {"volume": "vol-1"} and output["results"]["t_boom"] == {"fine": True}


def test_a_named_failure_is_caught_and_compensated(demo: str) -> None:
    calls: list[str] = []
    sfn = container().client("stepfunctions")
    started = sfn.start_execution(
        stateMachineArn=demo,
        name=snowflake(),
        input=json.dumps({"tenant": "1", "game": "valheim", "explode": True}),
    )
    done = _drive(_runner(calls), started["executionArn"])
    assert done["status"] == "FAILED"
    assert calls[-1] == "compensate:gangway.Capacity:vol-1"


def test_malformed_step_messages_are_dropped(emulator: Any) -> None:
    runner = _runner([])
    for body in [
        "",
        "[]",
        "{}",
        json.dumps({"step": "t.one", "input": {"game": "x"}, "token": "t"}),
        json.dumps({"step": "../x", "input": {"tenant": "1", "game": "x"}, "token": "t"}),
        "x" * 300_000,
    ]:
        assert runner.run(body) == "malformed"


class _RecordingTracer(NullTracer):
    """Tracing off, but remembering which trace each segment was asked to continue."""

    def __init__(self) -> None:
        self.continued: list[str | None] = []

    @contextlib.contextmanager
    def segment(self, name: str, trace_header: str | None = None) -> Iterator[Span]:
        self.continued.append(trace_header)
        with super().segment(name, trace_header) as span:
            yield span


def test_a_step_continues_the_queue_s_trace_header_else_the_one_its_input_carries(emulator: Any) -> None:
    """Step Functions sets AWSTraceHeader on the steps-queue message when tracing is on (preferred); the
    embedded emulator does not, so the execution input's trace stands in."""
    c = container()
    tracer = _RecordingTracer()
    runner = StepRunner(
        steps=StepRegistry(),
        sfn=lambda: c.client("stepfunctions"),
        lifecycle=lambda: c.lifecycle,
        tracer=tracer,
    )
    carried = "Root=1-5f84c7a9-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"
    queue = "Root=1-5f84c7a9-fedcba9876543210fedcba98;Parent=1111111111111111;Sampled=1"
    body = json.dumps(
        {"step": "t.gone", "input": {"tenant": "1", "game": "x", "trace": carried}, "token": "t"}
    )
    runner.run(body, queue)  # an unknown step: answered with a failure (a stale token here), still traced
    runner.run(body)
    runner.run(
        json.dumps({"step": "t.gone", "input": {"tenant": "1", "game": "x", "trace": 7}, "token": "t"})
    )
    assert tracer.continued == [queue, carried, None]


def _check(asl: Mapping[str, Any], steps: StepRegistry) -> list[str]:
    """DESIGN.md §3: every Task is the token pattern to the steps queue, names a known step, retries
    transient errors and catches to a path that ends (no dangling Next). Every step gets the whole state
    and no state narrows it: the tenant, the game and the starter's trace (engine.py's TRACE_FIELD) ride
    in the execution input and must reach every step."""
    problems: list[str] = []
    states = asl["States"]
    # A compensation step is where Catch clauses lead; it is the end of the line and needs no Catch.
    catch_targets = {c["Next"] for st in states.values() for c in st.get("Catch", [])}
    for name, state in states.items():
        for key in ("Next", "Default"):
            if key in state and state[key] not in states:
                problems.append(f"{name}: {key} {state[key]} does not exist")
        for catch in state.get("Catch", []):
            if catch["Next"] not in states:
                problems.append(f"{name}: Catch goes to missing {catch['Next']}")
        if "InputPath" in state or "OutputPath" in state or state.get("ResultPath") == "$":
            problems.append(f"{name}: narrows or replaces the state (the input would lose its trace)")
        if state["Type"] != "Task":
            continue
        if state.get("Resource") != TASK or state["Parameters"].get("QueueUrl") != "${StepsQueueUrl}":
            problems.append(f"{name}: not the steps-queue token pattern")
            continue
        step = state["Parameters"]["MessageBody"].get("step")
        if state["Parameters"]["MessageBody"].get("input.$") != "$":
            problems.append(f"{name}: does not send the whole state as the step's input")
        if steps.get(step) is None:
            problems.append(f"{name}: unknown step {step}")
        if not any(ERROR_TRANSIENT in r["ErrorEquals"] for r in state.get("Retry", [])):
            problems.append(f"{name}: no Retry for {ERROR_TRANSIENT}")
        if "Catch" not in state and name not in catch_targets:
            problems.append(f"{name}: no Catch to a compensation path")
    return problems


def test_the_checker_finds_what_it_must() -> None:
    reg = _registry([])
    assert _check(DEMO, reg) == []
    broken = json.loads(json.dumps(DEMO))
    del broken["States"]["One"]["Catch"]
    broken["States"]["Flaky"]["Parameters"]["MessageBody"]["step"] = "t.nope"
    broken["States"]["Boom"]["Retry"] = []
    broken["States"]["Boom"]["Parameters"]["MessageBody"]["input.$"] = "$.results"
    broken["States"]["Flaky"]["OutputPath"] = "$.results"
    assert len(_check(broken, reg)) == 5


def test_every_shipped_workflow_follows_the_pattern() -> None:
    assert container().step_registry is STEPS  # importing it declares every step
    for path in sorted(DEFINITIONS.glob("*.asl.json")):
        text = path.read_text()
        assert placeholders(text) <= {"StepsQueueUrl", "StepsQueueArn"}, path.name
        assert _check(json.loads(text), STEPS) == [], path.name


def test_create_game_is_all_or_nothing() -> None:
    """CreateGame: group → record → ready, each caught to the one compensation, which ends in a Fail
    (so a create that was undone is never reported as a success)."""
    asl = json.loads((DEFINITIONS / "create-game.asl.json").read_text())
    states = asl["States"]
    steps = [s["Parameters"]["MessageBody"]["step"] for s in states.values() if s["Type"] == "Task"]
    assert steps == ["create.group", "create.record", "create.ready", "create.failed"]
    for name, state in states.items():
        if state["Type"] == "Task" and name != "Compensate":
            assert [c["Next"] for c in state["Catch"]] == ["Compensate"], name
    assert states[states["Compensate"]["Next"]]["Type"] == "Fail"
    assert _check(asl, container().step_registry) == []

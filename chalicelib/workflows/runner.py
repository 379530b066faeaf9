"""The steps Lambda's core: run one workflow step per SQS message and report back to Step Functions.

Every Task state of every workflow sends `{"step", "input", "token"}` to the steps queue with
`sqs:sendMessage.waitForTaskToken` (DESIGN.md §3). This runner calls the named step and answers
SendTaskSuccess with its output, or SendTaskFailure with a named error the state machine's Retry and
Catch clauses match. A step that returns None keeps the token to finish later (a wait on the agent).
The same pattern runs unchanged on AWS and on the embedded emulator.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from chalicelib.errors import UserError
from chalicelib.instances import error_code
from chalicelib.tracing import Tracer
from chalicelib.workflows.engine import TRACE_FIELD
from chalicelib.workflows.steps import ERROR_REJECTED, ERROR_TRANSIENT, StepContext, StepFailed, StepRegistry

if TYPE_CHECKING:
    from chalicelib.lifecycle.collaborators import Lifecycle

__all__ = ["MAX_STEP_MESSAGE_BYTES", "StepMessage", "StepRunner"]

log = logging.getLogger(__name__)

MAX_STEP_MESSAGE_BYTES: Final = 256 * 1024
_STEP: Final = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_TENANT: Final = re.compile(r"[0-9]{1,20}")
_CAUSE_LIMIT: Final = 32000  # Step Functions caps `cause` at 32768 characters
_STALE: Final = {"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"}
_TRACE_LIMIT: Final = 256  # StartExecution's traceHeader limit


@dataclass(frozen=True)
class StepMessage:
    """One step request from a Task state."""

    step: str
    input: Mapping[str, Any]
    token: str

    @property
    def trace(self) -> str | None:
        """The starter's trace header from the execution input (engine.py's TRACE_FIELD), if any."""
        value = self.input.get(TRACE_FIELD)
        return value if isinstance(value, str) and 0 < len(value) <= _TRACE_LIMIT else None

    @classmethod
    def parse(cls, body: str) -> StepMessage:
        """Validate a steps-queue body.

        Raises:
            ValueError: not a step message (malformed, oversized, or missing the tenant and game).
        """
        if len(body.encode()) > MAX_STEP_MESSAGE_BYTES:
            raise ValueError("step message too large")
        try:
            raw = json.loads(body)
        except RecursionError:
            raise ValueError("step message is nested too deeply") from None
        if not isinstance(raw, dict):
            raise ValueError("step message is not an object")
        step, data, token = raw.get("step"), raw.get("input"), raw.get("token")
        if not isinstance(step, str) or not _STEP.fullmatch(step):
            raise ValueError("malformed step name")
        if not isinstance(data, dict) or not isinstance(token, str) or not 1 <= len(token) <= 2048:
            raise ValueError("step message lacks input or token")
        if not isinstance(data.get("tenant"), str) or not _TENANT.fullmatch(data["tenant"]):
            raise ValueError("step input lacks the tenant")
        if not isinstance(data.get("game"), str):
            raise ValueError("step input lacks the game")
        return cls(step, data, token)


class StepRunner:
    """Runs step messages; `sfn` is the Step Functions client of the hosting account."""

    def __init__(
        self,
        *,
        steps: StepRegistry,
        sfn: Callable[[], Any],
        lifecycle: Callable[[], Lifecycle],
        tracer: Tracer,
    ) -> None:
        self._steps = steps
        self._sfn = sfn
        self._lifecycle = lifecycle
        self._tracer = tracer

    def run(self, body: str, trace_header: str | None = None) -> str:
        """Process one message; returns what happened. Never raises for a step's own failure: that is
        reported to Step Functions, whose Retry/Catch decide what comes next.

        `trace_header` is the message's `AWSTraceHeader` (Step Functions sets it when tracing is on);
        without it the step continues the trace its execution's input carries, so either way a step
        joins the trace of the action that started the workflow.
        """
        try:
            msg = StepMessage.parse(body)
        except ValueError as exc:
            log.error("dropping malformed step message: %s", exc)
            return "malformed"
        fn = self._steps.get(msg.step)
        with self._tracer.segment("step", trace_header or msg.trace) as span:
            span.annotate("tenant", msg.input["tenant"])
            span.annotate("step", msg.step)
            if fn is None:
                return self._fail(msg, ERROR_REJECTED, f"unknown step {msg.step}", span)
            ctx = StepContext(
                tenant_id=msg.input["tenant"],
                game=msg.input["game"],
                execution=str(msg.input.get("execution", "")),
                token=msg.token,
                lifecycle=self._lifecycle(),
                trace=self._tracer.trace_header(),
            )
            try:
                output = fn(ctx, msg.input)
            except StepFailed as exc:
                return self._fail(msg, exc.error, exc.cause, span)
            except UserError as exc:
                return self._fail(msg, ERROR_REJECTED, exc.message, span)
            except Exception as exc:
                log.exception("step %s failed", msg.step)
                return self._fail(msg, ERROR_TRANSIENT, f"{type(exc).__name__}: {exc}", span)
            if output is None:
                span.annotate("outcome", "waiting")
                return "waiting"
            span.annotate("outcome", "ok")
            return self._answer(
                msg,
                lambda sfn: sfn.send_task_success(taskToken=msg.token, output=json.dumps(dict(output))),
                "ok",
            )

    def _fail(self, msg: StepMessage, error: str, cause: str, span: Any) -> str:
        span.annotate("outcome", error)
        return self._answer(
            msg,
            lambda sfn: sfn.send_task_failure(
                taskToken=msg.token, error=error[:256], cause=cause[:_CAUSE_LIMIT]
            ),
            error,
        )

    def _answer(self, msg: StepMessage, call: Callable[[Any], Any], outcome: str) -> str:
        """Report to Step Functions; a token that is no longer waiting (a duplicate delivery after the
        Task moved on, or a timeout) is logged, not retried: nothing waits for it any more."""
        try:
            call(self._sfn())
        except Exception as exc:
            code = error_code(exc)
            if code in _STALE:
                log.info("step %s: its task is no longer waiting (%s)", msg.step, code)
                return "stale"
            raise
        return outcome

"""Workflow definitions and executions: load the ASL files, start executions idempotently.

The definitions are the `*.asl.json` files beside this module, with `${Name}` placeholders that the
deployment template (deploy/template/) or the local stack fills in. Those that share states
(start-game, edit-game) are built from `src/` by compose.py and checked in. Execution names are derived
from what they act on, so starting the same transition twice returns the same execution.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

__all__ = ["DEFINITIONS", "TRACE_FIELD", "Workflows", "definition", "placeholders", "state_machine_name"]

DEFINITIONS: Final = Path(__file__).resolve().parent
_PLACEHOLDER: Final = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")


def state_machine_name(prefix: str, workflow: str) -> str:
    """`gangway-dev` + `start-game` → `gangway-dev-start-game` (the template names them the same)."""
    return f"{prefix}-{workflow}"


def placeholders(text: str) -> set[str]:
    """The `${Name}` placeholders an ASL text uses."""
    return set(_PLACEHOLDER.findall(text))


def definition(workflow: str, values: Mapping[str, str]) -> str:
    """The ASL of `workflow` with its placeholders filled.

    Raises:
        KeyError: a placeholder has no value.
    """
    text = (DEFINITIONS / f"{workflow}.asl.json").read_text()
    filled = _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
    json.loads(filled)  # a definition that is not JSON after substitution is a bug here, not in AWS
    return filled


# The execution input's field that carries the starter's X-Ray trace header to every step.
TRACE_FIELD: Final = "trace"


class Workflows:
    """Starts executions of the deployed state machines (looked up by name once per container).

    `trace_header` reports the caller's current X-Ray trace (None when tracing is off): an execution
    continues it, so one user action is one trace from the click to the last step.
    """

    def __init__(
        self, sfn: Callable[[], Any], prefix: str, trace_header: Callable[[], str | None] = lambda: None
    ) -> None:
        self._sfn = sfn
        self._prefix = prefix
        self._trace_header = trace_header
        self._arns: dict[str, str] = {}

    def arn(self, workflow: str) -> str:
        if workflow not in self._arns:
            name = state_machine_name(self._prefix, workflow)
            for page in self._sfn().get_paginator("list_state_machines").paginate():
                for machine in page["stateMachines"]:
                    self._arns[machine["name"].removeprefix(self._prefix + "-")] = machine["stateMachineArn"]
            if workflow not in self._arns:
                raise LookupError(f"state machine {name} is not deployed")
        return self._arns[workflow]

    def describe(self, execution_arn: str) -> tuple[str, dict[str, Any]] | None:
        """An execution's status (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED) and its input; None
        when Step Functions does not know it (never started, or older than its 90-day history)."""
        sfn = self._sfn()
        try:
            answer = sfn.describe_execution(executionArn=execution_arn)
        except sfn.exceptions.ExecutionDoesNotExist:
            return None
        try:
            data = json.loads(answer.get("input") or "{}")
        except ValueError:
            data = {}
        return str(answer["status"]), data if isinstance(data, dict) else {}

    def start(self, workflow: str, *, name: str, input: Mapping[str, Any]) -> str:
        """Start (or find, if `name` already ran) an execution; returns its ARN.

        Names are at most 80 characters of letters, digits, `-` and `_` (AWS's rule). With tracing on,
        the trace goes twice: as `traceHeader` (Step Functions then sets `AWSTraceHeader` on every
        steps-queue message) and as the input's `trace` field, which reaches every step through
        `"input.$": "$"` where the first does not (the embedded emulator drops `traceHeader`).
        """
        safe = re.sub(r"[^A-Za-z0-9_-]", "-", name)[:80]
        sfn = self._sfn()
        header = self._trace_header()
        extra: dict[str, str] = {} if header is None else {"traceHeader": header}
        data = dict(input) if header is None else {**input, TRACE_FIELD: header}
        try:
            answer = sfn.start_execution(
                stateMachineArn=self.arn(workflow), name=safe, input=json.dumps(data), **extra
            )
        except sfn.exceptions.ExecutionAlreadyExists:
            prefix = self.arn(workflow).split(":stateMachine:")[0]
            return f"{prefix}:execution:{state_machine_name(self._prefix, workflow)}:{safe}"
        return str(answer["executionArn"])

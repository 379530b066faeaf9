"""Workflows: Step Functions definitions (ASL beside this module), the steps runner and the starter."""

from __future__ import annotations

from chalicelib.workflows.engine import DEFINITIONS, Workflows, definition, placeholders, state_machine_name
from chalicelib.workflows.runner import MAX_STEP_MESSAGE_BYTES, StepMessage, StepRunner
from chalicelib.workflows.steps import (
    ERROR_REJECTED,
    ERROR_TRANSIENT,
    STEPS,
    StepContext,
    StepFailed,
    StepRegistry,
)

__all__ = [
    "DEFINITIONS",
    "ERROR_REJECTED",
    "ERROR_TRANSIENT",
    "MAX_STEP_MESSAGE_BYTES",
    "STEPS",
    "StepContext",
    "StepFailed",
    "StepMessage",
    "StepRegistry",
    "StepRunner",
    "Workflows",
    "definition",
    "placeholders",
    "state_machine_name",
]

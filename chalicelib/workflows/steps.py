"""The catalogue of workflow steps: what a Task state's `{"step": name}` message runs.

Each step is a function of (StepContext, input) returning the JSON object that becomes the Task's
output. A step raises `StepFailed(error, cause)` to fail the Task with a named error that the state
machine's Retry/Catch clauses match; any other exception fails it as `gangway.Transient` (retried)
unless it is a UserError (`gangway.Rejected`, not retried).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    from chalicelib.config import Settings
    from chalicelib.lifecycle.collaborators import Lifecycle

__all__ = ["ERROR_REJECTED", "ERROR_TRANSIENT", "STEPS", "StepContext", "StepFailed", "StepRegistry"]

ERROR_TRANSIENT: Final = "gangway.Transient"
ERROR_REJECTED: Final = "gangway.Rejected"


class StepFailed(Exception):
    """Fail the Task with a named error (matched by the ASL's Retry/Catch)."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


@dataclass(frozen=True)
class StepContext:
    """What a step may use: the tenant, the game, its execution, the task token and the collaborators.

    The runner builds one per message from the factory wiring gives it; a step reaches nothing else.
    """

    tenant_id: str
    game: str
    execution: str
    token: str
    lifecycle: Lifecycle
    # This step's trace header (None when tracing is off): a step that keeps its token stores it on the
    # game, so the agent event that ends the wait joins the same trace.
    trace: str | None = None

    @property
    def settings(self) -> Settings:
        return self.lifecycle.settings


StepFn = Callable[[StepContext, Mapping[str, Any]], Mapping[str, Any] | None]
F = TypeVar("F", bound=StepFn)


@dataclass
class StepRegistry:
    """Steps by name. A step that returns None has kept the task token to finish later (a wait)."""

    steps: dict[str, StepFn] = field(default_factory=dict)

    def step(self, name: str) -> Callable[[F], F]:
        def decorate(fn: F) -> F:
            if name in self.steps:
                raise ValueError(f"step {name!r} declared twice")
            self.steps[name] = fn
            return fn

        return decorate

    def get(self, name: str) -> StepFn | None:
        return self.steps.get(name)


# The app's steps: the modules chalicelib/registry.py lists declare into it (`@STEPS.step("name")`).
STEPS: Final = StepRegistry()

"""What every lifecycle workflow module shares: starting an execution, the named step errors, the game a
step acts on, and putting a failure in words.

Starting is one pattern for all six workflows (DESIGN.md §2, no stuck games): claim the game with one
conditional write, start the execution under a name derived from what it acts on (so a retried call
starts nothing twice), and if Step Functions refuses, undo the claim, since no workflow would ever
finish it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from chalicelib.agents.events import AgentEvent
from chalicelib.games import Game, GameState
from chalicelib.lifecycle.collaborators import Lifecycle
from chalicelib.workflows import ERROR_REJECTED, ERROR_TRANSIENT, StepContext, StepFailed

__all__ = [
    "CAPACITY",
    "GONE",
    "NOT_YET",
    "SNAPSHOT_FAILED",
    "begin_transition",
    "failure_cause",
    "finish_wait",
    "game_of",
    "reached",
    "start_workflow",
    "why",
]

# Named step errors the ASL files' Retry and Catch clauses match.
NOT_YET: Final = "gangway.NotYet"  # an AWS state is not reached yet: retried with backoff
CAPACITY: Final = "gangway.Capacity"  # no room for the instance: StartGame's CapacityFallback
GONE: Final = "gangway.Gone"
SNAPSHOT_FAILED: Final = "gangway.SnapshotFailed"


def start_workflow(
    lc: Lifecycle,
    workflow: str,
    game: Game,
    *,
    execution: str,
    reply: Mapping[str, Any] | None,
    undo: Callable[[], object],
    **extra: Any,
) -> str:
    """Start `workflow` for `game` under the name `execution`; returns the execution ARN.

    Every execution's input carries the tenant, the game, its own name and where to tell progress.

    Raises:
        Exception: Step Functions refused, after `undo()` gave back what the caller claimed.
    """
    data = {
        "tenant": game.tenant_id,
        "game": game.name,
        "execution": execution,
        "reply": dict(reply or {}),
        **extra,
    }
    try:
        return lc.workflows.start(workflow, name=execution, input=data)
    except Exception:
        undo()
        raise


def begin_transition(
    lc: Lifecycle, game: Game, to: GameState, workflow: str, reply: Mapping[str, Any] | None, **extra: Any
) -> str:
    """The transition, then the execution named after the version it moved to (so never twice); the
    execution owns the game's new state until it ends (recorded on the game).

    Raises:
        Conflict: the game moved meanwhile (someone else got there first).
    """
    moved = lc.games.move(game, to=to)
    # The creation time tells this game from an earlier one of the same name (deleted, then created
    # again): its versions run through the same numbers, and AWS keeps execution names for 90 days.
    prefix = workflow.split("-", maxsplit=1)[0]
    name = f"{prefix}-{game.tenant_id}-{game.name}-{int(game.created_at)}-{moved.version}"

    def undo() -> None:
        lc.games.move(moved, to=game.state)

    arn = start_workflow(lc, workflow, game, execution=name, reply=reply, undo=undo, **extra)
    lc.games.owned_by(game.tenant_id, game.name, arn)
    return arn


def finish_wait(lc: Lifecycle, event: AgentEvent, token: str, output: Mapping[str, Any]) -> None:
    """Finish the step that waited for this agent reply: an `error` reply fails it (its Catch decides)."""
    if event.type == "error":
        lc.fail(token, "gangway.AgentError", str(event.body.get("message", ""))[:500])
    else:
        lc.complete(token, output)


def game_of(ctx: StepContext) -> Game:
    """The game the step acts on, read consistently.

    Raises:
        StepFailed(GONE): it was deleted meanwhile.
    """
    game = ctx.lifecycle.games.get(ctx.tenant_id, ctx.game)
    if game is None:
        raise StepFailed(GONE, f"the game {ctx.game} no longer exists")
    return game


def reached(
    state: str, *, ready: str, pending: str | tuple[str, ...], what: str, failed: str
) -> dict[str, str]:
    """One poll of an AWS resource (a volume, a snapshot, fast snapshot restore): a step's output once
    it is `ready`.

    Raises:
        StepFailed(NOT_YET): still `pending` (the ASL retries the step).  StepFailed(failed): any
            other state (it will not become ready: the Catch undoes the workflow).
    """
    if state in ((pending,) if isinstance(pending, str) else pending):
        raise StepFailed(NOT_YET, f"{what} is still {state}")
    if state != ready:
        raise StepFailed(failed, f"{what} is {state}")
    return {"state": state}


# What a named error means, for a Catch whose cause is missing or is not for people (a Transient
# failure's cause names an exception class).
_IN_WORDS: Final[Mapping[str, str]] = {
    CAPACITY: "AWS had no capacity for it right now",
    "States.Timeout": "the server did not report in time",
    ERROR_TRANSIENT: "AWS kept failing a request; try again in a few minutes",
    ERROR_REJECTED: "the game changed while this ran; try again",
}
_ALWAYS_IN_WORDS: Final = frozenset({CAPACITY, "States.Timeout", ERROR_TRANSIENT})


def why(error: Mapping[str, Any]) -> str:
    """A Catch's `$.error` in words for the people waiting on the game: never an error name or class."""
    kind = str(error.get("Error", ""))
    cause = str(error.get("Cause") or "")
    if kind in _ALWAYS_IN_WORDS or (kind in _IN_WORDS and not cause):
        return _IN_WORDS[kind]
    if cause:
        return cause[:300]
    return (
        "a step failed unexpectedly; try again, and if it keeps failing ask the server's admin to check "
        "gangway's logs"
    )


def failure_cause(error: Mapping[str, Any]) -> str:
    """A Catch's `$.error` as it came: its cause, else its name."""
    return str(error.get("Cause", error.get("Error", "an unknown error")))[:300]

"""Reconciliation (DESIGN.md §2, no stuck games): a scheduled pass finds games in a transitional state
whose workflow ended without finishing (failed, timed out, aborted) or vanished, and brings each to a
consistent state through the same rescue step its workflow's Catch would have run, which also tells the
user in the reply the workflow was started from.

A workflow normally ends through its own Catch; this pass is for what a Catch cannot see: an execution
stopped by hand, one whose rescue step itself ran out of retries, or one Step Functions no longer knows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from chalicelib.games import Game, GameState
from chalicelib.lifecycle.collaborators import Lifecycle
from chalicelib.lifecycle.create_game import create_failed
from chalicelib.lifecycle.delete_game import delete_failed
from chalicelib.lifecycle.start_game import start_compensate
from chalicelib.lifecycle.stop_game import stop_rescue
from chalicelib.workflows import StepContext

__all__ = ["GRACE_SECONDS", "reconcile"]

log = logging.getLogger(__name__)

# A transition younger than this is left alone: its execution may not be recorded on the row yet.
GRACE_SECONDS: Final = 120
_ENDED_IN_WORDS: Final = {
    "FAILED": "its workflow failed without undoing itself",
    "TIMED_OUT": "its workflow ran out of time",
    "ABORTED": "its workflow was stopped before it finished",
    "SUCCEEDED": "its workflow ended without finishing the change",
    None: "its workflow could no longer be found",
}
_RESCUE: Final[Mapping[GameState, Callable[[StepContext, Mapping[str, Any]], Mapping[str, Any]]]] = {
    GameState.STARTING: start_compensate,
    GameState.STOPPING: stop_rescue,
    GameState.CREATING: create_failed,
    GameState.DELETING: delete_failed,
}


def reconcile(lc: Lifecycle, *, now: float | None = None) -> dict[str, str]:
    """One pass over every tenant's games in a transitional state; returns `tenant/game → outcome`."""
    now = time.time() if now is None else now
    outcomes: dict[str, str] = {}
    for game in lc.games.in_transit(changed_before=int(now) - GRACE_SECONDS):
        key = f"{game.tenant_id}/{game.name}"
        try:
            outcomes[key] = _reconcile_one(lc, game)
        except Exception:  # one game's trouble must not keep the others stuck; the next pass retries
            log.exception("reconcile: %s could not be brought back", key)
            outcomes[key] = "failed"
    return outcomes


def _reconcile_one(lc: Lifecycle, game: Game) -> str:
    execution = game.wait.execution
    found = lc.workflows.describe(execution) if execution else None
    status = found[0] if found else None
    if status == "RUNNING":
        return "running"
    data: dict[str, Any] = dict(found[1]) if found else {}
    data.setdefault("reply", {})
    data["error"] = {"Error": f"gangway.Ended.{status or 'Vanished'}", "Cause": _ENDED_IN_WORDS[status]}
    log.warning(
        "reconcile: %s/%s is %s but %s", game.tenant_id, game.name, game.state.word, data["error"]["Cause"]
    )
    ctx = StepContext(
        tenant_id=game.tenant_id,
        game=game.name,
        execution=str(data.get("execution", "")),
        token="",
        lifecycle=lc,
    )
    _RESCUE[game.state](ctx, data)
    return f"rescued:{status or 'vanished'}"

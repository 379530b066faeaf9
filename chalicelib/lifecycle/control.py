"""Starting and stopping games: one conditional transition, then one idempotent workflow execution.

Of two /start of the same game at once, the transition lets exactly one through; the execution's
name is derived from the game's version, so even a retried call starts nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from chalicelib.games import Game, GameState
from chalicelib.lifecycle.deps import Lifecycle
from chalicelib.tenancy import Usage, plan_named

__all__ = [
    "AGENT_TIMEOUT_SECONDS",
    "SAVE_TIMEOUT_SECONDS",
    "begin_edit",
    "begin_start",
    "begin_stop",
    "reply_ref",
]

AGENT_TIMEOUT_SECONDS: Final = 600
SAVE_TIMEOUT_SECONDS: Final = 300


def reply_ref(application_id: str, token: str) -> dict[str, Any]:
    """Where a workflow edits its progress: the interaction's reply, while its token lives."""
    return {"application_id": application_id, "token": token, "at": time.time()}


def begin_start(
    lc: Lifecycle,
    game: Game,
    *,
    reply: Mapping[str, Any] | None,
    agent_timeout: int = 0,
    workflow: str = "start-game",
) -> str:
    """STOPPED → STARTING and the StartGame execution; returns the execution ARN.

    Raises:
        Conflict: the game is not stopped any more (someone else started it).  Forbidden: plan limit.
    """
    games = lc.games.all(game.tenant_id)
    # Other games only: this one's own state is decided by the conditional transition below; a game
    # being created runs nothing yet.
    idle = (GameState.STOPPED, GameState.CREATING)
    running = sum(g.state not in idle for g in games if g.name != game.name)
    plan_named(lc.tenants.require(game.tenant_id).plan).check_start(Usage(games=len(games), running=running))
    return _begin(
        lc,
        game,
        GameState.STARTING,
        workflow,
        reply,
        spot=game.spot,
        on_demand_fallback=game.on_demand_fallback,
        agent_timeout=agent_timeout or AGENT_TIMEOUT_SECONDS,
    )


def begin_edit(lc: Lifecycle, game: Game, *, reply: Mapping[str, Any] | None, agent_timeout: int = 0) -> str:
    """STOPPED → STARTING and the EditGame execution (the host up without the game, for installing it).

    Raises:
        Conflict: the game is not stopped any more.  Forbidden: plan limit.
    """
    return begin_start(lc, game, reply=reply, agent_timeout=agent_timeout, workflow="edit-game")


def begin_stop(
    lc: Lifecycle, game: Game, *, reply: Mapping[str, Any] | None, reason: str, save_timeout: int = 0
) -> str:
    """RUNNING → STOPPING and the StopGame execution; returns the execution ARN.

    Raises:
        Conflict: the game is not running any more.
    """
    return _begin(
        lc,
        game,
        GameState.STOPPING,
        "stop-game",
        reply,
        reason=reason,
        save_timeout=save_timeout or SAVE_TIMEOUT_SECONDS,
    )


def _begin(
    lc: Lifecycle, game: Game, to: GameState, workflow: str, reply: Mapping[str, Any] | None, **extra: Any
) -> str:
    """The transition, then the execution named after the version it moved to (so never twice)."""
    moved = lc.games.transition(game.tenant_id, game.name, to=to, expected_version=game.version)
    # The creation time tells this game from an earlier one of the same name (deleted, then created
    # again): its versions run through the same numbers, and AWS keeps execution names for 90 days.
    prefix = workflow.split("-", maxsplit=1)[0]
    name = f"{prefix}-{game.tenant_id}-{game.name}-{int(game.created_at)}-{moved.version}"
    data = {
        "tenant": game.tenant_id,
        "game": game.name,
        "execution": name,
        "reply": dict(reply or {}),
        **extra,
    }
    try:
        arn = lc.workflows.start(workflow, name=name, input=data)
    except Exception:
        # No workflow owns the new state: put the game back so it is never stuck (DESIGN.md section 2).
        lc.games.transition(game.tenant_id, game.name, to=game.state, expected_version=moved.version)
        raise
    lc.games.record(game.tenant_id, game.name, execution=arn)
    return arn

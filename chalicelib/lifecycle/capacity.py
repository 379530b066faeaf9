"""Which instance types a start may try, and what it found, in words (StartGame's capacity first).

The game's own type comes first, then its fallback types the tenant's plan allows; the user is told
which fallback a launch took, and, when none had room, what was tried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from chalicelib.games import Game, GameState
from chalicelib.lifecycle.collaborators import Lifecycle
from chalicelib.tenancy import Usage, plan_named

__all__ = ["check_plan", "fallback_note", "in_words", "instance_types", "no_room"]

log = logging.getLogger(__name__)


def check_plan(lc: Lifecycle, game: Game) -> None:
    """Whether the tenant's plan lets one more game run (StartGame and EditGame both run a host).

    Raises:
        Forbidden: the plan's limit on running games is reached.
    """
    games = lc.games.all(game.tenant_id)
    # Other games only: this one's own state is decided by the conditional transition that follows; a
    # game being created runs nothing yet.
    idle = (GameState.STOPPED, GameState.CREATING)
    running = sum(g.state not in idle for g in games if g.name != game.name)
    plan_named(lc.tenants.require(game.tenant_id).plan).check_start(Usage(games=len(games), running=running))


def instance_types(lc: Lifecycle, game: Game) -> list[str]:
    """The game's instance type, then its fallback types the plan still allows (in that order).

    Raises:
        Forbidden: the plan does not allow the game's own type any more.
    """
    plan = plan_named(lc.tenants.require(game.tenant_id).plan)
    plan.check_instance(game.settings.instance_type)
    allowed = []
    for t in game.settings.fallback_types:
        try:
            plan.check_instance(t)
        except Exception:
            log.info("%s/%s: fallback %s is over the plan; skipped", game.tenant_id, game.name, t)
            continue
        allowed.append(t)
    return list(dict.fromkeys([game.settings.instance_type, *allowed]))


def in_words(types: Sequence[str]) -> str:
    return " or ".join(f"`{t}`" for t in types)


def fallback_note(game: Game, types: Sequence[str], *, spot: bool, instance_type: str, where: str) -> str:
    """Which fallback this launch took, in words (empty when it got what the game asked for)."""
    notes = []
    if game.settings.spot and not spot:
        notes.append(f"no Spot room for {in_words(types)} {where}; started on-demand")
    if instance_type != game.settings.instance_type:
        market = "Spot" if spot else "on-demand"
        notes.append(
            f"no {market} room for `{game.settings.instance_type}` {where}; started a `{instance_type}`"
        )
    return "; ".join(notes)


def no_room(lc: Lifecycle, game: Game, data: Mapping[str, Any]) -> str:
    """Why a start found no capacity, from what it tried (not from the error's cause: the emulator
    drops causes, and AWS's is a list of every attempt)."""
    try:
        types = in_words(instance_types(lc, game))
    except Exception:
        types = f"`{game.settings.instance_type}`"
    where = (
        f"in {game.resources.zone} (where its unsaved disk is)" if game.resources.volume_id else "in any zone"
    )
    if not data.get("spot"):
        market = "on-demand"
    elif data.get("on_demand_fallback"):
        market = "Spot or on-demand"
    else:
        market = "Spot"
    only = " (this game runs on Spot only)" if data.get("spot") and not data.get("on_demand_fallback") else ""
    return f"AWS had no capacity for it right now: no {market} room for {types} {where}{only}"

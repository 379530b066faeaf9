"""The preload steps of StartGame (chalicelib/workflows/start-game.asl.json): how a disk made from a
snapshot is warmed before players arrive (DESIGN.md §2, issue 4).

`rate`: CreateVolume with a provisioned initialisation rate (steps_start.start_volume). `fsr`: fast
snapshot restore on for the snapshot in the instance's zone only, until the volume exists, and never
left on (the compensation turns it off too). `read`: the agent starts without the game, reads every
block (`disk.preload`; progress and the end arrive through agent_events.py), then starts the game.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Final

from chalicelib.games import Game
from chalicelib.games.cost import price_table
from chalicelib.instances import Ec2Gateway
from chalicelib.instances.ec2 import FastRestoreRefused
from chalicelib.lifecycle.progress import tell
from chalicelib.lifecycle.steps import NOT_YET, _deps, _game
from chalicelib.workflows import STEPS, StepContext, StepFailed

__all__ = [
    "FSR_HOURLY_USD",
    "INIT_RATE_MIBS",
    "fast_restore_off",
    "game_start_request_id",
    "preload_mode",
    "preload_request_id",
]

log = logging.getLogger(__name__)

_ACTOR: Final = "workflow:start"
# EBS Provisioned Rate for Volume Initialization of the `rate` preload mode (MiB/s).
INIT_RATE_MIBS: Final = 200
# Fast snapshot restore is billed per snapshot and zone, per hour it is on, at least one hour
# (https://aws.amazon.com/ebs/pricing/): the figure people are told comes from the repo's price table.
FSR_HOURLY_USD: Final = float(price_table()["regions"]["us-east-1"]["fsr_dsu_hourly"])


def preload_request_id(execution: str) -> str:
    """The id of the `disk.preload` request: only its `error` reply (same id) may fail the wait."""
    return f"{execution}-preload"


def game_start_request_id(execution: str) -> str:
    """The id of the `game.start` request after a preload: only its reply (same id) ends the wait."""
    return f"{execution}-game-start"


def preload_mode(game: Game, *, reused: bool) -> str:
    """What preloading this start does: nothing to preload without a snapshot (a first start), and a
    volume kept from a failed stop already exists (only `read` can still warm it)."""
    if not game.snapshot_id:
        return "off"
    if reused:
        return "read" if game.preload == "read" else "off"
    return game.preload if game.preload in {"rate", "fsr", "read"} else "off"


def _fsr_hourly(region: str) -> float:
    prices = price_table()["regions"].get(region, {})
    return float(prices.get("fsr_dsu_hourly", FSR_HOURLY_USD))


@STEPS.step("start.fsr_on")
def start_fsr_on(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Turn fast snapshot restore on for this start's snapshot in the instance's zone only.

    EBS refusing (a limit on enabled snapshots, say) does not fail the start: the volume is made
    without it and warms up as it is read, and the user is told."""
    deps, game = _deps(ctx), _game(ctx)
    snap, zone = data["launch"]["snapshot_id"], data["launch"]["zone"]
    hourly = _fsr_hourly(deps.tenants.require(game.tenant_id).region)
    tell(
        deps,
        data,
        f"⏳ Starting **{game.name}**: turning on fast snapshot restore in {zone} (about "
        f"${hourly:.2f} an hour while on, at least one hour; it is turned off once the disk exists)…",
    )
    try:
        state = deps.ec2(game, actor=_ACTOR).enable_fast_restore(snap, zone)
    except FastRestoreRefused as exc:
        tell(deps, data, f"⏳ Starting **{game.name}**: {exc}; its disk warms up as the game reads it…")
        return {"enabled": False, "problem": str(exc)[:300]}
    return {"enabled": True, "state": state}


@STEPS.step("start.fsr_ready")
def start_fsr_ready(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Wait (NOT_YET, retried by the workflow) until fast snapshot restore is `enabled`."""
    if not data["fsr"].get("enabled"):
        return {"state": "off"}
    deps, game = _deps(ctx), _game(ctx)
    snap, zone = data["launch"]["snapshot_id"], data["launch"]["zone"]
    state = deps.ec2(game, actor=_ACTOR).fast_restore_state(snap, zone)
    if state in {"enabling", "optimizing"}:
        raise StepFailed(NOT_YET, f"fast snapshot restore is {state}")
    if state != "enabled":
        raise StepFailed("gangway.FastRestoreFailed", f"fast snapshot restore went {state}")
    return {"state": state}


@STEPS.step("start.fsr_off")
def start_fsr_off(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The volume exists: turn fast snapshot restore off at once (it is billed while on)."""
    if not data["fsr"].get("enabled"):
        return {"disabled": False}
    deps, game = _deps(ctx), _game(ctx)
    deps.ec2(game, actor=_ACTOR).disable_fast_restore(data["launch"]["snapshot_id"], data["launch"]["zone"])
    return {"disabled": True}


@STEPS.step("start.preload_read")
def start_preload_read(ctx: StepContext, data: Mapping[str, Any]) -> None:
    """Ask the agent to read every block of the disk; `preload.done` finishes this step.

    The token waits with what it waits for and where to tell progress (`task_wait`), so only preload
    events end it (never a late `ready`), and progress edits are throttled (agent_events.py). A repeated
    delivery sends the same request id, which the agent answers without reading twice."""
    deps, game = _deps(ctx), _game(ctx)
    request = preload_request_id(ctx.execution)
    wait = {"for": "preload", "request": request, "reply": dict(data.get("reply") or {}), "told": -1.0}
    deps.games.record(ctx.tenant_id, ctx.game, task_token=ctx.token, task_wait=json.dumps(wait))
    tell(deps, data, f"⏳ Starting **{game.name}**: reading the disk… 0 %")
    deps.ask_agent(game, "disk.preload", {}, request_id=request)


@STEPS.step("start.game_start")
def start_game_start(ctx: StepContext, data: Mapping[str, Any]) -> None:
    """The disk is warm: ask the agent to start the game; its `game.start` reply finishes this step."""
    deps, game = _deps(ctx), _game(ctx)
    request = game_start_request_id(ctx.execution)
    wait = {"for": "game.start", "request": request}
    deps.games.record(ctx.tenant_id, ctx.game, task_token=ctx.token, task_wait=json.dumps(wait))
    seconds = data.get("preloaded", {}).get("seconds")
    took = f" (read in {float(seconds):.0f} s)" if isinstance(seconds, int | float) else ""
    tell(deps, data, f"⏳ Starting **{game.name}**: the disk is read{took}; starting the game…")
    deps.ask_agent(game, "game.start", {}, request_id=request)


def fast_restore_off(ec2: Ec2Gateway, data: Mapping[str, Any]) -> str:
    """Compensation: fast snapshot restore off if this start may have turned it on; tries a few times,
    and says so (with what it costs) if it is still on, for someone to turn it off."""
    launch = data.get("launch", {})
    if launch.get("preload") != "fsr" or not launch.get("snapshot_id") or not launch.get("zone"):
        return ""
    snap, zone = str(launch["snapshot_id"]), str(launch["zone"])
    problem = ""
    for attempt in range(3):
        try:
            ec2.disable_fast_restore(snap, zone)
        except Exception as exc:
            problem = str(exc)[:200]
            log.warning("fast snapshot restore of %s in %s still on (try %d)", snap, zone, attempt + 1)
            time.sleep(1 + attempt)
            continue
        return ""
    return (
        f" Warning: fast snapshot restore could not be turned off for snapshot `{snap}` in {zone} "
        f"({problem}); it costs about ${FSR_HOURLY_USD:.2f} an hour until it is: an admin can turn it "
        "off in the EC2 console (Snapshots → Manage fast snapshot restore)."
    )

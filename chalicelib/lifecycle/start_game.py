"""Starting games: /start and the StartGame workflow (workflows/start-game.asl.json).

Capacity first (DESIGN.md §2): launch the instance wherever AWS has room (the game's instance type,
then its fallback types, in every zone; Spot first when the game wants it, on-demand after if it
allows: capacity.py), then make the data volume from the newest snapshot in that instance's zone,
warmed with the game's preload mode (preload.py), attach it, and wait for the agent: its `ready`, or
with the `read` preload its progress, `preload.done` and the answer to `game.start` (the handlers at
the end of this module end those waits). EditGame runs the same steps with `$.edit` set (edit_game.py).

Every step is idempotent (SQS may deliver it twice) and records what it made on the game row, so
`start.compensate` undoes exactly that: nothing orphaned, never fast snapshot restore left on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from chalicelib.agents.events import AGENT_EVENTS, AgentEvent
from chalicelib.games import Game, GameState
from chalicelib.instances import CapacityError, Ec2Gateway
from chalicelib.instances.ec2 import FastRestoreRefused, placements
from chalicelib.instances.images import ImageRefused, image_ids
from chalicelib.lifecycle.capacity import fallback_note, in_words, instance_types, no_room
from chalicelib.lifecycle.catalogue_game import started_text
from chalicelib.lifecycle.collaborators import Lifecycle
from chalicelib.lifecycle.edit_game import up_for_editing
from chalicelib.lifecycle.host import begin_host, game_group, retire_identity, user_data
from chalicelib.lifecycle.preload import INIT_RATE_MIBS, fast_restore_off, fsr_hourly, preload_mode
from chalicelib.lifecycle.workflow import CAPACITY, NOT_YET, finish_wait, game_of, reached, why
from chalicelib.workflows import STEPS, StepContext, StepFailed

__all__ = [
    "begin_start",
    "game_start_request_id",
    "on_preload_done",
    "on_preload_failed",
    "on_preload_progress",
    "on_ready",
    "on_start_reply",
    "on_status_reply",
    "preload_request_id",
]

log = logging.getLogger(__name__)

_ACTOR: Final = "workflow:start"
VOLUME_FAILED: Final = "gangway.VolumeFailed"
FAST_RESTORE_FAILED: Final = "gangway.FastRestoreFailed"
IMAGE_REFUSED: Final = "gangway.ImageRefused"
# Preload progress edits the reply at most this often (the agent reports every 5 s), or per 10 %.
_TELL_EVERY_S: Final = 20.0
_TELL_STEP_PERCENT: Final = 10.0


def begin_start(lc: Lifecycle, game: Game, *, reply: Mapping[str, Any] | None, agent_timeout: int = 0) -> str:
    """STOPPED → STARTING and the StartGame execution; returns the execution ARN.

    Raises:
        Conflict: the game is not stopped any more (someone else started it).  Forbidden: plan limit.
    """
    return begin_host(lc, game, "start-game", reply=reply, agent_timeout=agent_timeout)


def preload_request_id(execution: str) -> str:
    """The id of the `disk.preload` request: only its `error` reply (same id) may fail the wait."""
    return f"{execution}-preload"


def game_start_request_id(execution: str) -> str:
    """The id of the `game.start` request after a preload: only its reply (same id) ends the wait."""
    return f"{execution}-game-start"


def _kept_volume(ec2: Ec2Gateway, game: Game) -> str | None:
    """A volume kept by a failed stop (it holds the newest data, unsnapshotted): the start reuses it."""
    if (
        game.resources.volume_id
        and game.resources.zone
        and ec2.volume_state(game.resources.volume_id) == "available"
    ):
        return game.resources.volume_id
    return None


@STEPS.step("start.launch")
def start_launch(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Launch where AWS has room: every (type, zone) of the game in the market `data.market` says.

    A volume kept from a failed stop pins the launch to its zone. Each type boots the Debian image of
    its own architecture (instances/images.py), owner-checked first: a refused image fails the start
    (StepFailed(IMAGE_REFUSED)) before anything is launched. Raises StepFailed(CAPACITY) when no option
    had room: the workflow's CapacityFallback then tries on-demand if the game allows.
    """
    lc, game = ctx.lifecycle, game_of(ctx)
    ec2 = lc.gateways.ec2(game, actor=_ACTOR)
    kept = _kept_volume(ec2, game)
    # EditGame (data.edit) brings the host up without the game, to install it: nothing to preload.
    edit = bool(data.get("edit"))
    mode = "off" if edit else preload_mode(game, reused=bool(kept))
    types = instance_types(lc, game)
    where = f"in {game.resources.zone} (where its unsaved disk is)" if kept else "in any zone"
    common = {"reused": bool(kept), "preload": mode, "snapshot_id": game.resources.snapshot_id}
    if game.resources.instance_id:  # a repeated delivery: this start already launched it
        found = ec2.instance(game.resources.instance_id) or {}
        spot = found.get("InstanceLifecycle") == "spot"
        kind = str(found.get("InstanceType", game.settings.instance_type))
        note = fallback_note(game, types, spot=spot, instance_type=kind, where=where)
        again = {
            "instance_id": game.resources.instance_id,
            "zone": game.resources.zone,
            "instance_type": kind,
            "spot": spot,
        }
        return again | common | {"note": note}
    spot = data.get("market") == "spot"
    try:
        images = lc.gateways.images(game, actor=_ACTOR).for_types(types)
    except ImageRefused as exc:
        log.warning("%s/%s: %s", ctx.tenant_id, ctx.game, exc)
        raise StepFailed(IMAGE_REFUSED, str(exc)) from exc
    types = [t for t in types if t in images]
    zones = [game.resources.zone] if kept and game.resources.zone else ec2.launch_zones()
    lc.tell(
        data,
        f"⏳ Starting **{game.name}**: looking for {'Spot ' if spot else ''}room for {in_words(types)}…",
    )
    try:
        launch = ec2.run(
            placements(types, zones),
            spot=spot,
            user_data=user_data(ctx, game, volume_id=kept, autostart=mode != "read", editing=edit),
            token=f"{ctx.execution}-{data.get('market', 'od')}",
            images=image_ids(images),
            security_group_ids=[game_group(lc, game, actor=_ACTOR)],
        )
    except CapacityError as exc:
        log.info("%s/%s: %s", ctx.tenant_id, ctx.game, exc)
        market = "Spot" if spot else "on-demand"
        raise StepFailed(CAPACITY, f"no {market} room for {in_words(types)} {where}") from exc
    # A catalogue game's agent reports its install from its first moments: the /start reply shows it.
    reply = data.get("reply") if game.settings.catalogue_id and not edit else None
    lc.games.launched(
        ctx.tenant_id,
        ctx.game,
        instance_id=launch.instance_id,
        zone=launch.zone,
        editing=edit,
        start_reply={"reply": reply} if reply else None,
    )
    note = fallback_note(game, types, spot=launch.spot, instance_type=launch.instance_type, where=where)
    lc.tell(
        data,
        f"⏳ Starting **{game.name}**: launched a {'Spot ' if launch.spot else ''}`{launch.instance_type}` "
        f"in {launch.zone}" + (f" ({note})" if note else "") + "; preparing its disk…",
    )
    return {
        "instance_id": launch.instance_id,
        "zone": launch.zone,
        "instance_type": launch.instance_type,
        "spot": launch.spot,
        "note": note,
    } | common


@STEPS.step("start.volume")
def start_volume(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The data volume in the instance's zone: the kept one, or a new one from the newest snapshot."""
    lc, game = ctx.lifecycle, game_of(ctx)
    launch = data["launch"]
    if launch["reused"]:
        return {"volume_id": game.resources.volume_id, "zone": launch["zone"], "reused": True}
    snap, mode = launch["snapshot_id"], launch["preload"]
    volume = lc.gateways.ec2(game, actor=_ACTOR).create_volume(
        zone=launch["zone"],
        size_gb=game.settings.disk_gb,
        snapshot_id=snap,
        token=f"{ctx.execution}-volume",  # a repeated delivery gets the same volume back
        init_rate=INIT_RATE_MIBS if mode == "rate" and snap else None,
    )
    lc.games.volume_made(ctx.tenant_id, ctx.game, volume)
    how = {"rate": f" at {INIT_RATE_MIBS} MiB/s", "fsr": " with fast snapshot restore"}.get(mode, "")
    lc.tell(
        data,
        f"⏳ Starting **{game.name}**: preparing its disk"
        + (f" from the latest snapshot{how}…" if snap else "…"),
    )
    return {"volume_id": volume, "zone": launch["zone"]}


@STEPS.step("start.volume_ready")
def start_volume_ready(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    game = game_of(ctx)
    state = ctx.lifecycle.gateways.ec2(game, actor=_ACTOR).volume_state(data["volume"]["volume_id"])
    return reached(state, ready="available", pending="creating", what="the volume", failed=VOLUME_FAILED)


@STEPS.step("start.attach")
def start_attach(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    lc, game = ctx.lifecycle, game_of(ctx)
    ec2 = lc.gateways.ec2(game, actor=_ACTOR)
    instance = ec2.instance(game.resources.instance_id or "")
    if instance is None or instance["State"]["Name"] == "pending":
        raise StepFailed(NOT_YET, "the instance is not running yet")
    if instance["State"]["Name"] != "running":
        raise StepFailed("gangway.InstanceFailed", f"the instance is {instance['State']['Name']}")
    if ec2.volume_state(game.resources.volume_id or "") == "available":
        ec2.attach(game.resources.volume_id or "", game.resources.instance_id or "")
    address = instance.get("PublicIpAddress") or instance.get("PrivateIpAddress")
    lc.games.reachable_at(ctx.tenant_id, ctx.game, address)
    lc.tell(data, f"⏳ Starting **{game.name}**: waiting for the server to report in…")
    return {"address": address}


@STEPS.step("start.wait_agent")
def start_wait_agent(ctx: StepContext, data: Mapping[str, Any]) -> None:
    """Keep the token: the agent's `ready` event finishes this step (on_ready, below).

    Then give the instance its role and IoT identity (instances/identity.py), which the agent needs
    to connect at all. The token is kept first and `status` asked last, so a `ready` that came before
    the token is heard again (on_status_reply, below). A failure here fails the step (Retry, then Compensate);
    issuing again is idempotent.
    """
    lc, game = ctx.lifecycle, game_of(ctx)
    lc.games.wait(ctx.tenant_id, ctx.game, ctx.token, trace=ctx.trace)
    identity = lc.gateways.identity(game, actor=_ACTOR)
    identity.give_role(game.resources.instance_id or "")
    identity.issue(game.resources.instance_id or "")
    lc.ask_agent(game, "status")  # an agent already up answers: its `ready` came too early


@STEPS.step("start.fsr_on")
def start_fsr_on(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Turn fast snapshot restore on for this start's snapshot in the instance's zone only.

    EBS refusing (a limit on enabled snapshots, say) does not fail the start: the volume is made
    without it and warms up as it is read, and the user is told."""
    lc, game = ctx.lifecycle, game_of(ctx)
    snap, zone = data["launch"]["snapshot_id"], data["launch"]["zone"]
    hourly = fsr_hourly(lc.tenants.require(game.tenant_id).region)
    lc.tell(
        data,
        f"⏳ Starting **{game.name}**: turning on fast snapshot restore in {zone} (about "
        f"${hourly:.2f} an hour while on, at least one hour; it is turned off once the disk exists)…",
    )
    try:
        state = lc.gateways.ec2(game, actor=_ACTOR).enable_fast_restore(snap, zone)
    except FastRestoreRefused as exc:
        lc.tell(data, f"⏳ Starting **{game.name}**: {exc}; its disk warms up as the game reads it…")
        return {"enabled": False, "problem": str(exc)[:300]}
    return {"enabled": True, "state": state}


@STEPS.step("start.fsr_ready")
def start_fsr_ready(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Wait (NOT_YET, retried by the workflow) until fast snapshot restore is `enabled`."""
    if not data["fsr"].get("enabled"):
        return {"state": "off"}
    lc, game = ctx.lifecycle, game_of(ctx)
    snap, zone = data["launch"]["snapshot_id"], data["launch"]["zone"]
    state = lc.gateways.ec2(game, actor=_ACTOR).fast_restore_state(snap, zone)
    return reached(
        state,
        ready="enabled",
        pending=("enabling", "optimizing"),
        what="fast snapshot restore",
        failed=FAST_RESTORE_FAILED,
    )


@STEPS.step("start.fsr_off")
def start_fsr_off(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The volume exists: turn fast snapshot restore off at once (it is billed while on)."""
    if not data["fsr"].get("enabled"):
        return {"disabled": False}
    lc, game = ctx.lifecycle, game_of(ctx)
    lc.gateways.ec2(game, actor=_ACTOR).disable_fast_restore(
        data["launch"]["snapshot_id"], data["launch"]["zone"]
    )
    return {"disabled": True}


@STEPS.step("start.preload_read")
def start_preload_read(ctx: StepContext, data: Mapping[str, Any]) -> None:
    """Ask the agent to read every block of the disk; `preload.done` finishes this step.

    The token waits with what it waits for and where to tell progress (`task_wait`), so only preload
    events end it (never a late `ready`), and progress edits are throttled (on_preload_progress, below).
    A repeated delivery sends the same request id, which the agent answers without reading twice."""
    lc, game = ctx.lifecycle, game_of(ctx)
    request = preload_request_id(ctx.execution)
    wait = {"for": "preload", "request": request, "reply": dict(data.get("reply") or {}), "told": -1.0}
    lc.games.wait(ctx.tenant_id, ctx.game, ctx.token, waiting_for=wait, trace=ctx.trace)
    lc.tell(data, f"⏳ Starting **{game.name}**: reading the disk… 0 %")
    lc.ask_agent(game, "disk.preload", {}, request_id=request)


@STEPS.step("start.game_start")
def start_game_start(ctx: StepContext, data: Mapping[str, Any]) -> None:
    """The disk is warm: ask the agent to start the game; its `game.start` reply finishes this step."""
    lc, game = ctx.lifecycle, game_of(ctx)
    request = game_start_request_id(ctx.execution)
    wait = {"for": "game.start", "request": request}
    lc.games.wait(ctx.tenant_id, ctx.game, ctx.token, waiting_for=wait, trace=ctx.trace)
    seconds = data.get("preloaded", {}).get("seconds")
    took = f" (read in {float(seconds):.0f} s)" if isinstance(seconds, int | float) else ""
    lc.tell(data, f"⏳ Starting **{game.name}**: the disk is read{took}; starting the game…")
    lc.ask_agent(game, "game.start", {}, request_id=request)


@STEPS.step("start.running")
def start_running(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    lc, game = ctx.lifecycle, game_of(ctx)
    if game.state is GameState.STARTING:
        game = lc.games.move(game, to=GameState.RUNNING)
    lc.games.end_wait(ctx.tenant_id, ctx.game)
    dns = lc.gateways.game_dns(game, actor=_ACTOR).publish(game.name, game.resources.address)  # never fails
    where = f"`{dns.name}` (`{game.resources.address}`)" if dns.name else f"`{game.resources.address}`"
    note = f" ({dns.problem}; use the address)" if dns.problem else ""
    fallback = str(data.get("launch", {}).get("note") or "")
    if data.get("edit"):
        text = up_for_editing(game, where + note)
    else:
        text = started_text(lc, game, where + note, data.get("reply")) or (
            f"🟢 **{game.name}** is up at {where}{note}. Use `/addip` if you can't connect."
        )
    lc.tell(data, text + (f" Note: {fallback}." if fallback else ""))
    return {"state": game.state.value}


# What a failed start says when the error carries no cause (the emulator drops causes).
_WORDS: Final = {
    "gangway.PreloadFailed": "the server could not read its disk",
    "States.HeartbeatTimeout": "the server stopped reporting while it read its disk",
    "gangway.AgentError": "the server's agent refused a request",
    FAST_RESTORE_FAILED: "fast snapshot restore did not turn on",
    VOLUME_FAILED: "its disk could not be made",
    IMAGE_REFUSED: "its machine image failed gangway's owner check or could not be found",
    "gangway.InstanceFailed": "its server stopped while starting",
}


def _explain(error: Mapping[str, Any]) -> str:
    if str(error.get("Error", "")) == "States.HeartbeatTimeout" or (
        not error.get("Cause") and str(error.get("Error", "")) in _WORDS
    ):
        return _WORDS[str(error["Error"])]
    return why(error)


@STEPS.step("start.compensate")
def start_compensate(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Undo a failed start: nothing orphaned (instance, volume, fast snapshot restore), the game
    STOPPED with its snapshot untouched."""
    lc, game = ctx.lifecycle, game_of(ctx)
    ec2 = lc.gateways.ec2(game, actor=_ACTOR)
    lc.gateways.game_dns(game, actor=_ACTOR).unpublish(game.name)  # start.running may have set it
    if game.resources.instance_id:
        ec2.terminate(game.resources.instance_id)
    warning = fast_restore_off(ec2, data)
    left = retire_identity(ctx, game, _ACTOR)
    # A volume kept from a failed stop holds the only copy of the newest data: keep it, detached. Launch
    # says whether it reused one; without its answer no volume was made yet, so any volume is the kept one.
    launch = data.get("launch")
    reused = bool(launch.get("reused")) if isinstance(launch, Mapping) else bool(game.resources.volume_id)
    if game.resources.volume_id and not reused:
        ec2.detach_and_delete_volume(game.resources.volume_id)
    game = lc.games.host_gone(
        ctx.tenant_id, ctx.game, kept_volume=game.resources.volume_id if reused else None
    )
    if game.state is GameState.RUNNING:  # start.running moved it, then its task failed: down via STOPPING
        game = lc.games.move(game, to=GameState.STOPPING)
    if game.state is not GameState.STOPPED:
        game = lc.games.move(game, to=GameState.STOPPED)
    error = data.get("error", {})
    why = no_room(lc, game, data) if error.get("Error") == CAPACITY else _explain(error)
    lc.tell(
        data,
        f"❌ **{game.name}** could not start: {why}. Nothing is left running; its data is as it "
        f"was. Try `/start` again in a few minutes.{left}{warning}",
    )
    return {"state": game.state.value}


# -- what the agent says while a game starts ---------------------------------------------------------


@AGENT_EVENTS.on("ready")
def on_ready(event: AgentEvent, lc: Lifecycle) -> None:
    """A starting game's agent is up: finish the StartGame workflow's wait."""
    game = lc.games.get(event.tenant_id, event.game)
    if (
        game is None
        or game.state is not GameState.STARTING
        or not game.wait.task_token
        or game.wait.task_wait
    ):
        return  # a token that waits for something else (a preload, `game.start`) is not the agent's `ready`
    lc.games.end_wait(event.tenant_id, event.game)
    lc.complete(
        game.wait.task_token,
        {"agent": str(event.body.get("version", "")), "game_running": bool(event.body.get("game_running"))},
    )


@AGENT_EVENTS.on("status.reply")
def on_status_reply(event: AgentEvent, lc: Lifecycle) -> None:
    """An agent answering `status` is up: the same as its `ready` for a starting game.

    The agent says `ready` once, when it connects. In AWS that is minutes after start.wait_agent kept
    its token (the instance boots, then fetches the identity that step makes), but an agent that is up
    sooner (the local stack starts one as soon as the instance runs) would be ignored and the start
    would time out. So start.wait_agent asks for `status` after keeping its token, and a `status` reply
    while the game is STARTING with a token counts as that `ready`.
    """
    game, agent = event.body.get("game"), event.body.get("agent")
    running = bool(game.get("running")) if isinstance(game, dict) else False
    version = str(agent.get("version", "")) if isinstance(agent, dict) else ""
    on_ready(replace(event, body={"version": version, "game_running": running}), lc)


# -- the `read` preload: the token waits with `task_wait` saying for what ---------------------------------


def _waiting(lc: Lifecycle, event: AgentEvent, kind: str) -> tuple[Any, dict[str, Any]] | None:
    """The starting game and its wait, if its task token waits for `kind` (else None: not for us)."""
    game = lc.games.get(event.tenant_id, event.game)
    if (
        game is None
        or game.state is not GameState.STARTING
        or not game.wait.task_token
        or not game.wait.task_wait
    ):
        return None
    try:
        wait = json.loads(game.wait.task_wait)
    except ValueError:
        return None
    return (game, wait) if isinstance(wait, dict) and wait.get("for") == kind else None


@AGENT_EVENTS.on("preload.progress")
def on_preload_progress(event: AgentEvent, lc: Lifecycle) -> None:
    """Tell how far the disk is read, throttled: every 10 % or 20 s, not every 5 s report; each report
    is also the wait's heartbeat."""
    found = _waiting(lc, event, "preload")
    percent = event.body.get("percent")
    if found is None or not isinstance(percent, int | float) or isinstance(percent, bool):
        return
    if not 0 <= percent <= 100:  # NaN and ±Infinity too (int() of them raised: a retry per report)
        return
    game, wait = found
    try:  # PreloadRead's HeartbeatSeconds: a silent agent fails the start in minutes, not hours
        lc.heartbeat(game.wait.task_token)
    except Exception:
        log.warning("%s/%s: preload heartbeat not taken", event.tenant_id, event.game, exc_info=True)
    now = time.time()
    told, at = float(wait.get("told", -1.0)), float(wait.get("at", 0.0))
    if percent < told + _TELL_STEP_PERCENT and now - at < _TELL_EVERY_S and percent < 100:
        return
    wait |= {"told": float(percent), "at": now}
    lc.games.note_wait(event.tenant_id, event.game, wait)
    size = event.body.get("bytes_total")
    of = f" of {size / 2**30:.1f} GiB" if isinstance(size, int) and 0 < size < 2**63 else ""
    lc.tell(
        {"reply": wait.get("reply")},
        f"⏳ Starting **{game.name}**: reading the disk{of}… {min(max(int(percent), 0), 100)} %",
    )


@AGENT_EVENTS.on("preload.done")
def on_preload_done(event: AgentEvent, lc: Lifecycle) -> None:
    """Every block was read: the start goes on (it asks the agent to start the game)."""
    found = _waiting(lc, event, "preload")
    if found is None:
        return
    game, _ = found
    lc.games.end_wait(event.tenant_id, event.game)
    seconds = event.body.get("seconds")
    lc.complete(
        game.wait.task_token,
        {
            "bytes_read": event.body.get("bytes_read"),
            "seconds": seconds if isinstance(seconds, int | float) else None,
        },
    )


@AGENT_EVENTS.on("agent.error")
@AGENT_EVENTS.on("error")
def on_preload_failed(event: AgentEvent, lc: Lifecycle) -> None:
    """The preload could not start (an `error` reply to its request) or failed while reading (an
    `agent.error` the agent says is the preload's): the start fails and is undone."""
    found = _waiting(lc, event, "preload")
    if found is None:
        return
    game, wait = found
    message = str(event.body.get("message", ""))
    ours = event.id == wait.get("request") if event.type == "error" else message.startswith("preload")
    if not ours:
        return
    lc.games.end_wait(event.tenant_id, event.game)
    code = str(event.body.get("code", ""))
    lc.fail(
        game.wait.task_token,
        "gangway.PreloadFailed",
        f"the server could not read its disk ({code}: {message})",
    )


@AGENT_EVENTS.on("game.start.reply")
@AGENT_EVENTS.on("error")
def on_start_reply(event: AgentEvent, lc: Lifecycle) -> None:
    """The agent started the game after a preload, or could not: only the reply to that request counts."""
    found = _waiting(lc, event, "game.start")
    if found is None or event.id != found[1].get("request"):
        return
    game, _ = found
    lc.games.end_wait(event.tenant_id, event.game)
    output = {"pid": event.body.get("pid"), "started": event.body.get("started")}
    finish_wait(lc, event, game.wait.task_token, output)

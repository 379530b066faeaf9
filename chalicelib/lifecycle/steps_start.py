"""The steps of the StartGame workflow (chalicelib/workflows/start-game.asl.json).

Capacity first (DESIGN.md §2): launch the instance wherever AWS has room (the game's instance type,
then its fallback types, in every zone; Spot first when the game wants it, on-demand after if it
allows), then make the data volume from the newest snapshot in that instance's zone, with the game's
preload mode (steps_preload.py), attach it, and wait for the agent. EditGame runs the same steps with
`$.edit` set: the agent's autostart off and no preloading.

Every step is idempotent (SQS may deliver it twice) and records what it made on the game row, so
`start.compensate` undoes exactly that: nothing orphaned, never fast snapshot restore left on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from chalicelib.games import Game, GameState
from chalicelib.instances import CapacityError, Ec2Gateway
from chalicelib.instances.ec2 import placements
from chalicelib.lifecycle import identity
from chalicelib.lifecycle.deps import Lifecycle
from chalicelib.lifecycle.dns import publish, unpublish
from chalicelib.lifecycle.progress import tell
from chalicelib.lifecycle.steps import CAPACITY, NOT_YET, _deps, _game, _retire_identity, _user_data, _why
from chalicelib.lifecycle.steps_create import game_group
from chalicelib.lifecycle.steps_preload import INIT_RATE_MIBS, fast_restore_off, preload_mode
from chalicelib.tenancy import plan_named
from chalicelib.workflows import STEPS, StepContext, StepFailed

__all__ = ["EDIT_HOWTO"]

log = logging.getLogger(__name__)

_ACTOR: Final = "workflow:start"
# What /editgame and EditGame's last message say (the agent's launch command is its data disk's
# /game/start.sh: lifecycle/bootstrap.py; SFTP's root is the data disk, starting in /game).
EDIT_HOWTO: Final = (
    "Install or change the server: upload it with `/files game:{game}` (SFTP, into `/game`) or set it up "
    "from `/terminal game:{game}` (it lives in `/srv/gangway/game`), with a `start.sh` there that runs it "
    "in the foreground. `/stop game:{game}` snapshots everything (what you installed is kept) and stops "
    "the server; `/start` then runs the game. Without players it stops by itself after 3 hours."
)


def _kept_volume(ec2: Ec2Gateway, game: Game) -> str | None:
    """A volume kept by a failed stop (it holds the newest data, unsnapshotted): the start reuses it."""
    if game.volume_id and game.zone and ec2.volume_state(game.volume_id) == "available":
        return game.volume_id
    return None


def _types(deps: Lifecycle, game: Game) -> list[str]:
    """The game's instance type, then its fallback types the plan still allows (in that order).

    Raises:
        Forbidden: the plan does not allow the game's own type any more.
    """
    plan = plan_named(deps.tenants.require(game.tenant_id).plan)
    plan.check_instance(game.instance_type)
    allowed = []
    for t in game.fallback_types:
        try:
            plan.check_instance(t)
        except Exception:
            log.info("%s/%s: fallback %s is over the plan; skipped", game.tenant_id, game.name, t)
            continue
        allowed.append(t)
    return list(dict.fromkeys([game.instance_type, *allowed]))


def _words(types: Sequence[str]) -> str:
    return " or ".join(f"`{t}`" for t in types)


def _note(game: Game, types: Sequence[str], *, spot: bool, instance_type: str, where: str) -> str:
    """Which fallback this launch took, in words (empty when it got what the game asked for)."""
    notes = []
    if game.spot and not spot:
        notes.append(f"no Spot room for {_words(types)} {where}; started on-demand")
    if instance_type != game.instance_type:
        market = "Spot" if spot else "on-demand"
        notes.append(f"no {market} room for `{game.instance_type}` {where}; started a `{instance_type}`")
    return "; ".join(notes)


@STEPS.step("start.launch")
def start_launch(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Launch where AWS has room: every (type, zone) of the game in the market `data.market` says.

    A volume kept from a failed stop pins the launch to its zone. Raises StepFailed(CAPACITY) when no
    option had room: the workflow's CapacityFallback then tries on-demand if the game allows.
    """
    deps, game = _deps(ctx), _game(ctx)
    ec2 = deps.ec2(game, actor=_ACTOR)
    kept = _kept_volume(ec2, game)
    # EditGame (data.edit) brings the host up without the game, to install it: nothing to preload.
    edit = bool(data.get("edit"))
    mode = "off" if edit else preload_mode(game, reused=bool(kept))
    types = _types(deps, game)
    where = f"in {game.zone} (where its unsaved disk is)" if kept else "in any zone"
    common = {"reused": bool(kept), "preload": mode, "snapshot_id": game.snapshot_id}
    if game.instance_id:  # a repeated delivery: this start already launched it
        found = ec2.instance(game.instance_id) or {}
        spot = found.get("InstanceLifecycle") == "spot"
        kind = str(found.get("InstanceType", game.instance_type))
        note = _note(game, types, spot=spot, instance_type=kind, where=where)
        again = {"instance_id": game.instance_id, "zone": game.zone, "instance_type": kind, "spot": spot}
        return again | common | {"note": note}
    spot = data.get("market") == "spot"
    zones = [game.zone] if kept and game.zone else ec2.launch_zones()
    tell(
        deps,
        data,
        f"⏳ Starting **{game.name}**: looking for {'Spot ' if spot else ''}room for {_words(types)}…",
    )
    try:
        launch = ec2.run(
            placements(types, zones),
            spot=spot,
            user_data=_user_data(ctx, game, volume_id=kept, autostart=mode != "read", editing=edit),
            token=f"{ctx.execution}-{data.get('market', 'od')}",
            security_group_ids=[game_group(deps, game, actor=_ACTOR)],
        )
    except CapacityError as exc:
        log.info("%s/%s: %s", ctx.tenant_id, ctx.game, exc)
        market = "Spot" if spot else "on-demand"
        raise StepFailed(CAPACITY, f"no {market} room for {_words(types)} {where}") from exc
    deps.games.record(
        ctx.tenant_id, ctx.game, instance_id=launch.instance_id, zone=launch.zone, editing=edit or None
    )
    note = _note(game, types, spot=launch.spot, instance_type=launch.instance_type, where=where)
    tell(
        deps,
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
    deps, game = _deps(ctx), _game(ctx)
    launch = data["launch"]
    if launch["reused"]:
        return {"volume_id": game.volume_id, "zone": launch["zone"], "reused": True}
    snap, mode = launch["snapshot_id"], launch["preload"]
    volume = deps.ec2(game, actor=_ACTOR).create_volume(
        zone=launch["zone"],
        size_gb=game.disk_gb,
        snapshot_id=snap,
        token=f"{ctx.execution}-volume",  # a repeated delivery gets the same volume back
        init_rate=INIT_RATE_MIBS if mode == "rate" and snap else None,
    )
    deps.games.record(ctx.tenant_id, ctx.game, volume_id=volume)
    how = {"rate": f" at {INIT_RATE_MIBS} MiB/s", "fsr": " with fast snapshot restore"}.get(mode, "")
    tell(
        deps,
        data,
        f"⏳ Starting **{game.name}**: preparing its disk"
        + (f" from the latest snapshot{how}…" if snap else "…"),
    )
    return {"volume_id": volume, "zone": launch["zone"]}


@STEPS.step("start.volume_ready")
def start_volume_ready(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    game = _game(ctx)
    state = _deps(ctx).ec2(game, actor=_ACTOR).volume_state(data["volume"]["volume_id"])
    if state == "creating":
        raise StepFailed(NOT_YET, "the volume is still being created")
    if state != "available":
        raise StepFailed("gangway.VolumeFailed", f"the volume is {state}")
    return {"state": state}


@STEPS.step("start.attach")
def start_attach(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    deps, game = _deps(ctx), _game(ctx)
    ec2 = deps.ec2(game, actor=_ACTOR)
    instance = ec2.instance(game.instance_id or "")
    if instance is None or instance["State"]["Name"] == "pending":
        raise StepFailed(NOT_YET, "the instance is not running yet")
    if instance["State"]["Name"] != "running":
        raise StepFailed("gangway.InstanceFailed", f"the instance is {instance['State']['Name']}")
    if ec2.volume_state(game.volume_id or "") == "available":
        ec2.attach(game.volume_id or "", game.instance_id or "")
    address = instance.get("PublicIpAddress") or instance.get("PrivateIpAddress")
    deps.games.record(ctx.tenant_id, ctx.game, address=address)
    tell(deps, data, f"⏳ Starting **{game.name}**: waiting for the server to report in…")
    return {"address": address}


@STEPS.step("start.wait_agent")
def start_wait_agent(ctx: StepContext, data: Mapping[str, Any]) -> None:
    """Keep the token: the agent's `ready` event finishes this step (lifecycle/agent_events.py).

    Then give the instance its role and IoT identity (lifecycle/identity.py), which the agent needs
    to connect at all. The token is kept first and `status` asked last, so a `ready` that came before
    the token is heard again (agent_seen.py). A failure here fails the step (Retry, then Compensate);
    issuing again is idempotent.
    """
    deps, game = _deps(ctx), _game(ctx)
    deps.games.record(ctx.tenant_id, ctx.game, task_token=ctx.token, task_wait=None)
    s = ctx.services.settings
    identity.give_role(deps, game, stage=s.stage, actor=_ACTOR)
    identity.issue(deps, game, stage=s.stage, iot_region=s.region, actor=_ACTOR)
    deps.ask_agent(game, "status")  # an agent already up answers: its `ready` came too early (agent_seen.py)


@STEPS.step("start.running")
def start_running(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    deps, game = _deps(ctx), _game(ctx)
    if game.state is GameState.STARTING:
        game = deps.games.transition(
            ctx.tenant_id, ctx.game, to=GameState.RUNNING, expected_version=game.version
        )
    deps.games.record(ctx.tenant_id, ctx.game, task_token=None, task_wait=None)
    dns = publish(deps, game, actor=_ACTOR)  # never fails the start (lifecycle/dns.py)
    where = f"`{dns.name}` (`{game.address}`)" if dns.name else f"`{game.address}`"
    note = f" ({dns.problem}; use the address)" if dns.problem else ""
    fallback = str(data.get("launch", {}).get("note") or "")
    if data.get("edit"):
        text = (
            f"🛠️ **{game.name}** is up for editing at {where}{note}, without the game. "
            + EDIT_HOWTO.format(game=game.name)
        )
    else:
        text = f"🟢 **{game.name}** is up at {where}{note}. Use `/addip` if you can't connect."
    tell(deps, data, text + (f" Note: {fallback}." if fallback else ""))
    return {"state": game.state.value}


# What a failed start says when the error carries no cause (the emulator drops causes).
_WORDS: Final = {
    "gangway.PreloadFailed": "the server could not read its disk",
    "States.HeartbeatTimeout": "the server stopped reporting while it read its disk",
    "gangway.AgentError": "the server's agent refused a request",
    "gangway.FastRestoreFailed": "fast snapshot restore did not turn on",
    "gangway.VolumeFailed": "its disk could not be made",
    "gangway.InstanceFailed": "its server stopped while starting",
}


def _explain(error: Mapping[str, Any]) -> str:
    if str(error.get("Error", "")) == "States.HeartbeatTimeout" or (
        not error.get("Cause") and str(error.get("Error", "")) in _WORDS
    ):
        return _WORDS[str(error["Error"])]
    return _why(error)


def _no_room(deps: Lifecycle, game: Game, data: Mapping[str, Any]) -> str:
    """Why a start found no capacity, from what it tried (not from the error's cause: the emulator
    drops causes, and AWS's is a list of every attempt)."""
    try:
        types = _words(_types(deps, game))
    except Exception:
        types = f"`{game.instance_type}`"
    where = f"in {game.zone} (where its unsaved disk is)" if game.volume_id else "in any zone"
    if not data.get("spot"):
        market = "on-demand"
    elif data.get("on_demand_fallback"):
        market = "Spot or on-demand"
    else:
        market = "Spot"
    only = " (this game runs on Spot only)" if data.get("spot") and not data.get("on_demand_fallback") else ""
    return f"AWS had no capacity for it right now: no {market} room for {types} {where}{only}"


@STEPS.step("start.compensate")
def start_compensate(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Undo a failed start: nothing orphaned (instance, volume, fast snapshot restore), the game
    STOPPED with its snapshot untouched."""
    deps, game = _deps(ctx), _game(ctx)
    ec2 = deps.ec2(game, actor=_ACTOR)
    unpublish(deps, game, actor=_ACTOR)  # start.running may have set the name before failing
    if game.instance_id:
        ec2.terminate(game.instance_id)
    warning = fast_restore_off(ec2, data)
    left = _retire_identity(ctx, game, _ACTOR)
    # A volume kept from a failed stop holds the only copy of the newest data: keep it, detached. Launch
    # says whether it reused one; without its answer no volume was made yet, so any volume is the kept one.
    launch = data.get("launch")
    reused = bool(launch.get("reused")) if isinstance(launch, Mapping) else bool(game.volume_id)
    if game.volume_id and not reused:
        ec2.detach_and_delete_volume(game.volume_id)
    game = deps.games.record(
        ctx.tenant_id,
        ctx.game,
        instance_id=None,
        volume_id=game.volume_id if reused else None,
        address=None,
        task_token=None,
        task_wait=None,
        editing=None,
    )
    if game.state is GameState.RUNNING:  # start.running moved it, then its task failed: down via STOPPING
        game = deps.games.transition(
            ctx.tenant_id, ctx.game, to=GameState.STOPPING, expected_version=game.version
        )
    if game.state is not GameState.STOPPED:
        game = deps.games.transition(
            ctx.tenant_id, ctx.game, to=GameState.STOPPED, expected_version=game.version
        )
    error = data.get("error", {})
    why = _no_room(deps, game, data) if error.get("Error") == CAPACITY else _explain(error)
    tell(
        deps,
        data,
        f"❌ **{game.name}** could not start: {why}. Nothing is left running; its data is as it "
        f"was. Try `/start` again in a few minutes.{left}{warning}",
    )
    return {"state": game.state.value}

"""The steps of the StartGame and StopGame workflows (chalicelib/workflows/*.asl.json).

Snapshots are the source of truth (DESIGN.md §2): start = volume from the newest snapshot → instance
(Spot or on-demand, falling back as the game allows) → attach → the agent says it is ready → RUNNING.
Stop = the agent stops the game and flushes → snapshot → wait until complete → delete the volume and
terminate the instance → STOPPED. Every step is idempotent (SQS may deliver it twice) and records what
it created on the game row, so the compensation steps can undo exactly that.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from chalicelib.errors import ValidationError
from chalicelib.games import GameState
from chalicelib.instances import CapacityError, Placement
from chalicelib.lifecycle import agent_seen, identity  # noqa: F401 - agent_seen registers a handler
from chalicelib.lifecycle.bootstrap import Bootstrap, render
from chalicelib.lifecycle.deps import Lifecycle
from chalicelib.lifecycle.dns import publish, unpublish
from chalicelib.lifecycle.game_logs import ensure_log_group
from chalicelib.lifecycle.progress import tell
from chalicelib.lifecycle.tools import port_numbers
from chalicelib.tenancy import plan_named
from chalicelib.workflows import STEPS, StepContext, StepFailed

__all__ = ["NOT_YET", "stop_request_id"]

NOT_YET: Final = "gangway.NotYet"
CAPACITY: Final = "gangway.Capacity"


def stop_request_id(execution: str) -> str:
    """The id of StopGame's `game.stop` request: only its reply (same id) may finish the wait."""
    return f"{execution}-stop"


def _deps(ctx: StepContext) -> Lifecycle:
    deps: Lifecycle = ctx.services.lifecycle()
    return deps


def _game(ctx: StepContext) -> Any:
    game = _deps(ctx).games.get(ctx.tenant_id, ctx.game)
    if game is None:
        raise StepFailed("gangway.Gone", f"the game {ctx.game} no longer exists")
    return game


def _user_data(ctx: StepContext, game: Any) -> str:
    """The first-boot script (lifecycle/bootstrap.py); the IoT identity follows in start.wait_agent.

    The game's opened ports go to the agent's firewall and player count; its log group is made here
    (game_logs.py) so the instance role needs no right to make one.
    """
    s = ctx.services.settings
    try:
        tcp, udp = port_numbers(game.ports)
    except ValidationError as exc:
        raise StepFailed("gangway.BadPorts", f"{exc} Fix the game's ports with /closeport.") from exc
    return render(
        Bootstrap(
            tenant_id=ctx.tenant_id,
            game=ctx.game,
            volume_id=game.volume_id or None,
            iot_endpoint=identity.endpoint(_deps(ctx), game, settings=s, actor="workflow:start"),
            client_id=identity.thing_name(s.stage, ctx.tenant_id, ctx.game),
            parameter_prefix=identity.parameter_prefix(s.stage, ctx.tenant_id, ctx.game),
            agent_package=s.agent_package,
            tcp_ports=tcp,
            udp_ports=udp,
            log_group=ensure_log_group(_deps(ctx), game, stage=s.stage, actor="workflow:start"),
        )
    )


def _retire_identity(ctx: StepContext, game: Any, actor: str) -> str:
    """Remove the instance's IoT identity and key parameters; never fails the step, says what was left."""
    s = ctx.services.settings
    problems = identity.retire(_deps(ctx), game, stage=s.stage, iot_region=s.region, actor=actor)
    return f" Note: its server identity was not fully removed ({'; '.join(problems)})." if problems else ""


# -- StartGame ------------------------------------------------------------------------------------------


@STEPS.step("start.volume")
def start_volume(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Reuse the game's unsnapshotted volume if one survived a failed stop; else one from the snapshot."""
    deps, game = _deps(ctx), _game(ctx)
    ec2 = deps.ec2(game, actor="workflow:start")
    if game.volume_id and ec2.volume_state(game.volume_id) == "available":
        return {"volume_id": game.volume_id, "zone": game.zone, "reused": True}
    zone = ec2.zones()[0]
    tell(
        ctx.services.lifecycle(),
        data,
        f"⏳ Starting **{game.name}**: preparing its disk"
        + (" from the latest snapshot…" if game.snapshot_id else "…"),
    )
    volume = ec2.create_volume(
        zone=zone,
        size_gb=game.disk_gb,
        snapshot_id=game.snapshot_id,
        token=f"{ctx.execution or game.name}-volume",
        init_rate=200 if game.preload == "rate" else None,
    )
    deps.games.record(ctx.tenant_id, ctx.game, volume_id=volume, zone=zone)
    return {"volume_id": volume, "zone": zone}


@STEPS.step("start.volume_ready")
def start_volume_ready(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    game = _game(ctx)
    state = _deps(ctx).ec2(game, actor="workflow:start").volume_state(data["volume"]["volume_id"])
    if state == "creating":
        raise StepFailed(NOT_YET, "the volume is still being created")
    if state != "available":
        raise StepFailed("gangway.VolumeFailed", f"the volume is {state}")
    return {"state": state}


@STEPS.step("start.launch")
def start_launch(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Launch in the volume's zone: Spot first when asked (`data.market == "spot"`), else on-demand."""
    deps, game = _deps(ctx), _game(ctx)
    if game.instance_id:
        return {"instance_id": game.instance_id}
    spot = data.get("market") == "spot"
    plan = plan_named(deps.tenants.require(ctx.tenant_id).plan)
    plan.check_instance(game.instance_type)
    tell(
        deps,
        data,
        f"⏳ Starting **{game.name}**: launching a {'Spot ' if spot else ''}`{game.instance_type}`…",
    )
    try:
        launch = deps.ec2(game, actor="workflow:start").run(
            [Placement(data["volume"]["zone"], game.instance_type)],
            spot=spot,
            user_data=_user_data(ctx, game),
            token=f"{ctx.execution}-{data.get('market', 'od')}",
        )
    except CapacityError as exc:
        raise StepFailed(CAPACITY, str(exc)) from exc
    deps.games.record(ctx.tenant_id, ctx.game, instance_id=launch.instance_id)
    return {"instance_id": launch.instance_id, "spot": launch.spot}


@STEPS.step("start.attach")
def start_attach(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    deps, game = _deps(ctx), _game(ctx)
    ec2 = deps.ec2(game, actor="workflow:start")
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
    deps.games.record(ctx.tenant_id, ctx.game, task_token=ctx.token)
    s = ctx.services.settings
    identity.give_role(deps, game, stage=s.stage, actor="workflow:start")
    identity.issue(deps, game, stage=s.stage, iot_region=s.region, actor="workflow:start")
    deps.ask_agent(game, "status")  # an agent already up answers: its `ready` came too early (agent_seen.py)


@STEPS.step("start.running")
def start_running(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    deps, game = _deps(ctx), _game(ctx)
    if game.state is GameState.STARTING:
        game = deps.games.transition(
            ctx.tenant_id, ctx.game, to=GameState.RUNNING, expected_version=game.version
        )
    deps.games.record(ctx.tenant_id, ctx.game, task_token=None)
    dns = publish(deps, game, actor="workflow:start")  # never fails the start (lifecycle/dns.py)
    where = f"`{dns.name}` (`{game.address}`)" if dns.name else f"`{game.address}`"
    note = f" ({dns.problem}; use the address)" if dns.problem else ""
    tell(deps, data, f"🟢 **{game.name}** is up at {where}{note}. Use `/addip` if you can't connect.")
    return {"state": game.state.value}


@STEPS.step("start.compensate")
def start_compensate(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Undo a failed start: nothing orphaned, the game STOPPED with its snapshot untouched."""
    deps, game = _deps(ctx), _game(ctx)
    ec2 = deps.ec2(game, actor="workflow:start")
    unpublish(deps, game, actor="workflow:start")  # start.running may have set the name before failing
    if game.instance_id:
        ec2.terminate(game.instance_id)
    left = _retire_identity(ctx, game, "workflow:start")
    # A volume reused from a failed stop holds the only copy of the newest data: keep it, detached.
    reused = bool(data.get("volume", {}).get("reused"))
    if game.volume_id and not reused:
        ec2.detach_and_delete_volume(game.volume_id)
    game = deps.games.record(
        ctx.tenant_id,
        ctx.game,
        instance_id=None,
        volume_id=game.volume_id if reused else None,
        address=None,
        task_token=None,
    )
    if game.state is not GameState.STOPPED:
        game = deps.games.transition(
            ctx.tenant_id, ctx.game, to=GameState.STOPPED, expected_version=game.version
        )
    error = data.get("error", {})
    why = _why(error)
    tell(
        deps,
        data,
        f"❌ **{game.name}** could not start: {why}. Nothing is left running; its data is as it "
        f"was. Try `/start` again in a few minutes.{left}",
    )
    return {"state": game.state.value}


def _why(error: Mapping[str, Any]) -> str:
    kind = str(error.get("Error", ""))
    if kind == CAPACITY:
        return "AWS had no capacity for this instance type right now"
    if kind == "States.Timeout":
        return "the server did not report in time"
    return str(error.get("Cause", kind or "an unknown error"))[:300]


# -- StopGame -------------------------------------------------------------------------------------------


@STEPS.step("stop.save")
def stop_save(ctx: StepContext, data: Mapping[str, Any]) -> None:
    """Ask the agent to stop the game (it saves and flushes); its reply finishes this step."""
    deps, game = _deps(ctx), _game(ctx)
    tell(deps, data, f"⏳ Stopping **{game.name}**: saving the world…")
    deps.games.record(ctx.tenant_id, ctx.game, task_token=ctx.token)
    deps.ask_agent(game, "game.stop", {}, request_id=stop_request_id(ctx.execution))


@STEPS.step("stop.snapshot")
def stop_snapshot(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    deps, game = _deps(ctx), _game(ctx)
    deps.games.record(ctx.tenant_id, ctx.game, task_token=None)
    if not game.volume_id:
        return {"snapshot_id": game.snapshot_id}
    tell(deps, data, f"⏳ Stopping **{game.name}**: taking a snapshot of its data…")
    snap = deps.ec2(game, actor="workflow:stop").snapshot(
        game.volume_id, description=f"gangway {ctx.tenant_id}/{ctx.game} at {int(time.time())}"
    )
    return {"snapshot_id": snap}


@STEPS.step("stop.snapshot_ready")
def stop_snapshot_ready(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    snap = data["snapshot"]["snapshot_id"]
    if not snap:
        return {"state": "none"}
    state = _deps(ctx).ec2(_game(ctx), actor="workflow:stop").snapshot_state(snap)
    if state == "pending":
        raise StepFailed(NOT_YET, "the snapshot is still being taken")
    if state != "completed":
        raise StepFailed("gangway.SnapshotFailed", f"the snapshot is {state}")
    return {"state": state}


@STEPS.step("stop.cleanup")
def stop_cleanup(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The snapshot is complete: only now delete the volume, terminate, and prune old snapshots."""
    deps, game = _deps(ctx), _game(ctx)
    ec2 = deps.ec2(game, actor="workflow:stop")
    snap = data["snapshot"]["snapshot_id"] or game.snapshot_id
    # The complete snapshot is the game's data now: record it before anything is deleted.
    game = deps.games.record(ctx.tenant_id, ctx.game, snapshot_id=snap)
    dns = unpublish(deps, game, actor="workflow:stop")  # never fails the stop (lifecycle/dns.py)
    if game.instance_id:
        ec2.terminate(game.instance_id)
    left = _retire_identity(ctx, game, "workflow:stop")
    if game.volume_id and data["snapshot"]["snapshot_id"]:
        ec2.detach_and_delete_volume(game.volume_id)
    game = deps.games.record(
        ctx.tenant_id,
        ctx.game,
        snapshot_id=snap,
        instance_id=None,
        volume_id=None,
        address=None,
        task_token=None,
    )
    keep = plan_named(deps.tenants.require(ctx.tenant_id).plan).snapshot_retention
    kept = 0
    for s in ec2.snapshots():
        manual = any(t["Key"] == "gangway:role" and t["Value"] == "manual-backup" for t in s.get("Tags", []))
        if manual or s["SnapshotId"] == snap:
            continue
        kept += 1
        if kept >= keep:  # the newest complete one (snap) is never counted, so never deleted
            ec2.delete_snapshot(s["SnapshotId"])
    if game.state is not GameState.STOPPED:
        game = deps.games.transition(
            ctx.tenant_id, ctx.game, to=GameState.STOPPED, expected_version=game.version
        )
    note = f" Note: {dns.problem}." if dns.problem else ""
    tell(deps, data, f"⚪ **{game.name}** stopped and saved (snapshot `{snap}`).{note}{left}")
    return {"state": game.state.value, "snapshot_id": snap}


@STEPS.step("stop.rescue")
def stop_rescue(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The snapshot failed: stop paying for the instance, but keep the volume (it holds the only copy
    of the newest data); the next start reuses it and the next stop snapshots it."""
    deps, game = _deps(ctx), _game(ctx)
    unpublish(deps, game, actor="workflow:stop")
    if game.instance_id:
        deps.ec2(game, actor="workflow:stop").terminate(game.instance_id)
    left = _retire_identity(ctx, game, "workflow:stop")
    game = deps.games.record(ctx.tenant_id, ctx.game, instance_id=None, address=None, task_token=None)
    if game.state is not GameState.STOPPED:
        game = deps.games.transition(
            ctx.tenant_id, ctx.game, to=GameState.STOPPED, expected_version=game.version
        )
    tell(
        deps,
        data,
        f"⚠️ **{game.name}** stopped, but its snapshot failed ({_why(data.get('error', {}))}). "
        f"Its data volume is kept and will be used and snapshotted next time.{left}",
    )
    return {"state": game.state.value}

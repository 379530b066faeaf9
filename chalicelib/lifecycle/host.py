"""What StartGame, EditGame and StopGame share about a game's host: its first-boot script, its
security group at launch, and retiring its server identity when it goes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from chalicelib.config import Settings
from chalicelib.errors import ValidationError
from chalicelib.games import Game, GameState
from chalicelib.instances import NoWheelhouse, error_code
from chalicelib.lifecycle.bootstrap import Bootstrap, render
from chalicelib.lifecycle.capacity import check_plan
from chalicelib.lifecycle.catalogue_game import resolved
from chalicelib.lifecycle.collaborators import Lifecycle
from chalicelib.lifecycle.tools import port_numbers
from chalicelib.lifecycle.workflow import begin_transition
from chalicelib.workflows import StepContext, StepFailed

__all__ = [
    "AGENT_TIMEOUT_SECONDS",
    "EDIT_IDLE_STOP_S",
    "EDIT_IDLE_WARN_S",
    "begin_host",
    "game_group",
    "idle_after",
    "retire_identity",
    "user_data",
]

# How long a new host may take to boot and its agent to report in (StartGame's and EditGame's wait).
AGENT_TIMEOUT_SECONDS: Final = 600

log = logging.getLogger(__name__)

# An editing host runs no game, so nobody counts as a player while an admin installs it over SFTP or
# the terminal: it gets hours, not the game's minutes, before the agent calls it idle (a forgotten one
# still stops).
EDIT_IDLE_WARN_S: Final = 2 * 3600
EDIT_IDLE_STOP_S: Final = 3 * 3600


def idle_after(game: Game, settings: Settings) -> tuple[int, int]:
    """Seconds without players before the agent warns, and before it shuts the game down: the game's
    own minutes (the warning at two thirds of them), else the stage's defaults."""
    if game.settings.idle_minutes is None:
        return settings.idle_warn_s, settings.idle_stop_s
    stop = game.settings.idle_minutes * 60
    return stop * 2 // 3, stop


def begin_host(
    lc: Lifecycle, game: Game, workflow: str, *, reply: Mapping[str, Any] | None, agent_timeout: int = 0
) -> str:
    """STOPPED → STARTING and the execution that brings the host up (StartGame or EditGame).

    Raises:
        Conflict: the game is not stopped any more (someone else started it).  Forbidden: plan limit.
    """
    check_plan(lc, game)
    return begin_transition(
        lc,
        game,
        GameState.STARTING,
        workflow,
        reply,
        spot=game.settings.spot,
        on_demand_fallback=game.settings.on_demand_fallback,
        agent_timeout=agent_timeout or AGENT_TIMEOUT_SECONDS,
    )


def user_data(
    ctx: StepContext,
    game: Game,
    *,
    volume_id: str | None = None,
    autostart: bool = True,
    editing: bool = False,
) -> str:
    """The first-boot script (lifecycle/bootstrap.py); the IoT identity follows in start.wait_agent.

    The agent comes from the deployment's wheelhouse (a fresh presigned URL per launch,
    instances/wheelhouse.py).

    The game's opened ports go to the agent's firewall and player count; its log group is made here
    (game_logs.py) so the instance role needs no right to make one. The instance is launched before its
    volume exists (capacity first), so `volume_id` is only given for a volume kept from a failed stop;
    `autostart` is false when the agent must read the disk before the game starts, or when `editing`.
    """
    lc = ctx.lifecycle
    identity = lc.gateways.identity(game, actor="workflow:start")
    try:
        tcp, udp = port_numbers(game.settings.ports)
    except ValidationError as exc:
        raise StepFailed("gangway.BadPorts", f"{exc} Fix the game's ports with /closeport.") from exc
    try:
        agent = lc.wheelhouse().install()
    except NoWheelhouse as exc:
        raise StepFailed("gangway.NoAgent", f"{exc}. The operator must run make deploy again.") from exc
    warn, stop = idle_after(game, lc.settings)
    boot = Bootstrap(
        tenant_id=ctx.tenant_id,
        game=ctx.game,
        volume_id=volume_id,
        autostart=autostart and not editing,
        iot_endpoint=identity.endpoint(),
        client_id=identity.thing,
        parameter_prefix=identity.prefix,
        agent=agent,
        tcp_ports=tcp,
        udp_ports=udp,
        log_group=lc.gateways.logs(game, actor="workflow:start").ensure(),
        idle_warn_s=warn,
        idle_stop_s=stop,
        idle_check_s=lc.settings.idle_check_s,
        startup_grace_s=lc.settings.idle_grace_s,
        catalogue=resolved(game),
    )
    if editing:
        boot = replace(boot, idle_warn_s=EDIT_IDLE_WARN_S, idle_stop_s=EDIT_IDLE_STOP_S)
    return render(boot)


def game_group(lc: Lifecycle, game: Game, *, actor: str) -> str:
    """The game's security group with exactly its open ports, made now if it has none (a game created
    before games had their own); recorded on the game. Idempotent: StartGame calls it at every launch."""
    group_id = lc.gateways.security_groups(game, actor=actor).ensure(game.settings.ports)
    if group_id != game.resources.security_group_id:
        lc.games.group_made(game.tenant_id, game.name, group_id)
    return group_id


def retire_identity(ctx: StepContext, game: Game, actor: str) -> str:
    """Remove the instance's IoT identity and key parameters; never fails the step, says what was left."""
    try:
        problems = ctx.lifecycle.gateways.identity(game, actor=actor).retire()
    except Exception as exc:  # the tenant is gone: nothing to reach, and a stop must not fail on it
        log.warning("identity: retire for %s/%s failed: %s", game.tenant_id, game.name, exc)
        problems = [f"reaching AWS ({error_code(exc, type(exc).__name__)})"]
    return f" Note: its server identity was not fully removed ({'; '.join(problems)})." if problems else ""

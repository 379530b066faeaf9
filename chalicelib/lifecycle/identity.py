"""The game instance's IoT identity, by the old `lc`-taking calls; chalicelib/instances/identity.py
holds it now (`TenantGateways.identity`).

Compatibility shim: removed when the lifecycle re-cut lands.
"""

from __future__ import annotations

import logging

from chalicelib.config import Settings
from chalicelib.games import Game
from chalicelib.instances import error_code
from chalicelib.instances.identity import (
    Identity,
    IdentityGateway,
    instance_profile,
    parameter_prefix,
    thing_name,
)
from chalicelib.lifecycle._compat import gateways
from chalicelib.lifecycle.deps import Lifecycle

__all__ = [
    "Identity",
    "IdentityGateway",
    "endpoint",
    "give_role",
    "instance_profile",
    "issue",
    "parameter_prefix",
    "retire",
    "thing_name",
]

log = logging.getLogger(__name__)


def issue(lc: Lifecycle, game: Game, *, stage: str, iot_region: str, actor: str) -> Identity:
    """The identity of the game's current instance (`game.instance_id`)."""
    identity = gateways(lc, Settings(stage=stage, region=iot_region)).identity(game, actor=actor)
    return identity.issue(game.instance_id or "")


def retire(lc: Lifecycle, game: Game, *, stage: str, iot_region: str, actor: str) -> list[str]:
    """Remove the game's identity; never raises (a stop must not fail on it)."""
    try:
        identity = gateways(lc, Settings(stage=stage, region=iot_region)).identity(game, actor=actor)
    except Exception as exc:
        log.warning("identity: retire for %s/%s failed: %s", game.tenant_id, game.name, exc)
        return [f"reaching AWS ({error_code(exc, type(exc).__name__)})"]
    return identity.retire()


def give_role(lc: Lifecycle, game: Game, *, stage: str, actor: str) -> str | None:
    """Associate the instance profile with the running instance; the problem in words if EC2 refused."""
    identity = gateways(lc, Settings(stage=stage)).identity(game, actor=actor)
    return identity.give_role(game.instance_id or "")


def endpoint(lc: Lifecycle, game: Game, *, settings: Settings, actor: str) -> str:
    """The IoT data endpoint (host) the agent connects to."""
    return gateways(lc, settings).identity(game, actor=actor).endpoint()

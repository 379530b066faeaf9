"""Each game's CloudWatch log group, by the old `lc`-taking calls; chalicelib/instances/game_logs.py
holds it now (`TenantGateways.logs`).

Compatibility shim: removed when the lifecycle re-cut lands.
"""

from __future__ import annotations

from chalicelib.config import Settings
from chalicelib.games import Game
from chalicelib.instances.game_logs import LOG_RETENTION_DAYS, log_group
from chalicelib.lifecycle._compat import gateways
from chalicelib.lifecycle.deps import Lifecycle

__all__ = ["LOG_RETENTION_DAYS", "delete_log_group", "ensure_log_group", "log_group"]


def ensure_log_group(lc: Lifecycle, game: Game, *, stage: str, actor: str) -> str | None:
    """The game's log group, made if missing and given its retention; None if the account refused."""
    return gateways(lc, Settings(stage=stage)).logs(game, actor=actor).ensure()


def delete_log_group(lc: Lifecycle, game: Game, *, stage: str, actor: str) -> str | None:
    """Delete the game's log group with the game; a problem is returned to be told, never raised."""
    return gateways(lc, Settings(stage=stage)).logs(game, actor=actor).delete()

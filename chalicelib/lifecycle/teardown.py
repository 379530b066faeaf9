"""What a guild leaves in AWS when it removes gangway (`/setup` → Remove): nothing of gangway's own.

Each stopped game's security group and log group go in any account. Its snapshots (the game's data)
go only from gangway's hosting account, which the leaving guild no longer pays for; in a connected
account they are the customer's to keep, and the reply says so. A refusal (a customer role already
deleted, say) never stops the removal: it is collected and told.
"""

from __future__ import annotations

import logging
from typing import Final

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import BotError
from chalicelib.games import Game
from chalicelib.lifecycle.collaborators import Lifecycle

__all__ = ["Released", "release_games"]

log = logging.getLogger(__name__)

_ACTOR: Final = "tenant:remove"


class Released:
    """What was deleted and what could not be: the removal's reply tells both."""

    def __init__(self) -> None:
        self.groups = 0
        self.snapshots = 0
        self.problems: list[str] = []


def release_games(lc: Lifecycle, games: list[Game], *, stage: str, hosting: bool) -> Released:
    """Delete the games' security groups and log groups, and in the hosting account their snapshots."""
    out = Released()
    for game in games:
        try:
            out.groups += len(lc.gateways.security_groups(game, actor=_ACTOR).delete())
            if hosting:
                ec2 = lc.gateways.ec2(game, actor=_ACTOR)
                for snap in ec2.snapshots():
                    ec2.delete_snapshot(str(snap["SnapshotId"]))
                    out.snapshots += 1
        except (BotoCoreError, ClientError, BotError) as exc:
            log.warning("removal: %s/%s left resources: %s", game.tenant_id, game.name, exc)
            out.problems.append(f"`{game.name}`: {getattr(exc, 'message', None) or exc}"[:200])
        problem = lc.gateways.logs(game, actor=_ACTOR).delete()
        if problem:
            out.problems.append(f"`{game.name}`: {problem}")
    return out

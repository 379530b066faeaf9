"""Each game's CloudWatch log group, made by StartGame when it launches the game's instance.

The backend makes the group (through the tenant's role, idempotent, with a retention so logs do not
pile up at the customer's cost), so the instance role needs only CreateLogStream and PutLogEvents on
`/gangway/…` groups (policies/customer-role.yaml, deploy/template/iot.py). The agent then ships the game's
output and its own journal there (lifecycle/bootstrap.py).

The client comes as a provider: reaching the tenant's account (the broker's AssumeRole) may fail, and
that failure belongs inside `ensure` and `delete`, which tell instead of raising.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from chalicelib.errors import AccountUnreachable

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

__all__ = ["LOG_RETENTION_DAYS", "GameLogs", "log_group"]

log = logging.getLogger(__name__)

# One of the values PutRetentionPolicy accepts; a month of game output is enough to look into a crash.
LOG_RETENTION_DAYS: Final = 30
# What CloudWatch Logs accepts in a group name, less what our names never hold.
_PART: Final = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def log_group(stage: str, tenant_id: str, game: str) -> str:
    """`/gangway/{stage}/{tenant}/{game}`: one group per game, under the prefix the roles allow.

    Raises:
        ValueError: a part that is not a plain name (it could reach another game's group).
    """
    for part in (stage, tenant_id, game):
        if not _PART.fullmatch(part) or part in (".", ".."):
            raise ValueError(f"{part!r} cannot be part of a log group name")
    return f"/gangway/{stage}/{tenant_id}/{game}"


class GameLogs:
    """One game's log group in its tenant's account (CloudWatch Logs through the broker, audited)."""

    def __init__(
        self, logs: Callable[[], CloudWatchLogsClient], *, stage: str, tenant_id: str, game: str
    ) -> None:
        self._logs = logs
        self._tenant = tenant_id
        self._game = game
        self._stage = stage

    @property
    def group(self) -> str:
        """The group's name (`log_group`).

        Raises:
            ValueError: the stage, tenant or game is not a plain name.
        """
        return log_group(self._stage, self._tenant, self._game)

    def ensure(self) -> str | None:
        """The game's log group, made if missing and given its retention; None if the account refused.

        Never raises for AWS's refusal: a customer whose role stack predates the logs permissions still
        starts games, whose agent then keeps the game's output in a file on the instance (logged here).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        name = self.group
        try:
            logs = self._logs()
            with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                # Tagged like everything gangway makes for a tenant (the hosting role requires it).
                logs.create_log_group(
                    logGroupName=name, tags={"gangway:tenant": self._tenant, "gangway:game": self._game}
                )
            logs.put_retention_policy(logGroupName=name, retentionInDays=LOG_RETENTION_DAYS)
        except (BotoCoreError, ClientError, AccountUnreachable) as exc:
            log.warning("logs: no log group %s for %s/%s: %s", name, self._tenant, self._game, exc)
            return None
        return name

    def delete(self) -> str | None:
        """Delete the game's log group with the game; a problem is returned to be told, never raised (the
        game is gone either way, and its logs would expire within the retention)."""
        from botocore.exceptions import BotoCoreError, ClientError

        name = self.group
        try:
            logs = self._logs()
            with contextlib.suppress(logs.exceptions.ResourceNotFoundException):
                logs.delete_log_group(logGroupName=name)
        except (BotoCoreError, ClientError, AccountUnreachable) as exc:
            log.warning("logs: could not delete %s: %s", name, exc)
            return f"its log group `{name}` could not be deleted; it expires within {LOG_RETENTION_DAYS} days"
        return None

"""The collaborators of the game lifecycle, in one typed value that wiring builds once per container.

Commands, workflow steps (through their `StepContext`) and agent-event handlers all reach AWS, Discord,
the stores and the agents through it; none of them looks anything up in a service locator.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from chalicelib.agents import Outgoing, Publisher, cmd_topic
from chalicelib.config import Settings
from chalicelib.discord.reply_editor import ReplyEditor
from chalicelib.discord.rest import DiscordRest
from chalicelib.games import Game, GameStore
from chalicelib.instances import AgentWheelhouse, TenantGateways, error_code
from chalicelib.tenancy import CredentialsBroker, TenantStore
from chalicelib.workflows import Workflows

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

    from chalicelib.access import AccessService
    from chalicelib.push import PushService

__all__ = ["Lifecycle"]

log = logging.getLogger(__name__)

_CAUSE_LIMIT = 32000  # Step Functions caps `cause` at 32768 characters
_STALE: Final = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})


@dataclass(frozen=True)
class Lifecycle:
    """Stores, the tenant's AWS gateways (instances/gateways.py), Discord, workflows and the agents'
    transport.

    The callables build heavy or rarely used parts on first use (a Lambda that never pushes never
    loads web push).
    """

    settings: Settings
    games: GameStore
    tenants: TenantStore
    broker: CredentialsBroker
    gateways: TenantGateways
    rest: DiscordRest
    replies: ReplyEditor
    workflows: Workflows
    sfn: Callable[[], SFNClient]
    publisher: Callable[[], Publisher]
    access: Callable[[], AccessService]
    push: Callable[[], PushService]
    # Where instances get their agent (instances/wheelhouse.py): read from the hosting account's bucket.
    wheelhouse: Callable[[], AgentWheelhouse]

    def tell(self, data: Mapping[str, Any], text: str, *, keep_components: bool = False) -> None:
        """Show progress in the reply of the interaction that started a workflow (`data["reply"]`)."""
        self.replies.tell(data.get("reply"), text, keep_components=keep_components)

    def ask_agent(
        self, game: Game, kind: str, body: dict[str, Any] | None = None, *, request_id: str | None = None
    ) -> str:
        """Publish a request to the game's agent; returns the request id its reply will carry.

        A caller that must recognise the reply (even one that arrives before it could note the id)
        passes its own `request_id`; the agent answers a repeated id without running it again.
        """
        request_id = request_id or uuid.uuid4().hex
        payload = json.dumps({"id": request_id, "type": kind, "body": body or {}}).encode()
        self.publisher().publish([Outgoing(cmd_topic(game.tenant_id, game.name), payload)])
        return request_id

    def complete(self, token: str, output: Mapping[str, Any]) -> None:
        """Finish a workflow step that waited on the agent."""
        _unless_stale(lambda: self.sfn().send_task_success(taskToken=token, output=json.dumps(dict(output))))

    def fail(self, token: str, error: str, cause: str) -> None:
        """Fail a workflow step that waited on the agent, with a named error its Catch matches."""
        _unless_stale(
            lambda: self.sfn().send_task_failure(taskToken=token, error=error, cause=cause[:_CAUSE_LIMIT])
        )

    def heartbeat(self, token: str) -> None:
        """Renew a waiting step's HeartbeatSeconds (a preload's progress)."""
        self.sfn().send_task_heartbeat(taskToken=token)


def _unless_stale(call: Callable[[], Any]) -> None:
    """Answer a waiting step; a token nothing waits on any more (its execution timed out, failed or
    was stopped) is logged, not raised: raising would only have the queue redeliver the agent's event."""
    try:
        call()
    except Exception as exc:
        code = error_code(exc)
        if code not in _STALE:
            raise
        log.info("the step this answer was for no longer waits (%s)", code)

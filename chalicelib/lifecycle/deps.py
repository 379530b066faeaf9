"""The collaborators of the game lifecycle, in one value so steps, commands and agent events share them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib.agents import Outgoing, cmd_topic
from chalicelib.discord.rest import DiscordRest
from chalicelib.games import Game, GameStore
from chalicelib.instances import Ec2Gateway, SecurityGroups
from chalicelib.tenancy import CredentialsBroker, TenantStore
from chalicelib.workflows import Workflows

__all__ = ["Lifecycle"]


@dataclass(frozen=True)
class Lifecycle:
    """Stores, AWS access for the tenant, Discord, workflows and the agents' transport."""

    games: GameStore
    tenants: TenantStore
    broker: CredentialsBroker
    rest: DiscordRest
    workflows: Workflows
    sfn: Callable[[], Any]
    publisher: Callable[[], Any]

    def ec2(self, game: Game, *, actor: str, purpose: str = "lifecycle") -> Ec2Gateway:
        """EC2 for this game's tenant, through the broker (audited, the tenant's own account if set)."""
        tenant = self.tenants.require(game.tenant_id)
        client = self.broker.access(tenant, purpose=purpose, actor=actor).client("ec2")
        return Ec2Gateway(client, tenant_id=game.tenant_id, game=game.name)

    def security_groups(self, game: Game, *, actor: str, purpose: str = "lifecycle") -> SecurityGroups:
        """The game's security group in its tenant's account, through the broker (audited)."""
        tenant = self.tenants.require(game.tenant_id)
        client = self.broker.access(tenant, purpose=purpose, actor=actor).client("ec2")
        return SecurityGroups(client, tenant_id=game.tenant_id, game=game.name)

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

    def complete(self, token: str, output: dict[str, Any]) -> None:
        """Finish a workflow step that waited on the agent."""
        self.sfn().send_task_success(taskToken=token, output=json.dumps(output))

    def fail(self, token: str, error: str, cause: str) -> None:
        self.sfn().send_task_failure(taskToken=token, error=error, cause=cause[:32000])

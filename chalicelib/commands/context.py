"""The context a handler receives: the interaction, its tenant, the caller's level and the services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from chalicelib.discord import Interaction, InteractionType
from chalicelib.errors import NotFound, NotSetUp
from chalicelib.games import check_name
from chalicelib.tenancy.store import level_of

# Only types from the services' packages: importing them would load player access, the AWS gateways and
# the broker on every cold command, though most commands never touch them (bench/first_command.py).
if TYPE_CHECKING:
    from pynamodb.models import Model

    from chalicelib.access import AccessService
    from chalicelib.config import Settings
    from chalicelib.discord import CommandRegistry, Level
    from chalicelib.games import Game, GameStore
    from chalicelib.instances import TenantGateways
    from chalicelib.jobs import JobMessage
    from chalicelib.lifecycle import Lifecycle
    from chalicelib.push import PushService
    from chalicelib.tenancy import AuditLog, CredentialsBroker, Tenant, TenantStore, Verifier

__all__ = ["Context", "Services", "interaction_of_job"]


@dataclass(frozen=True)
class Services:
    """What handlers may use; built once per container in wiring.py."""

    settings: Settings
    tenants: TenantStore
    games: GameStore
    registry: CommandRegistry
    audit: AuditLog
    broker: CredentialsBroker
    verifier: Verifier
    # Every table with rows per tenant (its partition key is the tenant id): purged on removal; imported
    # on first use.
    tenant_tables: Callable[[], tuple[type[Model], ...]]
    hosting_account: Callable[[], str]
    # Player access (chalicelib/access): links, grants and firewall sync; built on first use.
    access: Callable[[], AccessService]
    # Web push (chalicelib/push): whether /addip may push to the member's browser; built on first use.
    push: Callable[[], PushService]
    # The game lifecycle's collaborators (workflows, Discord edits, agents), built on first use.
    lifecycle: Callable[[], Lifecycle]
    # A game's AWS gateways (EC2, its security group, DNS, logs, terminal) through the broker.
    gateways: Callable[[], TenantGateways]


class Context:
    """One interaction being handled; the tenant is resolved once, from the guild."""

    def __init__(self, interaction: Interaction, services: Services) -> None:
        self._interaction = interaction
        self.services = services

    @property
    def interaction(self) -> Interaction:
        return self._interaction

    @cached_property
    def tenant(self) -> Tenant | None:
        gid = self._interaction.guild_id
        return None if gid is None else self.services.tenants.get(gid)

    @property
    def has_tenant(self) -> bool:
        return self.tenant is not None

    @cached_property
    def level(self) -> Level:
        it = self._interaction
        return level_of(self.tenant, it.role_ids, it.permissions)

    @property
    def tenant_id(self) -> str:
        """The tenant's id; handlers that need one are only reached when it exists."""
        if self.tenant is None:
            raise NotSetUp("This server isn't set up for gangway yet: run `/setup`.")
        return self.tenant.tenant_id

    @property
    def lifecycle(self) -> Lifecycle:
        """The game lifecycle's collaborators (workflows, EC2 through the broker, agents)."""
        return self.services.lifecycle()

    def game(self, name: str) -> Game:
        """The caller's tenant's game called `name`; a name from a button or a form is looked up in the
        clicking guild only, so it can never reach another tenant's game.

        Raises:
            ValidationError: not a game name.  NotFound: no such game here.
        """
        game = self.services.games.get(self.tenant_id, check_name(name))
        if game is None:
            raise NotFound(
                f"The game `{name}` does not exist on this server. `/games` lists the ones that do."
            )
        return game


def interaction_of_job(msg: JobMessage) -> Interaction:
    """The interaction a job continues, rebuilt from its message (the jobs Lambda has nothing else)."""
    return Interaction(
        id=msg.interaction_id,
        type=InteractionType.APPLICATION_COMMAND,
        application_id=msg.application_id,
        token=msg.token,
        user_id=msg.user_id,
        user_name=msg.user_name,
        guild_id=msg.tenant_id,
        channel_id=msg.channel_id,
        role_ids=frozenset(msg.role_ids),
        permissions=msg.permissions,
        command=msg.command,
    )

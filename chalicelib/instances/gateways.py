"""The one place a game's AWS gateways are built: each through the credentials broker, for the game's
tenant, audited with a purpose and the actor (a Discord user id or a workflow name).

Lifecycle steps, commands and agent events ask this factory instead of building boto3 clients. It
knows which account each service lives in: EC2, SSM, STS, Route 53 and CloudWatch Logs in the tenant's
(the customer's own when it gave a role), IoT in gangway's (instances/identity.py says why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from chalicelib.instances.dns import DnsGateway
from chalicelib.instances.ec2 import Ec2Gateway
from chalicelib.instances.game_logs import GameLogs
from chalicelib.instances.identity import IdentityGateway
from chalicelib.instances.images import ImageCache, ImageConfig, ImageResolver
from chalicelib.instances.security import SecurityGroups
from chalicelib.instances.terminal import Federation, TerminalGateway

if TYPE_CHECKING:
    from chalicelib.config import Settings
    from chalicelib.games import Game
    from chalicelib.tenancy import CredentialsBroker, Tenant, TenantStore

__all__ = ["TenantGateways"]


@dataclass(frozen=True)
class TenantGateways:
    """Builds the gateways of a game's (or a tenant's) AWS resources; built once in wiring.py.

    `settings` gives the stage (names), gangway's region (IoT), the configured IoT endpoints, the
    console's federation endpoint and the terminal link's issuer; `hosting_account` is gangway's own
    account id (where a hosting tenant's instances run). `image_cache` keeps resolved machine images for
    the container's life (instances/images.py).
    """

    broker: CredentialsBroker
    tenants: TenantStore
    settings: Settings
    hosting_account: Callable[[], str]
    image_cache: ImageCache = field(default_factory=ImageCache, compare=False)

    def ec2(self, game: Game, *, actor: str, purpose: str = "lifecycle") -> Ec2Gateway:
        """EC2 for this game's tenant, through the broker (audited, the tenant's own account if set).

        Raises:
            NotSetUp: the tenant is gone.  AccountUnreachable: its role could not be assumed.
        """
        client = self._client(self.tenants.require(game.tenant_id), "ec2", purpose, actor)
        return Ec2Gateway(client, tenant_id=game.tenant_id, game=game.name)

    def images(self, game: Game, *, actor: str, purpose: str = "lifecycle") -> ImageResolver:
        """The machine images a launch of this game may use: the public parameter and the image in its
        tenant's account and region (EC2 and SSM through the broker, built on first use), cached.

        Raises:
            NotSetUp: the tenant is gone.
        """
        tenant = self.tenants.require(game.tenant_id)
        return ImageResolver(
            lambda: self._client(tenant, "ec2", purpose, actor),
            lambda: self._client(tenant, "ssm", purpose, actor),
            ImageConfig.of(self.settings),
            scope=f"{tenant.role_arn or 'hosting'}@{tenant.region}",
            cache=self.image_cache,
        )

    def security_groups(self, game: Game, *, actor: str, purpose: str = "lifecycle") -> SecurityGroups:
        """The game's security group in its tenant's account, through the broker (audited).

        Raises:
            NotSetUp: the tenant is gone.  AccountUnreachable: its role could not be assumed.
        """
        client = self._client(self.tenants.require(game.tenant_id), "ec2", purpose, actor)
        return SecurityGroups(client, tenant_id=game.tenant_id, game=game.name)

    def identity(self, game: Game, *, actor: str) -> IdentityGateway:
        """The game's instance identity (purpose `identity`): IoT in gangway's account and region, SSM,
        EC2 and STS in the tenant's. Clients are built on first use, inside the gateway's calls.

        Raises:
            NotSetUp: the tenant is gone.
        """
        tenant = self.tenants.require(game.tenant_id)
        s = self.settings
        return IdentityGateway(
            iot=lambda: self._client(_in_gangways_account(tenant, s.region), "iot", "identity", actor),
            ssm=lambda: self._client(tenant, "ssm", "identity", actor),
            ec2=lambda: self._client(tenant, "ec2", "identity", actor),
            sts=lambda: self._client(tenant, "sts", "identity", actor),
            stage=s.stage,
            tenant=tenant,
            game=game.name,
            endpoints=(s.iot_data_endpoint, s.mqtt_url),
        )

    def dns(self, tenant: Tenant, *, actor: str) -> DnsGateway:
        """Route 53 in the tenant's account (purpose `dns`), built on first use."""
        return DnsGateway(lambda: self._client(tenant, "route53", "dns", actor), tenant)

    def game_dns(self, game: Game, *, actor: str) -> DnsGateway:
        """Route 53 for the game's tenant (its `dns_name`).

        Raises:
            NotSetUp: the tenant is gone.
        """
        return self.dns(self.tenants.require(game.tenant_id), actor=actor)

    def logs(self, game: Game, *, actor: str) -> GameLogs:
        """The game's CloudWatch log group in its tenant's account (purpose `logs`), built on first use.

        Raises:
            NotSetUp: the tenant is gone.
        """
        tenant = self.tenants.require(game.tenant_id)
        return GameLogs(
            lambda: self._client(tenant, "logs", "logs", actor),
            stage=self.settings.stage,
            tenant_id=game.tenant_id,
            game=game.name,
        )

    def terminal(self, tenant: Tenant, *, actor: str) -> TerminalGateway:
        """Console links onto the tenant's instances (purpose `terminal`): STS in its account, the
        federation endpoint of `settings.signin_url`.

        Raises:
            AccountUnreachable: the tenant's role could not be assumed.
        """
        customer = tenant.account_mode == "customer" and tenant.role_arn
        account = tenant.role_arn.split(":")[4] if customer and tenant.role_arn else self.hosting_account()
        return TerminalGateway(
            self._client(tenant, "sts", "terminal", actor),
            Federation(self.settings.signin_url),
            region=tenant.region,
            account=account,
            issuer=self.settings.site_url or "https://discord.com",
        )

    def _client(self, tenant: Tenant, service: str, purpose: str, actor: str) -> Any:
        """An audited boto3 client of `service` for `tenant`; the caller gives it its stub type."""
        return self.broker.access(tenant, purpose=purpose, actor=actor).client(service)


def _in_gangways_account(tenant: Tenant, region: str) -> Tenant:
    """The tenant as the broker sees a hosting tenant in gangway's region: IoT lives where the backend's
    endpoint and rule are (instances/identity.py), still audited under the tenant."""
    return replace(tenant, account_mode="hosting", role_arn=None, region=region)

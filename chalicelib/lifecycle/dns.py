"""Route 53 names for running games, by the old `lc`-taking calls; chalicelib/instances/dns.py holds
them now (`TenantGateways.dns`).

Compatibility shim: removed when the lifecycle re-cut lands.
"""

from __future__ import annotations

from chalicelib.config import Settings
from chalicelib.games import Game
from chalicelib.instances.dns import DOMAIN, TTL, ZONE_ID, DnsOutcome, dns_name, parse_zone
from chalicelib.lifecycle._compat import gateways
from chalicelib.lifecycle.deps import Lifecycle

__all__ = ["DOMAIN", "TTL", "ZONE_ID", "DnsOutcome", "dns_name", "parse_zone", "publish", "unpublish"]


def publish(lc: Lifecycle, game: Game, *, actor: str) -> DnsOutcome:
    """UPSERT the game's A record to its address (TTL 10 s); never raises."""
    tenant = lc.tenants.require(game.tenant_id)
    return gateways(lc, Settings()).dns(tenant, actor=actor).publish(game.name, game.address)


def unpublish(lc: Lifecycle, game: Game, *, actor: str) -> DnsOutcome:
    """DELETE the game's A record if there is one; never raises."""
    tenant = lc.tenants.require(game.tenant_id)
    return gateways(lc, Settings()).dns(tenant, actor=actor).unpublish(game.name)

"""Route 53 names for running games: `<game>.<domain>` in the tenant's own hosted zone (issue 4, item 7).

A name is a convenience, never a reason for a start or stop to fail: `publish` and `unpublish` log
and return the problem instead of raising, and the step tells the user. Route 53 is reached through
the tenant's broker access, so the zone may live in the tenant's own account and every call is audited.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Final

from chalicelib.errors import ValidationError
from chalicelib.games import Game
from chalicelib.lifecycle.collaborators import Lifecycle
from chalicelib.tenancy import Tenant

__all__ = [
    "DOMAIN",
    "TTL",
    "ZONE_ID",
    "DnsOutcome",
    "check_zone",
    "dns_name",
    "parse_zone",
    "publish",
    "unpublish",
]

log = logging.getLogger(__name__)

# Short, so a game that comes back on a new address is found again within seconds.
TTL: Final = 10
ZONE_ID: Final = re.compile(r"[A-Z0-9]{1,32}")
_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
DOMAIN: Final = re.compile(rf"(?=.{{4,200}}$)(?:{_LABEL}\.)+[a-z]{_LABEL[8:]}")


@dataclass(frozen=True)
class DnsOutcome:
    """What happened to a game's name: the name, and a problem in words when Route 53 said no."""

    name: str | None
    problem: str | None = None


def dns_name(tenant: Tenant, game: str) -> str | None:
    """The game's DNS name when the tenant gave a zone, else None."""
    return f"{game}.{tenant.dns_domain}" if tenant.dns_zone_id and tenant.dns_domain else None


def _zone(zone_id: str) -> str:
    return zone_id.rsplit("/", 1)[-1]


def parse_zone(zone_id: str, domain: str) -> tuple[str, str]:
    """(zone id, domain) normalised: `/hostedzone/` prefix, case and final dot dropped.

    Raises:
        ValidationError: either is malformed.
    """
    zone_id, domain = _zone(zone_id.strip()), domain.strip().lower().rstrip(".")
    if not ZONE_ID.fullmatch(zone_id):
        raise ValidationError(f"`{zone_id[:40]}` isn't a Route 53 hosted zone id (like `Z0123456789ABCDEF`).")
    if not DOMAIN.fullmatch(domain):
        raise ValidationError(f"`{domain[:80]}` isn't a domain name (like `games.example.net`).")
    return zone_id, domain


def check_zone(route53: Any, zone_id: str, domain: str) -> str:
    """The zone id if `route53` can read that zone and `domain` is the zone's name or inside it.

    Raises:
        ValidationError: malformed input, or the zone is missing, unreadable or for another domain.
    """
    zone_id, domain = parse_zone(zone_id, domain)
    try:
        zone = route53.get_hosted_zone(Id=zone_id)["HostedZone"]
        route53.list_resource_record_sets(HostedZoneId=zone_id, MaxItems="1")
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        raise ValidationError(
            f"gangway can't read the hosted zone `{zone_id}` ({code}). Check the id, and that the AWS "
            "account this server uses can list and change that zone (the access role's DNS permission)."
        ) from exc
    apex = str(zone["Name"]).rstrip(".").lower()
    if domain != apex and not domain.endswith("." + apex):
        raise ValidationError(f"`{domain}` is not inside the zone `{zone_id}`, which is `{apex}`.")
    if zone.get("Config", {}).get("PrivateZone"):
        raise ValidationError(f"`{zone_id}` is a private zone; players could not resolve names in it.")
    return zone_id


def _route53(lc: Lifecycle, tenant: Tenant, actor: str) -> Any:
    return lc.broker.access(tenant, purpose="dns", actor=actor).client("route53")


def publish(lc: Lifecycle, game: Game, *, actor: str) -> DnsOutcome:
    """UPSERT the game's A record to its address (TTL 10 s); never raises."""
    tenant = lc.tenants.require(game.tenant_id)
    name = dns_name(tenant, game.name)
    if name is None or not game.resources.address:
        return DnsOutcome(None)
    change = {
        "Action": "UPSERT",
        "ResourceRecordSet": {
            "Name": name,
            "Type": "A",
            "TTL": TTL,
            "ResourceRecords": [{"Value": game.resources.address}],
        },
    }
    try:
        _route53(lc, tenant, actor).change_resource_record_sets(
            HostedZoneId=tenant.dns_zone_id, ChangeBatch={"Comment": "gangway: game up", "Changes": [change]}
        )
    except Exception as exc:
        log.warning("dns: could not set %s for %s/%s: %s", name, game.tenant_id, game.name, exc)
        return DnsOutcome(None, f"its DNS name `{name}` could not be set ({_code(exc)})")
    return DnsOutcome(name)


def unpublish(lc: Lifecycle, game: Game, *, actor: str) -> DnsOutcome:
    """DELETE the game's A record if there is one; never raises."""
    tenant = lc.tenants.require(game.tenant_id)
    name = dns_name(tenant, game.name)
    if name is None:
        return DnsOutcome(None)
    try:
        route53 = _route53(lc, tenant, actor)
        found = route53.list_resource_record_sets(
            HostedZoneId=tenant.dns_zone_id, StartRecordName=name, StartRecordType="A", MaxItems="1"
        )["ResourceRecordSets"]
        current = [r for r in found if r["Name"].rstrip(".") == name and r["Type"] == "A"]
        if current:
            route53.change_resource_record_sets(
                HostedZoneId=tenant.dns_zone_id,
                ChangeBatch={
                    "Comment": "gangway: game stopped",
                    "Changes": [{"Action": "DELETE", "ResourceRecordSet": current[0]}],
                },
            )
    except Exception as exc:
        log.warning("dns: could not remove %s for %s/%s: %s", name, game.tenant_id, game.name, exc)
        return DnsOutcome(name, f"its DNS name `{name}` could not be removed ({_code(exc)})")
    return DnsOutcome(name)


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(exc).__name__))
    return type(exc).__name__

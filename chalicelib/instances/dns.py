"""Route 53 names for running games: `<game>.<domain>` in the tenant's own hosted zone (issue 4, item 7).

A name is a convenience, never a reason for a start or stop to fail: `publish` and `unpublish` log
and return the problem instead of raising, and the step tells the user. Route 53 is reached through
the tenant's broker access, so the zone may live in the tenant's own account and every call is audited;
the client comes as a provider so that reaching the account fails inside those two, where it is told.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from chalicelib.errors import ValidationError
from chalicelib.instances.aws_errors import error_code

if TYPE_CHECKING:
    from mypy_boto3_route53 import Route53Client
    from mypy_boto3_route53.type_defs import ChangeTypeDef, ResourceRecordSetOutputTypeDef

    from chalicelib.tenancy import Tenant

__all__ = [
    "DOMAIN",
    "TTL",
    "ZONE_ID",
    "DnsGateway",
    "DnsOutcome",
    "dns_name",
    "parse_zone",
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


class DnsGateway:
    """Route 53 for one tenant: its games' A records in its zone, and checking a zone it offers."""

    def __init__(self, route53: Callable[[], Route53Client], tenant: Tenant) -> None:
        self._route53 = route53
        self._tenant = tenant

    def check_zone(self, zone_id: str, domain: str) -> str:
        """The zone id if the tenant's access can read that zone and `domain` is its name or inside it.

        Raises:
            ValidationError: malformed input, or the zone is missing, unreadable or for another domain.
            AccountUnreachable: the tenant's account could not be reached at all.
        """
        zone_id, domain = parse_zone(zone_id, domain)
        route53 = self._route53()
        try:
            zone = route53.get_hosted_zone(Id=zone_id)["HostedZone"]
            route53.list_resource_record_sets(HostedZoneId=zone_id, MaxItems="1")
        except Exception as exc:
            code = error_code(exc, type(exc).__name__)
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

    def _marker(self, game: str) -> str:
        """The TXT value that says gangway made the records at a game's name (Route 53 has no tags)."""
        return f'"gangway={self._tenant.tenant_id}/{game}"'

    def _records_at(self, route53: Route53Client, name: str) -> list[ResourceRecordSetOutputTypeDef]:
        """The A and TXT record sets at exactly `name` in the tenant's zone."""
        found = route53.list_resource_record_sets(
            HostedZoneId=self._tenant.dns_zone_id or "", StartRecordName=name, MaxItems="10"
        )["ResourceRecordSets"]
        return [r for r in found if r["Name"].rstrip(".") == name and r["Type"] in ("A", "TXT")]

    def _ours(self, records: list[ResourceRecordSetOutputTypeDef], game: str) -> bool:
        marker = self._marker(game)
        return any(
            r["Type"] == "TXT" and any(v["Value"] == marker for v in r.get("ResourceRecords", []))
            for r in records
        )

    def publish(self, game: str, address: str | None) -> DnsOutcome:
        """UPSERT the game's A record to its address (TTL 10 s), with the TXT marker that says gangway
        made it; an A record at that name that gangway did not make is left alone. Never raises."""
        tenant = self._tenant
        name = dns_name(tenant, game)
        if name is None or not address:
            return DnsOutcome(None)
        changes: list[ChangeTypeDef] = [
            {
                "Action": "UPSERT",
                "ResourceRecordSet": {
                    "Name": name,
                    "Type": "A",
                    "TTL": TTL,
                    "ResourceRecords": [{"Value": address}],
                },
            },
            {
                "Action": "UPSERT",
                "ResourceRecordSet": {
                    "Name": name,
                    "Type": "TXT",
                    "TTL": TTL,
                    "ResourceRecords": [{"Value": self._marker(game)}],
                },
            },
        ]
        try:
            route53 = self._route53()
            records = self._records_at(route53, name)
            if any(r["Type"] == "A" for r in records) and not self._ours(records, game):
                return DnsOutcome(
                    None,
                    f"its DNS name `{name}` already has a record gangway did not make, so it was left "
                    "alone; remove that record in Route 53 to let gangway use the name",
                )
            route53.change_resource_record_sets(
                HostedZoneId=tenant.dns_zone_id or "",
                ChangeBatch={"Comment": "gangway: game up", "Changes": changes},
            )
        except Exception as exc:
            log.warning("dns: could not set %s for %s/%s: %s", name, tenant.tenant_id, game, exc)
            code = error_code(exc, type(exc).__name__)
            return DnsOutcome(None, f"its DNS name `{name}` could not be set ({code})")
        return DnsOutcome(name)

    def unpublish(self, game: str) -> DnsOutcome:
        """DELETE the game's A record and its marker, only if gangway made them; never raises."""
        tenant = self._tenant
        name = dns_name(tenant, game)
        if name is None:
            return DnsOutcome(None)
        try:
            route53 = self._route53()
            records = self._records_at(route53, name)
            if records and self._ours(records, game):
                route53.change_resource_record_sets(
                    HostedZoneId=tenant.dns_zone_id or "",
                    ChangeBatch={
                        "Comment": "gangway: game stopped",
                        "Changes": [{"Action": "DELETE", "ResourceRecordSet": r} for r in records],
                    },
                )
        except Exception as exc:
            log.warning("dns: could not remove %s for %s/%s: %s", name, tenant.tenant_id, game, exc)
            code = error_code(exc, type(exc).__name__)
            return DnsOutcome(name, f"its DNS name `{name}` could not be removed ({code})")
        return DnsOutcome(name)

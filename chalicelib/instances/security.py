"""The game's own security group: which ports of its instance the internet may reach at all.

One group per game in the account's default VPC, tagged like everything gangway creates (the customer
role may change only tagged groups). Its ingress is the game's opened ports plus the agent's SFTP port,
from anywhere: which players get through is decided on the instance by the agent's nftables firewall
(the tenant's IP grants), which changes far more often than a group should. Every call is idempotent:
a rule that already exists or is already gone is fine, and a group is found by its tag before one is
made, so a retried step never makes two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from chalicelib.errors import InfraError, UserError
from chalicelib.instances.aws_errors import error_code
from chalicelib.instances.ec2 import tags_for

__all__ = [
    "ANYWHERE_V4",
    "ANYWHERE_V6",
    "GroupInUse",
    "NoDefaultVpc",
    "Rule",
    "SecurityGroups",
    "SftpPort",
    "rules_for",
]

ANYWHERE_V4: Final = "0.0.0.0/0"
ANYWHERE_V6: Final = "::/0"
_PROTOCOLS: Final = frozenset({"tcp", "udp"})
# Error codes that mean "already as wanted" (EC2 API reference, error codes).
_ALREADY_THERE: Final = frozenset({"InvalidPermission.Duplicate"})
_ALREADY_GONE: Final = frozenset({"InvalidPermission.NotFound", "InvalidGroup.NotFound"})


class SftpPort(IntEnum):
    """The agent's OpenSSH SFTP service (agent/contract/README.md, `sftp.open`)."""

    TCP = 2222


class GroupInUse(InfraError):
    """EC2 still has an instance (or its network interface) in the group: try again once it is gone."""


class NoDefaultVpc(UserError):
    """The tenant's account has no default VPC in its region (they can make one)."""


@dataclass(frozen=True, order=True)
class Rule:
    """One ingress rule: a protocol's inclusive port range, open to everyone on one address family
    (`cidr` is 0.0.0.0/0 or ::/0; EC2 counts and reports the two families' rules apart)."""

    protocol: str
    low: int
    high: int
    cidr: str = ANYWHERE_V4

    def permission(self) -> dict[str, Any]:
        where = "players; the agent firewall lets only theirs in"
        family = (
            {"Ipv6Ranges": [{"CidrIpv6": self.cidr, "Description": where}]}
            if ":" in self.cidr
            else {"IpRanges": [{"CidrIp": self.cidr, "Description": where}]}
        )
        return {"IpProtocol": self.protocol, "FromPort": self.low, "ToPort": self.high, **family}


def _both(protocol: str, low: int, high: int) -> set[Rule]:
    return {Rule(protocol, low, high, cidr) for cidr in (ANYWHERE_V4, ANYWHERE_V6)}


def rules_for(ports: Iterable[str]) -> frozenset[Rule]:
    """The group's rules for a game's normalised port list (`tcp:27015`, `udp:2456-2458`), plus SFTP.

    Raises:
        ValueError: an entry that is not `<tcp|udp>:<port>[-<port>]` within 1-65535.
    """
    rules = _both("tcp", SftpPort.TCP, SftpPort.TCP)
    for entry in ports:
        protocol, _, span = entry.partition(":")
        low, _, high = span.partition("-")
        if protocol not in _PROTOCOLS or not low.isdigit() or not (high or low).isdigit():
            raise ValueError(f"not a port range: {entry!r}")
        first, last = int(low), int(high or low)
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"not a port range: {entry!r}")
        rules |= _both(protocol, first, last)
    return frozenset(rules)


def _open_rules(group: Mapping[str, Any]) -> frozenset[Rule]:
    """The rules of a described group that open a tcp/udp range to everyone (the ones gangway makes)."""
    rules = set()
    for perm in group.get("IpPermissions", []):
        if perm.get("IpProtocol") not in _PROTOCOLS:
            continue
        cidrs = {r.get("CidrIp") for r in perm.get("IpRanges", [])}
        cidrs |= {r.get("CidrIpv6") for r in perm.get("Ipv6Ranges", [])}
        for cidr in cidrs & {ANYWHERE_V4, ANYWHERE_V6}:
            rules.add(Rule(str(perm["IpProtocol"]), int(perm["FromPort"]), int(perm["ToPort"]), str(cidr)))
    return frozenset(rules)


class SecurityGroups:
    """The security group of one tenant's game; `client` is an audited boto3 EC2 client."""

    def __init__(self, client: Any, *, tenant_id: str, game: str) -> None:
        self._ec2 = client
        self._tenant = tenant_id
        self._game = game

    @property
    def name(self) -> str:
        """Unique in the VPC (group names are), readable in the EC2 console."""
        return f"gangway-{self._tenant}-{self._game}"

    def _mine(self) -> list[Mapping[str, Any]]:
        tag = [{"Name": "tag:gangway", "Values": [f"{self._tenant}/{self._game}"]}]
        groups: list[Mapping[str, Any]] = self._ec2.describe_security_groups(Filters=tag)["SecurityGroups"]
        return groups

    def find(self) -> str | None:
        """The game's group, if it has one (by its tag: never another game's)."""
        groups = self._mine()
        return str(groups[0]["GroupId"]) if groups else None

    def ensure(self, ports: Iterable[str]) -> str:
        """The game's group, made in the default VPC if it has none yet, with exactly its rules.

        Raises:
            NoDefaultVpc: the account has no default VPC in the tenant's region.
        """
        group_id = self.find() or self._create()
        self.sync(group_id, ports)
        return group_id

    def _create(self) -> str:
        vpcs = self._ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise NoDefaultVpc(
                "This AWS account has no default VPC in this region, which gangway launches game servers "
                "into. Create one (EC2 console → Your VPCs → Actions → Create default VPC) and try again."
            )
        try:
            answer = self._ec2.create_security_group(
                GroupName=self.name,
                Description=f"gangway game {self._game}: its open ports and SFTP; the agent filters players",
                VpcId=vpcs[0]["VpcId"],
                TagSpecifications=[
                    {"ResourceType": "security-group", "Tags": tags_for(self._tenant, self._game, "firewall")}
                ],
            )
        except Exception as exc:
            # A retried step whose first create went through: the group has the name, find it.
            found = self.find() if error_code(exc) == "InvalidGroup.Duplicate" else None
            if found is None:
                raise
            return found
        return str(answer["GroupId"])

    def sync(self, group_id: str, ports: Iterable[str]) -> tuple[frozenset[Rule], frozenset[Rule]]:
        """Make the group's open rules exactly the game's ports plus SFTP; returns (added, removed)."""
        wanted = rules_for(ports)
        described = self._ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
        current = _open_rules(described[0]) if described else frozenset()
        added, removed = wanted - current, current - wanted
        self.authorize(group_id, added)
        self.revoke(group_id, removed)
        return added, removed

    def authorize(self, group_id: str, rules: Iterable[Rule]) -> None:
        """Open `rules` to everyone; one already open is fine."""
        for rule in sorted(rules):
            try:
                self._ec2.authorize_security_group_ingress(
                    GroupId=group_id, IpPermissions=[rule.permission()]
                )
            except Exception as exc:
                if error_code(exc) not in _ALREADY_THERE:
                    raise

    def revoke(self, group_id: str, rules: Iterable[Rule]) -> None:
        """Close `rules`; one already closed is fine."""
        for rule in sorted(rules):
            try:
                self._ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=[rule.permission()])
            except Exception as exc:
                if error_code(exc) not in _ALREADY_GONE:
                    raise

    def delete(self) -> list[str]:
        """Delete every group of this game (normally one); returns their ids. None left is fine.

        Raises:
            GroupInUse: an instance still uses one (it is still terminating).
        """
        deleted = []
        for group in self._mine():
            try:
                self._ec2.delete_security_group(GroupId=group["GroupId"])
            except Exception as exc:
                if error_code(exc) == "DependencyViolation":
                    raise GroupInUse(f"the security group {group['GroupId']} is still in use") from exc
                if error_code(exc) not in _ALREADY_GONE:
                    raise
            deleted.append(str(group["GroupId"]))
        return deleted

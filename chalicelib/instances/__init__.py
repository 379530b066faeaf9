"""Instances: the AWS gateways of a game's resources, built through the credentials broker by
`TenantGateways`: EC2/EBS (launch options, volumes, snapshots), its security group, its instance's IoT
identity, its DNS name, its log group, and console links onto its instance; and where instances get
their agent (`wheelhouse.py`, the hosting account's artifacts bucket)."""

from __future__ import annotations

from chalicelib.instances.aws_errors import error_code
from chalicelib.instances.dns import DnsGateway, DnsOutcome, dns_name, parse_zone
from chalicelib.instances.ec2 import CAPACITY_ERRORS, CapacityError, Ec2Gateway, Launch, Placement, tags_for
from chalicelib.instances.game_logs import LOG_RETENTION_DAYS, GameLogs, log_group
from chalicelib.instances.gateways import TenantGateways
from chalicelib.instances.identity import (
    Identity,
    IdentityGateway,
    instance_profile,
    parameter_prefix,
    thing_name,
)
from chalicelib.instances.security import GroupInUse, NoDefaultVpc, SecurityGroups, SftpPort, rules_for
from chalicelib.instances.terminal import Federation, TerminalGateway, TerminalLink
from chalicelib.instances.wheelhouse import AgentInstall, AgentWheelhouse, NoWheelhouse

__all__ = [
    "CAPACITY_ERRORS",
    "LOG_RETENTION_DAYS",
    "AgentInstall",
    "AgentWheelhouse",
    "CapacityError",
    "DnsGateway",
    "DnsOutcome",
    "Ec2Gateway",
    "Federation",
    "GameLogs",
    "GroupInUse",
    "Identity",
    "IdentityGateway",
    "Launch",
    "NoDefaultVpc",
    "NoWheelhouse",
    "Placement",
    "SecurityGroups",
    "SftpPort",
    "TenantGateways",
    "TerminalGateway",
    "TerminalLink",
    "dns_name",
    "error_code",
    "instance_profile",
    "log_group",
    "parameter_prefix",
    "parse_zone",
    "rules_for",
    "tags_for",
    "thing_name",
]

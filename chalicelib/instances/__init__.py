"""Instances: EC2/EBS for games (launch options, volumes, snapshots, the game's security group) through
the credentials broker."""

from __future__ import annotations

from chalicelib.instances.aws_errors import error_code
from chalicelib.instances.ec2 import CAPACITY_ERRORS, CapacityError, Ec2Gateway, Launch, Placement, tags_for
from chalicelib.instances.security import GroupInUse, NoDefaultVpc, SecurityGroups, SftpPort, rules_for

__all__ = [
    "CAPACITY_ERRORS",
    "CapacityError",
    "Ec2Gateway",
    "GroupInUse",
    "Launch",
    "NoDefaultVpc",
    "Placement",
    "SecurityGroups",
    "SftpPort",
    "error_code",
    "rules_for",
    "tags_for",
]

"""Instances: EC2/EBS for games (launch options, volumes, snapshots) through the credentials broker."""

from __future__ import annotations

from chalicelib.instances.ec2 import CAPACITY_ERRORS, CapacityError, Ec2Gateway, Launch, Placement, tags_for

__all__ = ["CAPACITY_ERRORS", "CapacityError", "Ec2Gateway", "Launch", "Placement", "tags_for"]

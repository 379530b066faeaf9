"""The hosting role: what the broker assumes for a tenant hosted in gangway's own account (issue 15.5).

A hosted tenant's games run in gangway's account, so the functions' own credentials could reach every
hosted tenant's resources. Instead the broker (chalicelib/tenancy/broker.py) assumes this role with the
session tag `gangway:tenant=<tenant id>`, and its policy (`policies/hosting-role.json`) lets a session
act only on resources tagged with that same tenant, create only resources tagged with it, and name only
the tenant's own log groups, parameters and IoT things. It trusts exactly the functions whose policy may
assume it (`AssumeHostingRole`), for AssumeRole and TagSession, and only with the tenant tag set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from deploy.policy import scope_policy
from deploy.template.cfn import Json, att
from deploy.template.stage import Stage

__all__ = [
    "HOSTING_ROLE",
    "assumes_hosting_role",
    "hosting_resources",
    "hosting_role_name",
    "hosting_trust",
]

HOSTING_ROLE: Final = "HostingRole"
_TENANT_KEY: Final = "aws:RequestTag/gangway:tenant"


def hosting_role_name(stage: str) -> str:
    """`gangway-<stage>-hosting`: the name the functions' AssumeHostingRole statement allows."""
    return f"gangway-{stage}-hosting"


def assumes_hosting_role(policy: Mapping[str, Any]) -> bool:
    """Whether a function's policy lets it assume the hosting role (so the role's trust names it)."""
    for stmt in policy.get("Statement", []):
        actions = stmt.get("Action", [])
        if stmt.get("Effect") == "Allow" and "sts:AssumeRole" in (
            actions if isinstance(actions, list) else [actions]
        ):
            resources = stmt.get("Resource", [])
            text = json.dumps(resources)
            if "-hosting" in text:
                return True
    return False


def hosting_trust(principals: Sequence[Any]) -> Json:
    """Trust for `principals` (the functions' roles): AssumeRole, and TagSession only with the tenant tag."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": list(principals)}, "Action": "sts:AssumeRole"},
            {
                "Effect": "Allow",
                "Principal": {"AWS": list(principals)},
                "Action": "sts:TagSession",
                "Condition": {"StringLike": {_TENANT_KEY: "?*"}},
            },
        ],
    }


def hosting_resources(stage: Stage, policies: Path) -> Json:
    """The hosting role, trusting the roles of the functions whose policy file assumes it."""
    from chalice.utils import to_cfn_resource_name

    roles = []
    for name, cfg in sorted(stage.functions.items()):
        doc = json.loads((policies / Path(cfg["iam_policy_file"]).name).read_text())
        if assumes_hosting_role(doc):
            roles.append(att(f"{to_cfn_resource_name(name)}Role", "Arn"))
    policy = scope_policy(json.loads((policies / "hosting-role.json").read_text()), stage.name)
    return {
        HOSTING_ROLE: {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": hosting_role_name(stage.name),
                "Description": "gangway acting for one hosted tenant (session tag gangway:tenant)",
                "AssumeRolePolicyDocument": hosting_trust(roles),
                "Policies": [{"PolicyName": "TenantScoped", "PolicyDocument": policy}],
            },
        }
    }

"""Least privilege, checked: every Allow names its actions and scopes its resources (issue 8).

`policies/*.json` are shared by all stages and accounts (Chalice copies a policy file verbatim), so
there a resource may leave region, account and stage open but must name one of our resources
(`gangway…`). In the merged template `scope_policy` has filled region, account and stage in, so there
nothing may stay open that could be narrowed. `"Resource": "*"` is allowed only for actions that have
no resource-level permissions (Service Authorization Reference, per service: "Resource types: -") and
in a KMS key policy, where `*` means the key itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final, Literal

__all__ = [
    "NO_RESOURCE_LEVEL",
    "PolicyKind",
    "policy_problems",
    "scope_policy",
    "template_policies",
]

Json = dict[str, Any]
PolicyKind = Literal["identity", "resource", "key"]

# Actions without resource-level permissions: "*" is the only resource they accept.
# Sources: Service Authorization Reference pages for AWS X-Ray and CloudWatch Logs (log delivery for
# vended logs, which Step Functions logging needs: Step Functions developer guide, "Logging using
# CloudWatch Logs", IAM policies for logging).
NO_RESOURCE_LEVEL: Final = frozenset(
    {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
        # Step Functions task-token callbacks and listing state machines name no resource (Service
        # Authorization Reference, AWS Step Functions: SendTaskSuccess/Failure/Heartbeat, ListStateMachines).
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
        "states:SendTaskHeartbeat",
        "states:ListStateMachines",
        # EC2 Describe* actions have no resource-level permissions (Service Authorization Reference, EC2).
        "ec2:DescribeInstances",
        "ec2:DescribeVolumes",
        "ec2:DescribeSnapshots",
        "ec2:DescribeAvailabilityZones",
        "ec2:DescribeSubnets",
        "ec2:DescribeFastSnapshotRestores",
        "ec2:DescribeIamInstanceProfileAssociations",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeVpcs",
        # IoT's DescribeEndpoint names no resource (Service Authorization Reference, AWS IoT).
        "iot:DescribeEndpoint",
        "ec2:DescribeImages",
        "ec2:DescribeInstanceTypes",
        # An IoT certificate and its key are made before they have an ARN (Service Authorization
        # Reference, AWS IoT: CreateKeysAndCertificate, no resource types).
        "iot:CreateKeysAndCertificate",
    }
)

# Pseudo parameters in an Fn::Sub ARN stand for one definite value each.
_PSEUDO: Final = {
    "${AWS::Partition}": "aws",
    "${AWS::Region}": "region",
    "${AWS::AccountId}": "account",
    "${AWS::URLSuffix}": "amazonaws.com",
    "${!": "${",
}
# Condition keys that pin a statement to named resources when the resource ARN cannot.
_SCOPING_CONDITION_KEYS: Final = frozenset({"kms:ResourceAliases", "kms:RequestAlias"})
# EC2 resources have generated ids: gangway's are the ones tagged `gangway` (every create call must
# tag, every change needs the tag), and tags may be written only by those create calls.
# The hosting role narrows further, to the session's own tenant (`gangway:tenant`, issue 15.5).
_TAG_CONDITION_KEYS: Final = frozenset(
    {
        "aws:ResourceTag/gangway",
        "aws:RequestTag/gangway",
        "ec2:CreateAction",
        "aws:ResourceTag/gangway:tenant",
        "aws:RequestTag/gangway:tenant",
    }
)
# The tenancy broker assumes the role a customer's quick-create stack made (gangway-access-*) in
# accounts gangway cannot know in advance; the per-tenant ExternalId guards it (DESIGN.md section 2).
_CUSTOMER_ROLE: Final = re.compile(r"^arn:aws:iam::\*:role/gangway-access-\*$")
# What a launch uses without creating it: RunInstances needs permission on the image, subnet and group.
_LAUNCH_INPUTS: Final = ("image/", "subnet/", "security-group/")
# Public parameters (the image publishers' `/aws/service/...`) belong to no account: their ARN has an
# empty account field, and reading them is all anyone may do (Systems Manager user guide, "Working with
# public parameters").
_PUBLIC_PARAMETERS: Final = "parameter/aws/service/"
# IoT certificate ids are generated (a hash of the certificate) and take no tags IAM can test, so
# `cert/*` is as narrow as IAM can say for what is done to an instance's certificate.
_IOT_CERT_ACTIONS: Final = frozenset(
    {
        "iot:AttachPolicy",
        "iot:DetachPolicy",
        "iot:AttachThingPrincipal",
        "iot:DetachThingPrincipal",
        "iot:UpdateCertificate",
        "iot:DeleteCertificate",
    }
)
# The agent's wheelhouse in the `gangway-artifacts` stack's bucket (CloudFormation names it
# gangway-artifacts-artifactsbucket-<random>): read-only, content-addressed, and not a stage's.
_AGENT_WHEELHOUSE: Final = "gangway-artifacts-*/agent/*"
_ARN: Final = re.compile(
    r"^arn:(?P<partition>[^:]+):(?P<service>[^:]+):(?P<region>[^:]*):(?P<account>[^:]*):(?P<rest>.+)$"
)
# A reference to another resource of the stack, e.g. "${SiteBucket.Arn}/*" or "${AgentEventsQueue.Arn}".
_RESOURCE_REF: Final = re.compile(r"^\$\{(?!AWS::)[A-Za-z0-9]+(\.[A-Za-z]+)?\}")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def scope_policy(doc: Mapping[str, Any], stage: str) -> Json:
    """A policy file's document for one stage's stack: region, account and stage filled in.

    `arn:aws:dynamodb:*:*:table/gangway-*-games` becomes
    `{"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/gangway-dev-games"}`.
    Actions, Sids and conditions are kept as they are, so the template cannot drift from the file.
    """
    out: Json = json.loads(json.dumps(doc))
    for stmt in out["Statement"]:
        if "Resource" in stmt:
            scoped = [_scope_resource(r, stage) for r in _as_list(stmt["Resource"])]
            stmt["Resource"] = scoped if isinstance(stmt["Resource"], list) else scoped[0]
        for test in stmt.get("Condition", {}).values():
            for key, value in test.items():
                values = [_scope_name(v, stage) for v in _as_list(value)]
                test[key] = values if isinstance(value, list) else values[0]
    return out


def _scope_name(value: Any, stage: str) -> Any:
    if not isinstance(value, str):
        return value
    value = value.replace("gangway-*-", f"gangway-{stage}-").replace("gangway/*/", f"gangway/{stage}/")
    return value.replace("gangway-*", f"gangway-{stage}-*")


def _scope_resource(resource: Any, stage: str) -> Any:
    if not isinstance(resource, str) or _CUSTOMER_ROLE.match(resource):
        return resource
    m = _ARN.match(resource)
    if m is None:
        return resource
    rest = m["rest"].replace("${", "${!")  # keep IAM policy variables literal inside Fn::Sub
    if m["service"] != "iot" or not rest.startswith(("topic/", "topicfilter/")):
        rest = _scope_name(rest, stage)  # MQTT topics are gangway/{tenant}/{game}/...: no stage in them
    region = "${AWS::Region}" if m["region"] == "*" else m["region"]
    account = "${AWS::AccountId}" if m["account"] == "*" else m["account"]
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:{m['service']}:{region}:{account}:{rest}"}


def policy_problems(
    doc: Mapping[str, Any], where: str, *, kind: PolicyKind = "identity", stage: str | None = None
) -> list[str]:
    """Every way `doc` grants more than it could; empty when it is least privilege.

    `stage=None` checks a shared policy file (region, account and stage may stay open); with a stage,
    a policy of that stage's template (nothing may stay open). Deny statements only take away.
    """
    problems: list[str] = []
    for n, stmt in enumerate(_as_list(doc.get("Statement", []))):
        if stmt.get("Effect") != "Allow":
            continue
        label = f"{where}: statement {stmt.get('Sid') or n}"
        if "NotAction" in stmt or "NotResource" in stmt:
            problems.append(f"{label}: NotAction/NotResource in an Allow grants everything else")
            continue
        actions = [a for a in _as_list(stmt.get("Action", [])) if isinstance(a, str)]
        problems += [f"{label}: wildcard action {a!r}" for a in actions if "*" in a]
        scoped_by_condition = _condition_names_ours(stmt.get("Condition", {}), stage)
        for resource in _as_list(stmt.get("Resource", [])):
            problem = _resource_problem(
                resource, actions, kind=kind, stage=stage, scoped_by_condition=scoped_by_condition
            )
            if problem:
                problems.append(f"{label}: {problem}")
    return problems


def _condition_names_ours(condition: Mapping[str, Any], stage: str | None) -> bool:
    """True when a condition pins the resource to one of ours, e.g. kms:ResourceAliases alias/gangway-dev-*.

    That is how IAM scopes a KMS key whose id the policy cannot know (KMS developer guide, "Use aliases
    to control access to KMS keys").
    """
    ours = "gangway-" if stage is None else f"gangway-{stage}-"
    if any(key in _TAG_CONDITION_KEYS for test in condition.values() for key in test):
        return True
    return any(
        isinstance(v, str) and ours in v
        for test in condition.values()
        for key, value in test.items()
        if key in _SCOPING_CONDITION_KEYS
        for v in _as_list(value)
    )


def _resource_problem(
    resource: Any, actions: list[str], *, kind: PolicyKind, stage: str | None, scoped_by_condition: bool
) -> str | None:
    if isinstance(resource, dict):
        if "Ref" in resource or "Fn::GetAtt" in resource:
            return None  # one resource of the stack
        sub = resource.get("Fn::Sub")
        text = sub[0] if isinstance(sub, list) else sub
        if not isinstance(text, str):
            return f"resource {resource!r} cannot be checked"
        for pseudo, value in _PSEUDO.items():
            text = text.replace(pseudo, value)
        return _text_problem(text, actions, kind=kind, stage=stage, scoped_by_condition=scoped_by_condition)
    if isinstance(resource, str):
        return _text_problem(
            resource, actions, kind=kind, stage=stage, scoped_by_condition=scoped_by_condition
        )
    return f"resource {resource!r} cannot be checked"


def _generated_ids_only(m: re.Match[str], actions: list[str]) -> bool:
    """Launch inputs (image, subnet, group), IoT certificates and public parameters: what gangway
    reads or uses but cannot name or tag."""
    if m["service"] == "ssm" and m["account"] == "":
        return set(actions) == {"ssm:GetParameter"} and m["rest"].startswith(_PUBLIC_PARAMETERS)
    if m["service"] == "ec2":
        return set(actions) == {"ec2:RunInstances"} and m["rest"].startswith(_LAUNCH_INPUTS)
    return m["service"] == "iot" and m["rest"] == "cert/*" and set(actions) <= _IOT_CERT_ACTIONS


def _agent_wheelhouse(m: re.Match[str], actions: list[str]) -> bool:
    """Reading the agent's wheelhouse: the artifacts bucket is one per account, shared by stages
    (deploy/bootstrap.json), so no stage can be named in it."""
    return m["service"] == "s3" and m["rest"] == _AGENT_WHEELHOUSE and set(actions) == {"s3:GetObject"}


def _text_problem(
    text: str, actions: list[str], *, kind: PolicyKind, stage: str | None, scoped_by_condition: bool
) -> str | None:
    if text == "*":
        if kind == "key" or all(a in NO_RESOURCE_LEVEL for a in actions):
            return None
        return f'"Resource": "*" for {sorted(set(actions) - NO_RESOURCE_LEVEL)}, which can be scoped'
    if _RESOURCE_REF.match(text):
        return None  # a resource of the stack (an object path after it, like "/*", stays inside it)
    if _CUSTOMER_ROLE.match(text) and set(actions) == {"sts:AssumeRole"}:
        return None
    m = _ARN.match(text)
    if m is None:
        return f"resource {text!r} is not an ARN"
    if _generated_ids_only(m, actions) or _agent_wheelhouse(m, actions):
        return None
    if stage is not None and "*" in (m["region"], m["account"]):
        return f"resource {text!r} leaves the region or account open"
    rest = m["rest"]
    if scoped_by_condition or "${iot:Connection.Thing." in rest:
        return None  # pinned by a condition, or by the connected thing itself (one value per client)
    if "gangway" not in rest:
        return f"resource {text!r} does not name one of gangway's resources"
    if m["service"] == "iot" and rest.startswith(("topic/gangway/", "topicfilter/gangway/")):
        return None  # MQTT topics carry tenant and game, not the stage (DESIGN.md section 4)
    if "*" in rest and stage is not None:
        before = rest.split("*", 1)[0]
        scoped = (f"gangway-{stage}-", f"gangway/{stage}/", f"gangway_{stage}_")
        if not any(s in before for s in scoped):
            return f"resource {text!r} has a wildcard before the stage's name prefix"
    return None


def template_policies(template: Mapping[str, Any]) -> Iterator[tuple[str, PolicyKind, Json]]:
    """Every permission policy inside a template: (where, kind, document). Trust policies are skipped."""
    for name, res in template.get("Resources", {}).items():
        rtype, props = res.get("Type", ""), res.get("Properties", {})
        if rtype == "AWS::IAM::Role":
            for p in props.get("Policies", []):
                yield f"{name}.{p.get('PolicyName')}", "identity", p["PolicyDocument"]
        elif rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") or rtype == "AWS::IoT::Policy":
            yield name, "identity", props["PolicyDocument"]
        elif rtype == "AWS::KMS::Key":
            yield name, "key", props["KeyPolicy"]
        elif rtype in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
            yield name, "resource", props["PolicyDocument"]
        elif rtype == "AWS::Serverless::Function":
            for p in _as_list(props.get("Policies", [])):
                if isinstance(p, dict) and "Statement" in p:
                    yield name, "identity", p

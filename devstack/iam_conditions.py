"""The emulator evaluates tag conditions for the hosting role's sessions, as IAM does (issue 15.5).

moto 5.2.5 checks an identity policy's actions and, for a few services, its resources; its conditions
it evaluates only with the request's `sts:ExternalId` (`moto/iam/access_control.py`
`IAMPolicyStatement._check_conditions`, `moto/iam/utils.py` `format_incoming_conditional_values`): a
condition on any other key finds no value and passes. It ignores AssumeRole's session tags too. So a
policy that lets a session touch only resources tagged with its own tenant would let it touch every
tenant's: the fake would be kinder than AWS exactly where tenants are kept apart.

For sessions of the roles registered in `STRICT_ROLES` (the hosting role, `policies/hosting-role.json`)
this module decides instead, with AWS's semantics for what gangway relies on:

- every resource the request names (EC2 instances, volumes, snapshots, security groups, images,
  subnets, VPCs; a CloudWatch Logs group; SSM parameters) must be allowed by some statement whose action,
  resource ARN and conditions all match it, and no Deny may match;
- `aws:RequestTag/…` is the request's tags (every TagSpecification's, or a Logs `tags` map), the same
  for each resource of the request, as in IAM; an existing resource also has its tags in the emulator
  (`aws:ResourceTag/…`, `ec2:ResourceTag/…`), a created one `ec2:CreateAction` and no resource tags;
- `aws:PrincipalTag/…` is the session's tags from AssumeRole, and `${aws:PrincipalTag/…}` in a Resource or
  a condition value is replaced by it (a missing tag makes the statement not match, as in IAM);
- StringEquals, StringNotEquals, StringLike, StringNotLike (with `IfExists`) and Null; a missing key fails
  a String test, as in IAM. Any other operator is refused (denies), so a policy cannot silently pass here.

A request naming no resource this module reads (IoT's certificate calls, STS) is matched on action and
conditions only,
as `devstack.iam._plain` does for moto; a request that names no resource is checked as `*`.
Sources: IAM User Guide, "IAM JSON policy elements: Condition operators", "Policy variables",
"Controlling access to AWS resources using tags"; EC2 User Guide, "Grant permission to tag resources
during creation" and "Example policies for working with the AWS CLI or an AWS SDK" (RunInstances).
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "STRICT_ROLES",
    "Resource",
    "decide",
    "record_session_tags",
    "request_resources",
    "session_tags",
]

# Role names whose sessions this module judges (devstack.iam.enforce registers the hosting role).
STRICT_ROLES: set[str] = set()
_TAGS: dict[str, dict[str, str]] = {}  # session access key id → its session tags
_LOCK = threading.Lock()
_VARIABLE: Final = re.compile(r"\$\{(aws:PrincipalTag/[^}]+)\}")


@dataclass(frozen=True)
class Resource:
    """One resource a request acts on: its ARN and its condition context."""

    arn: str
    tags: Mapping[str, str] = field(default_factory=dict)  # an existing resource's tags
    request_tags: Mapping[str, str] = field(default_factory=dict)  # the request's, for each resource
    create_action: str | None = None  # set for a resource this request creates (it has no tags yet)


def session_tags(access_key_id: str) -> dict[str, str]:
    """The tags AssumeRole gave the session with these keys (empty if none)."""
    with _LOCK:
        return dict(_TAGS.get(access_key_id, {}))


def record_session_tags() -> None:
    """Make moto's STS keep AssumeRole's `Tags` with the session it issues (idempotent)."""
    from moto.sts.responses import TokenResponse

    if getattr(TokenResponse, "gangway_tags", False):
        return
    original = TokenResponse.assume_role

    def assume_role(self: Any) -> Any:
        result = original(self)
        tags = _query_tags(self.querystring)
        name, arn = self._get_param("RoleSessionName"), self._get_param("RoleArn")
        for role in reversed(self.backend.assumed_roles):
            if role.session_name == name and role.role_arn == arn:
                with _LOCK:
                    _TAGS[role.access_key_id] = tags
                break
        return result

    TokenResponse.assume_role = assume_role  # type: ignore[method-assign]
    TokenResponse.gangway_tags = True  # type: ignore[attr-defined]


def _query_tags(query: Mapping[str, list[str]]) -> dict[str, str]:
    """`Tags.member.N.Key`/`.Value` of a query-protocol request (STS AssumeRole)."""
    out = {}
    for key, values in query.items():
        m = re.fullmatch(r"Tags\.member\.(\d+)\.Key", key)
        if m:
            value = query.get(f"Tags.member.{m.group(1)}.Value", [""])
            out[values[0]] = value[0]
    return out


def decide(
    policies: list[Mapping[str, Any]], action: str, resources: list[Resource], principal: Mapping[str, str]
) -> bool:
    """Whether IAM allows `action` on every one of `resources` for a session tagged `principal`."""
    statements = [s for p in policies for s in _as_list(p.get("Statement", []))]
    for resource in resources or [Resource("*")]:
        allowed = False
        for stmt in statements:
            if not _matches(stmt, action, resource, principal):
                continue
            if stmt.get("Effect") == "Deny":
                return False
            allowed = True
        if not allowed:
            return False
    return True


def _matches(stmt: Mapping[str, Any], action: str, resource: Resource, principal: Mapping[str, str]) -> bool:
    if not any(_like(a, action, case=False) for a in _as_list(stmt.get("Action", []))):
        return False
    patterns = []
    for raw in _as_list(stmt.get("Resource", "*")):
        filled = _fill(str(raw), principal)
        if filled is None:
            continue
        patterns.append(filled)
    if resource.arn != "*" and not any(_like(p, resource.arn) for p in patterns):
        return False
    if resource.arn == "*" and not (patterns and _names_none(action, patterns)):
        return False
    return _conditions_hold(stmt.get("Condition", {}), resource, principal)


def _names_none(action: str, patterns: list[str]) -> bool:
    """A request naming no resource: allowed by "*", or by any ARN for a service this module cannot
    name resources of (as moto checks those)."""
    return "*" in patterns or action.split(":", 1)[0] not in _NAMED_SERVICES


def _conditions_hold(condition: Mapping[str, Any], resource: Resource, principal: Mapping[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, expected in tests.items():
            values = [_fill(str(v), principal) for v in _as_list(expected)]
            if not _test(operator, _context(key, resource, principal), [v for v in values if v is not None]):
                return False
    return True


def _context(key: str, resource: Resource, principal: Mapping[str, str]) -> str | None:
    kind, _, name = key.partition("/")
    if kind == "aws:PrincipalTag":
        return principal.get(name)
    if kind in ("aws:ResourceTag", "ec2:ResourceTag"):
        return None if resource.create_action else resource.tags.get(name)
    if kind == "aws:RequestTag":
        return resource.request_tags.get(name)
    if key == "ec2:CreateAction":
        return resource.create_action
    return None


def _test(operator: str, value: str | None, expected: list[str]) -> bool:
    if_exists = operator.endswith("IfExists")
    op = operator.removesuffix("IfExists")
    if op == "Null":
        return (value is None) == (expected[0].lower() == "true")
    if value is None:
        return if_exists or op in ("StringNotEquals", "StringNotLike")
    if op == "StringEquals":
        return value in expected
    if op == "StringNotEquals":
        return value not in expected
    if op == "StringLike":
        return any(_like(e, value) for e in expected)
    if op == "StringNotLike":
        return not any(_like(e, value) for e in expected)
    return False  # an operator this fake does not evaluate denies rather than passing


def _fill(text: str, principal: Mapping[str, str]) -> str | None:
    """`${aws:PrincipalTag/k}` replaced by the session's tag; None when the session lacks it."""
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        value = principal.get(m.group(1).split("/", 1)[1])
        missing = missing or value is None
        return value or ""

    out = _VARIABLE.sub(sub, text)
    return None if missing else out


def _like(pattern: str, value: str, *, case: bool = True) -> bool:
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ----- what a request names ---------------------------------------------------------------------------

_NAMED_SERVICES: Final = frozenset({"ec2", "logs", "ssm"})
# EC2 query parameters naming existing resources, by resource type (EC2 API reference).
_EC2_PARAMS: Final = {
    "InstanceId": "instance",
    "VolumeId": "volume",
    "SnapshotId": "snapshot",
    "SourceSnapshotId": "snapshot",
    "GroupId": "security-group",
    "SecurityGroupId": "security-group",
    "ImageId": "image",
    "SubnetId": "subnet",
    "VpcId": "vpc",
}
# What each create call makes (the types its TagSpecifications may tag).
_EC2_CREATES: Final = {
    "RunInstances": ("instance", "volume"),
    "CreateVolume": ("volume",),
    "CreateSnapshot": ("snapshot",),
    "CreateSecurityGroup": ("security-group",),
}


def request_resources(
    action: str, data: Mapping[str, Any], body: bytes, *, region: str, account: str, path: str = ""
) -> list[Resource]:
    """The resources a request acts on, each with its context (empty: the request names none)."""
    service, _, name = action.partition(":")
    if service == "iot":
        # IoT's REST paths name a thing (`/things/{thingName}[/principals]`); other IoT requests name
        # nothing this fake checks (certificates have generated ids, as deploy/policy.py says).
        thing = re.match(r"^/things/([^/?]+)", path)
        return [Resource(f"arn:aws:iot:{region}:{account}:thing/{thing.group(1)}")] if thing else []
    if service == "ec2":
        return _ec2_resources(name, _flat(data), region, account)
    if service in ("logs", "ssm"):
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {}
        if service == "logs":
            return _logs_resources(params, name, region, account)
        return _ssm_resources(params, region, account)
    return []


def _flat(data: Mapping[str, Any]) -> dict[str, str]:
    return {k: (v[0] if isinstance(v, list) and v else str(v)) for k, v in data.items()}


def _ec2_arn(kind: str, ident: str, region: str, account: str) -> str:
    owner = "" if kind in ("snapshot", "image") else account  # EC2 ARNs: snapshots and images name none
    return f"arn:aws:ec2:{region}:{owner}:{kind}/{ident}"


def _ec2_resources(name: str, params: dict[str, str], region: str, account: str) -> list[Resource]:
    from moto.ec2.models import ec2_backends

    tags = ec2_backends[account][region].tags
    requested: dict[str, dict[str, str]] = {}
    for key, value in params.items():
        m = re.fullmatch(r"TagSpecification\.(\d+)\.ResourceType", key)
        if m:
            n = m.group(1)
            requested[value] = {
                params[k]: params.get(k[: -len("Key")] + "Value", "")
                for k in params
                if re.fullmatch(rf"TagSpecification\.{n}\.Tag\.\d+\.Key", k)
            }
    request_tags = {k: v for spec in requested.values() for k, v in spec.items()}
    out: list[Resource] = []
    for key, value in params.items():
        base = re.sub(r"\.\d+$", "", key)
        kind = _EC2_PARAMS.get(base)
        if kind is None or (name == "CreateSnapshot" and kind == "snapshot"):
            continue
        arn = _ec2_arn(kind, value, region, account)
        out.append(Resource(arn, dict(tags.get(value, {})), request_tags=request_tags))
    for kind in _EC2_CREATES.get(name, ()):
        if kind == "volume" and name == "RunInstances" and "volume" not in requested:
            continue  # the root volume goes with the instance; gangway tags its data volume itself
        arn = _ec2_arn(kind, "new", region, account)
        out.append(Resource(arn, request_tags=request_tags, create_action=name))
    return out


def _logs_resources(params: Mapping[str, Any], name: str, region: str, account: str) -> list[Resource]:
    group = params.get("logGroupName")
    if not isinstance(group, str):
        return []
    arn = f"arn:aws:logs:{region}:{account}:log-group:{group}"
    if name == "CreateLogGroup":
        tags = params.get("tags") or {}
        return [Resource(arn, request_tags=dict(tags), create_action=name)]
    return [Resource(arn)]


def _ssm_resources(params: Mapping[str, Any], region: str, account: str) -> list[Resource]:
    named: Any = next((params[k] for k in ("Names", "Name", "Path", "ResourceId") if params.get(k)), [])
    out = []
    for raw in _as_list(named):
        path = str(raw) if str(raw).startswith("/") else "/" + str(raw)
        owner = "" if path.startswith("/aws/service/") else account  # public parameters name no account
        out.append(Resource(f"arn:aws:ssm:{region}:{owner}:parameter{path}"))
    return out

"""IAM enforced in the embedded emulator: each handler calls AWS as its own identity (DESIGN.md §2).

In AWS each Lambda function has a role whose policy is its `policies/<function>.json` scoped by
`deploy/policy.py`. Here every handler runs in one process, so `enforce()` makes one IAM user per
function in moto with that same scoped document and keys moto issued, plus an admin user for what plays
AWS itself (the pump's receives, creating resources, tests' checks), and then switches moto's
enforcement on (`/moto-api/reset-auth`, what `INITIAL_NO_AUTH_ACTION_COUNT` sets at start-up).
`current_credentials` is the app's CREDENTIALS_SOURCE (chalicelib/credentials.py): the keys of the
function the `CURRENT_FUNCTION` contextvar names, or the admin's outside any handler. The pump, a
Chalice middleware (every route is the api function; every event handler is named by its Lambda
context) and the tests' direct calls set it.

moto checks actions against identity policies only (feasibility.md, last addendum): a missing action
fails as in AWS (AccessDenied), a too narrow resource does not; `tests/test_policy_lint.py` and
`deploy/policy.py` watch resources.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from devstack.iam_conditions import STRICT_ROLES
from devstack.iam_moto import correct_moto_auth

__all__ = [
    "CURRENT_FUNCTION",
    "DROP_ENV",
    "ENFORCE_ENV",
    "SOURCE",
    "Identities",
    "create_customer_role",
    "current_credentials",
    "customer_role_document",
    "customer_role_policy",
    "deployed_names",
    "enforce",
    "enforced",
    "function_policies",
    "hosting_role_arn",
    "hosting_role_policy",
    "identify_handlers",
    "instance_credentials",
    "instance_role_policy",
    "running_as",
    "tool_environment",
]

ROOT: Final = Path(__file__).resolve().parent.parent
# On by default in `make run` and the tests; `GANGWAY_ENFORCE_IAM=0` turns it off (the app finds the
# identities through SOURCE).
ENFORCE_ENV: Final = "GANGWAY_ENFORCE_IAM"
# "<function>:<action>" (e.g. "jobs:states:StartExecution"): that function's user is made without that
# action, to prove a policy gap fails as AccessDenied (tests/test_iam_enforced.py); "hosting:<action>"
# takes it from the hosting role the broker assumes for hosted tenants.
DROP_ENV: Final = "GANGWAY_IAM_DROP"
HOSTING: Final = "hosting"
SOURCE: Final = "devstack.iam:current_credentials"
ACCOUNT: Final = "123456789012"  # moto's default account


CURRENT_FUNCTION: ContextVar[str | None] = ContextVar("gangway_current_function", default=None)

Keys = tuple[str, str, str | None]


@dataclass
class Identities:
    """Keys moto issued: the admin's and each function's (by its name in .chalice/config.json)."""

    admin: Keys = ("testing", "testing", "testing")  # before enforce(): moto accepts anything
    functions: dict[str, Keys] = field(default_factory=dict)


_IDENTITIES = Identities()


def enforced(env: Mapping[str, str] | None = None) -> bool:
    """Whether IAM is enforced: always, unless GANGWAY_ENFORCE_IAM turns it off (`0`), because a call a
    policy does not allow must fail here as it would in AWS, not at a user's first `/start`."""
    e = os.environ if env is None else env
    return e.get(ENFORCE_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}


def current_credentials() -> Keys:
    """The credentials of the function running now (the admin's outside any handler).

    A function without an identity is an error, not the admin: a handler that slipped through
    unscoped would hide exactly the gap enforcement is for.
    """
    name = CURRENT_FUNCTION.get()
    if not _IDENTITIES.functions:
        # Not the process that made the identities (a child a test starts, or before enforce()): the
        # keys its environment holds, which enforce() set to the admin's in the parent.
        env = os.environ
        key, secret = env.get("AWS_ACCESS_KEY_ID", "testing"), env.get("AWS_SECRET_ACCESS_KEY", "testing")
        return (key, secret, env.get("AWS_SESSION_TOKEN"))
    if name is None:
        return _IDENTITIES.admin
    return _IDENTITIES.functions[name]


@contextmanager
def running_as(function: str) -> Iterator[None]:
    """Calls in this block are the Lambda function `function`'s (api_handler, jobs, steps, …)."""
    token = CURRENT_FUNCTION.set(function)
    try:
        yield
    finally:
        CURRENT_FUNCTION.reset(token)


def identify_handlers(app: Any) -> None:
    """A Chalice middleware naming the function each invocation runs as: every route is the api
    function's (`api_handler`); an event handler is the one its Lambda context names."""

    def middleware(event: Any, get_response: Any) -> Any:
        context = getattr(event, "context", None)
        name = getattr(context, "function_name", None) if context is not None else None
        if not isinstance(name, str) or hasattr(event, "method"):
            name = "api_handler"  # a Request: API Gateway's routes all run in the api function
        with running_as(name):
            return get_response(event)

    app.register_middleware(middleware, "all")


def deployed_names(stage: str) -> dict[str, str]:
    """The environment naming tables, queues, state machines and the SecureString parameters as a deployed
    stage names them (`gangway-<stage>-…`): moto matches DynamoDB's table ARN against a policy's
    Resource, so under enforcement the names must be the ones the policies are written for."""
    from deploy.template.keys import secure_parameter
    from deploy.template.stage import Stage, queue_names, table_names

    named = Stage(stage, {}, {})
    return {
        **table_names(named),
        **queue_names(named),
        "WORKFLOWS_PREFIX": named.prefix,
        "DISCORD_BOT_TOKEN_PARAMETER": secure_parameter(stage, "discord-bot-token"),
        "VAPID_PARAMETER": secure_parameter(stage, "vapid-keys"),
        "VAPID_PUBLIC_PARAMETER": secure_parameter(stage, "vapid-public"),
        "IPAUTH_KEYS_PARAMETER": secure_parameter(stage, "ipauth-keys"),
        "HOSTING_ROLE_ARN": hosting_role_arn(stage),
    }


def hosting_role_arn(stage: str) -> str:
    """The role the broker assumes for hosted tenants, as deploy/template/hosting.py names it."""
    from deploy.template.hosting import hosting_role_name

    return f"arn:aws:iam::{ACCOUNT}:role/{hosting_role_name(stage)}"


def hosting_role_policy(stage: str) -> dict[str, Any]:
    """`policies/hosting-role.json` as the template gives the hosting role, Fn::Sub resolved, its
    conditions and ARN patterns kept: devstack/iam_conditions.py evaluates them as IAM does."""
    from deploy.policy import scope_policy

    doc = scope_policy(json.loads((ROOT / "policies" / "hosting-role.json").read_text()), stage)
    function, action = _dropped()
    if function == HOSTING:
        doc = _without(doc, action)
    for stmt in doc["Statement"]:
        res = stmt.get("Resource")
        if res is not None:
            values = [_resolve(r) for r in (res if isinstance(res, list) else [res])]
            stmt["Resource"] = values if isinstance(res, list) else values[0]
    return doc


def _create_hosting_role(iam: Any, stage: str, functions: Mapping[str, str]) -> None:
    """The hosting role as the template makes it: trusting the functions whose policy may assume it
    (AssumeRole and TagSession, with the tenant tag), with the tenant-scoped policy; moto's own checks
    give way to devstack/iam_conditions.py for its sessions."""
    from deploy.template.hosting import hosting_trust

    name = hosting_role_arn(stage).rsplit("/", 1)[1]
    principals = [f"arn:aws:iam::{ACCOUNT}:user/{user}" for user in functions.values()]
    trust = hosting_trust(principals)
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(
        RoleName=name, PolicyName="TenantScoped", PolicyDocument=json.dumps(hosting_role_policy(stage))
    )
    STRICT_ROLES.add(name)


def function_policies(stage: str) -> dict[str, dict[str, Any]]:
    """Each function's policy as the template gives its role (deploy/template/functions.py), with
    CloudFormation's Fn::Sub resolved for this account and region."""
    from deploy.policy import scope_policy
    from deploy.template.stage import Stage

    out: dict[str, dict[str, Any]] = {}
    for name, cfg in Stage.load("local").functions.items():
        doc = json.loads((ROOT / "policies" / Path(cfg["iam_policy_file"]).name).read_text())
        out[name] = _plain(scope_policy(doc, stage))
    function, action = _dropped()
    if function and function != HOSTING:
        out[function] = _without(out[function], action)
    return out


def _dropped() -> tuple[str, str]:
    """GANGWAY_IAM_DROP's (function or `hosting`, action), or empty strings."""
    function, _, action = os.environ.get(DROP_ENV, "").strip().partition(":")
    return function, action


def _without(doc: Mapping[str, Any], action: str) -> dict[str, Any]:
    """`doc` with `action` taken out of every statement (a statement left with none goes); an action
    the document never allows is an error, so a mistyped drop cannot pass for a proof."""
    out: dict[str, Any] = json.loads(json.dumps(doc))
    kept: list[Any] = []
    found = False
    for stmt in out["Statement"]:
        actions = stmt.get("Action", [])
        listed = actions if isinstance(actions, list) else [actions]
        found = found or action in listed
        stmt["Action"] = [a for a in listed if a != action]
        if stmt["Action"]:
            kept.append(stmt)
    if not found:
        raise ValueError(f"{DROP_ENV}: the policy does not allow {action}")
    out["Statement"] = kept
    return out


def instance_role_policy(stage: str) -> dict[str, Any]:
    """The game instance role's policy as the hosted template gives it (deploy/template/iot.py
    `InstanceRole`), as moto checks it."""
    from deploy.template.iot import iot_resources
    from deploy.template.stage import Stage

    role = iot_resources(Stage(stage, {}, {}))["InstanceRole"]["Properties"]
    statements: list[Any] = []
    for p in role["Policies"]:
        statements += p["PolicyDocument"]["Statement"]
    return _plain({"Version": "2012-10-17", "Statement": statements})


def instance_credentials(stage: str, instance_id: str) -> dict[str, str]:
    """Temporary keys of the instance role (`gangway-<stage>-instance`) as EC2 hands them to an instance
    through its metadata service: EC2 assumes the role itself (its trust names ec2.amazonaws.com, which
    no caller here is), so moto's STS backend (the server runs in this process) issues the session
    directly. Calls signed with them are checked against the role's policy (`instance_role_policy`)."""
    from moto.sts.models import sts_backends

    role = f"arn:aws:iam::{ACCOUNT}:role/gangway-{stage}-instance"
    session = sts_backends[ACCOUNT]["aws"].assume_role(
        region_name="us-east-1",
        role_session_name=instance_id,
        role_arn=role,
        policy="",
        duration=6 * 3600,
        external_id="",
    )
    return {
        "AccessKeyId": str(session.access_key_id),
        "SecretAccessKey": str(session.secret_access_key),
        "Token": str(session.session_token),
    }


def customer_role_policy() -> dict[str, Any]:
    """Every statement `policies/customer-role.yaml` gives its access role (`Role`), as moto checks it."""
    return _plain(customer_role_document())


def customer_role_document() -> dict[str, Any]:
    """Every statement `policies/customer-role.yaml` gives its access role (`Role`), as written."""
    from cfnlint.decode import decode_str  # type: ignore[import-untyped]

    template, matches = decode_str((ROOT / "policies" / "customer-role.yaml").read_text())
    if matches:
        raise ValueError(f"policies/customer-role.yaml does not parse: {matches}")
    resources = template["Resources"]
    statements: list[Any] = []
    for p in resources["Role"]["Properties"]["Policies"]:
        statements += p["PolicyDocument"]["Statement"]
    for res in resources.values():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::RolePolicy" and props.get("RoleName") == {"Ref": "Role"}:
            statements += props["PolicyDocument"]["Statement"]
    return {"Version": "2012-10-17", "Statement": statements}


# moto 5.2.5 matches a statement's Resource against the request's resource, but only SQS (the queue's
# ARN), IAM and STS (the role's ARN) name one; every other service's requests stand for "*", which no
# ARN pattern matches. So those statements get "*": the action is what moto can check for them.
_RESOURCE_AWARE: Final = frozenset({"sqs", "iam", "sts"})


# Actions moto 5.2.5 checks against "*" even in a resource-aware service: `moto/sqs/responses.py`
# `_determine_resource` reads the queue from a QueueUrl parameter or the path, and GetQueueUrl has
# neither (its QueueName is in the body), so the request's resource is "*".
_UNNAMED: Final = frozenset({"sqs:GetQueueUrl"})
# moto names an action "<the credential scope's service>:<operation>" (`moto/iam/access_control.py`,
# IAMRequestBase.__init__). IoT's data plane signs as "iotdata" (botocore's iot-data signingName), so
# moto checks `iotdata:Publish` where IAM checks `iot:Publish`: those statements also allow the alias.
_IOT_DATA: Final = frozenset(
    {
        "iot:Publish",
        "iot:GetThingShadow",
        "iot:UpdateThingShadow",
        "iot:DeleteThingShadow",
        "iot:GetRetainedMessage",
    }
)


def _plain(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A template policy as moto can check it: Fn::Sub ARNs filled in; other intrinsics (a Ref, a
    GetAtt) become "*"; resources "*" for services (and actions) moto names no resource for; IoT data
    actions under the name moto checks too; conditions dropped (they may hold intrinsics, and moto
    evaluates few condition keys)."""
    out: dict[str, Any] = json.loads(json.dumps(doc))
    extra: list[dict[str, Any]] = []
    for stmt in out["Statement"]:
        stmt.pop("Condition", None)
        raw = stmt.get("Action", [])
        actions = [str(a) for a in (raw if isinstance(raw, list) else [raw])]
        aliases = ["iotdata:" + a.split(":", 1)[1] for a in actions if a in _IOT_DATA]
        if aliases:
            stmt["Action"] = actions = actions + aliases
        services = {a.split(":", 1)[0] for a in actions}
        if "Resource" in stmt and not services <= _RESOURCE_AWARE:
            stmt["Resource"] = "*"
        elif "Resource" in stmt:
            res = stmt["Resource"]
            values = [_resolve(r) for r in (res if isinstance(res, list) else [res])]
            stmt["Resource"] = values if isinstance(res, list) else values[0]
            unnamed = [a for a in actions if a in _UNNAMED]
            if unnamed and stmt.get("Effect") == "Allow":
                extra.append({"Effect": "Allow", "Action": unnamed, "Resource": "*"})
    out["Statement"] += extra
    return out


def _resolve(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        text = str(value["Fn::Sub"])
        for k, v in {"AWS::Partition": "aws", "AWS::Region": "*", "AWS::AccountId": ACCOUNT}.items():
            text = text.replace("${" + k + "}", v)
        text = re.sub(r"\$\{[A-Za-z0-9:.]+\}", "*", text)  # parameters such as ${HostedZoneId}
        return text.replace("${!", "${")
    return "*"


def enforce(endpoint_url: str, region: str, stage: str) -> Identities:
    """Make the admin and one user per function with their policies and keys, then enforce IAM.

    Call it once resources exist (they are made before, as the deployment's stack makes them). It sets
    this process's AWS_* environment to the admin's keys, for every client made outside the app.
    """
    import boto3

    iam = boto3.client("iam", region_name=region, endpoint_url=endpoint_url)
    admin = _user(
        iam,
        f"gangway-{stage}-admin",
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
    )
    policies = function_policies(stage)
    functions = {
        name: _user(iam, f"gangway-{stage}-{name}".replace("_", "-"), doc) for name, doc in policies.items()
    }
    from deploy.template.hosting import assumes_hosting_role

    _create_hosting_role(
        iam,
        stage,
        {
            name: f"gangway-{stage}-{name}".replace("_", "-")
            for name, doc in policies.items()
            if assumes_hosting_role(doc)
        },
    )
    _workflows_identity(iam, stage)
    correct_moto_auth()
    _IDENTITIES.admin = admin
    _IDENTITIES.functions = functions
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = admin[0], admin[1]
    os.environ.pop("AWS_SESSION_TOKEN", None)
    boto3.DEFAULT_SESSION = None  # its credentials were resolved once, from the fake keys
    req = urllib.request.Request(  # noqa: S310 - the loopback emulator
        endpoint_url + "/moto-api/reset-auth",
        data=b"0",
        headers={"Content-Type": "application/json"},  # a form body would be parsed away
        method="POST",
    )
    urllib.request.urlopen(req, timeout=10).close()  # noqa: S310 - the loopback emulator
    return _IDENTITIES


def tool_environment(stage: str) -> dict[str, str]:
    """What a tool run against this enforced emulator needs (`gangway plan|vapid|doctor --local` read it
    from stack.json): the admin's keys, since only keys moto issued get in, and the stage's deployed names."""
    admin = _IDENTITIES.admin
    return {**deployed_names(stage), "AWS_ACCESS_KEY_ID": admin[0], "AWS_SECRET_ACCESS_KEY": admin[1]}


def _workflows_identity(iam: Any, stage: str) -> None:
    """moto's Step Functions engine signs its task calls with the fixed keys "ak"/"sk"; in AWS they run
    as the workflows role (deploy/template/workflows.py: SendSteps). So a user with that role's policy
    gets those keys, re-keyed inside moto's own IAM backend (the server runs in this process)."""
    from moto.iam.models import iam_backends

    name = f"gangway-{stage}-workflows"
    steps = f"arn:aws:sqs:*:{ACCOUNT}:gangway-{stage}-steps"
    statement = {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": steps}
    key, _, _ = _user(iam, name, {"Version": "2012-10-17", "Statement": [statement]})
    backend = iam_backends[ACCOUNT]["aws"]
    issued = backend.access_keys.pop(key)
    issued.access_key_id, issued.secret_access_key = "ak", "sk"
    backend.access_keys["ak"] = issued


def _user(iam: Any, name: str, policy: Mapping[str, Any]) -> Keys:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"]), None


def create_customer_role(iam: Any, name: str, external_id: str) -> str:
    """A customer's access role as `policies/customer-role.yaml` makes it: trusting the hosting account
    with this ExternalId, carrying the stack's policies. Returns its ARN."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
            }
        ],
    }
    arn = str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"])
    iam.put_role_policy(
        RoleName=name, PolicyName="gangway", PolicyDocument=json.dumps(customer_role_policy())
    )
    return arn

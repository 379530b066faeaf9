"""Every AWS call the code makes is allowed by the policy of each function that makes it (issue 13).

The emulator used to enforce no IAM, so a call a function's role lacks (the security-group calls of
CreateGame, `ec2:DeleteSnapshot` in a tenant's removal, `logs:DeleteLogGroup`) passed every test and
failed only in AWS. This check is static and fast: it reads `chalicelib/` for every boto3 client method
called (an attribute named like an operation of a service the module talks to, or a paginator's name),
and `CALLS` below says which functions run each one and in whose account. Then:

- a call found in the code but missing from `CALLS` fails (new code must say who runs it);
- each function's `policies/<function>.json` must allow the action of every call it runs with its own
  role; a call the broker makes for a hosted tenant (and every IoT identity call, made in gangway's
  account) runs as the hosting role, so `policies/hosting-role.json` must allow it and the function
  must be allowed to assume that role (issue 15.5);
- a call made in the tenant's account must also be allowed by `policies/customer-role.yaml` (customer
  tenants use the role the broker assumes there).

Like moto's enforcement it checks actions, not resources or conditions: those are `deploy/policy.py`'s
least-privilege check and parliament's (test_policy_lint.py). DynamoDB (PynamoDB) is not scanned here;
the emulator's enforcement covers it.
"""

from __future__ import annotations

import ast
import copy
import fnmatch
import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final

import botocore.session
import pytest
from botocore import xform_name

from devstack.iam import customer_role_document
from devstack.iam_moto import BATCH_ACTIONS

ROOT: Final = Path(__file__).resolve().parents[1]
POLICIES: Final = ROOT / "policies"
HANDLERS: Final = ("api_handler", "jobs", "steps", "agent_events", "reaper", "ec2_events", "agent_intake")

# The action a boto3 service's operations are authorised as, where it is not the endpoint prefix.
_IAM_PREFIX: Final = {"iot-data": "iot", "stepfunctions": "states"}
# sts:GetCallerIdentity needs no permission (STS API reference: "No permissions are required").
_ALWAYS_ALLOWED: Final = frozenset({"sts:GetCallerIdentity"})

A, J, S, E, R, X, N = HANDLERS  # N: agent_intake
_PUBLISHERS: Final = frozenset({A, J, S, E, R})
_TENANT_STEPS_AND_JOBS: Final = frozenset({S, J})


class Call:
    """Who runs one boto3 call, and in which accounts: made in the tenant's account (`tenant`), the
    customer role must allow it; made in gangway's account (`hosting`), the function's own policy must,
    or, when the broker makes it for a tenant (`brokered`), the hosting role's."""

    def __init__(
        self, handlers: Iterable[str], *, tenant: bool = False, hosting: bool = True, brokered: bool = False
    ) -> None:
        self.handlers = frozenset(handlers)
        self.tenant = tenant
        self.hosting = hosting
        self.brokered = brokered


def _t(*handlers: str) -> Call:
    """A call in the tenant's account, through the broker: the hosting role, or the customer role."""
    return Call(handlers, tenant=True, brokered=True)


def _g(*handlers: str) -> Call:
    """A call for a tenant in gangway's account, through the broker (the hosting role), whatever the
    tenant's account (instances/identity.py: IoT identities live in gangway's)."""
    return Call(handlers, brokered=True)


def _c(*handlers: str) -> Call:
    """A call made only as a customer's role, never with the function's own."""
    return Call(handlers, tenant=True, hosting=False)


# module (under chalicelib/) → the services its clients talk to → {client method: who runs it}.
# Read the call sites when you change a row: commands run in the api Lambda unless they are a
# `@jobs.job`; `@STEPS.step` in steps; `@AGENT_EVENTS.on` in agent_events; a tenant's removal
# (lifecycle/teardown.py) in jobs; the rescue steps also in the reaper (lifecycle/reconcile.py runs them
# for games whose workflow ended without finishing).
CALLS: Final[dict[str, tuple[tuple[str, ...], dict[str, Call]]]] = {
    # IP-link tokens: the page's API opens them; /ip and /addguestip (api), addip.push's fallback link
    # (jobs) and web push's flow (steps) seal them, with keys read from SSM once per container.
    "access/tokens.py": ((), {}),  # AES-GCM in-process: no AWS call per token (issue 15.3)
    "access/linkkeys.py": (("ssm",), {"get_parameter": Call({A, J, S})}),
    # Firewall sync and agent requests: IoT Core's data API.
    "access/firewall.py": (("iot-data",), {"publish": Call(_PUBLISHERS)}),
    "agents/publisher.py": (("iot-data",), {"publish": Call(_PUBLISHERS)}),
    "lifecycle/collaborators.py": (
        ("iot-data", "stepfunctions"),
        {
            "publish": Call(_PUBLISHERS),
            # Agent waits end in agent_events; steps answer their own tokens.
            "send_task_success": Call({S, E}),
            "send_task_failure": Call({S, E}),
            "send_task_heartbeat": Call({S, E}),
        },
    ),
    "workflows/runner.py": (
        ("stepfunctions",),
        {"send_task_success": Call({S}), "send_task_failure": Call({S})},
    ),
    # begin_* run in the api (commands), agent_events (idle shutdown, Spot notice), ec2_events (the
    # Spot warning); web push's flow starts in jobs (addip.push) and in steps (push.game_started: the
    # members who asked on /start).
    "workflows/engine.py": (
        ("stepfunctions",),
        {
            "start_execution": Call({A, J, S, E, X}),
            "list_state_machines": Call({A, J, S, E, X}),
            # The reaper's reconciliation pass reads how a stuck game's execution ended.
            "describe_execution": Call({R}),
        },
    ),
    # The browser's answer to a push (api) ends the flow's wait.
    "push/service.py": (("stepfunctions",), {"send_task_success": Call({A})}),
    "push/vapid.py": (("ssm",), {"get_parameter": Call({A, S})}),
    "jobs/queue.py": (("sqs",), {"get_queue_url": Call({A}), "send_message": Call({A})}),
    # The IoT rule's intake, moved to the fair agent-events queue by tenant (issue 15.4).
    "agents/intake.py": (("sqs",), {"get_queue_url": Call({N}), "send_message_batch": Call({N})}),
    # The bot token: registration, and the channel fallback of any reply editor whose interaction
    # token expired (jobs, a workflow's progress edits in steps and agent_events).
    "wiring.py": (
        ("ssm", "sts"),
        {"get_parameter": Call({J, S, E}), "get_caller_identity": Call(HANDLERS)},
    ),
    "tenancy/broker.py": (("sts",), {"assume_role": Call({J, S, R})}),
    # /setup's verify job runs in jobs, as the customer's role (dry runs of what gangway will do).
    "tenancy/onboarding.py": (
        ("ec2", "iot", "sts", "iam"),
        {
            "get_caller_identity": _c(J),
            "describe_instances": _c(J),
            "describe_volumes": _c(J),
            "describe_snapshots": _c(J),
            "run_instances": _c(J),
            "create_volume": _c(J),
            "describe_endpoint": _c(J),
            "get_role": _c(J),
        },
    ),
    "instances/ec2.py": (
        ("ec2",),
        {
            "run_instances": _t(S),
            "create_volume": _t(S),
            "attach_volume": _t(S),
            "detach_volume": _t(S, R),
            "delete_volume": _t(S, R),
            "terminate_instances": _t(S, R),
            "create_snapshot": _t(S),
            # /backupnow's latest snapshot (jobs), the tenant's removal (jobs), every workflow (steps).
            "describe_snapshots": _t(S, J, R),
            "delete_snapshot": _t(S, J),
            "describe_instances": _t(S, R),
            # /extenddisk (jobs) grows a running game's volume.
            "describe_volumes": _t(S, J, R),
            "modify_volume": _t(J),
            "describe_availability_zones": _t(S),
            "describe_subnets": _t(S),
            "enable_fast_snapshot_restores": _t(S),
            "disable_fast_snapshot_restores": _t(S, R),
            "describe_fast_snapshot_restores": _t(S, R),
        },
    ),
    "lifecycle/backup_game.py": (("ec2",), {"delete_snapshot": _t(S)}),
    "lifecycle/stop_game.py": (("ec2",), {"delete_snapshot": _t(S)}),
    "lifecycle/delete_game.py": (("ec2",), {"delete_snapshot": _t(S)}),
    "lifecycle/teardown.py": (("ec2",), {"delete_snapshot": _t(J)}),
    "lifecycle/ec2_events.py": (("ec2",), {"describe_instances": Call({X})}),
    # Each game's security group: CreateGame and every start (steps), /openport and /closeport
    # (jobs), DeleteGame (steps) and a tenant's removal (jobs).
    "instances/security.py": (
        ("ec2",),
        {
            "describe_vpcs": _t(S),
            "describe_security_groups": _t(S, J, R),
            "create_security_group": _t(S),
            "authorize_security_group_ingress": _t(S, J),
            "revoke_security_group_ingress": _t(S, J),
            "delete_security_group": _t(S, J, R),
        },
    ),
    # Each game's log group: made at start (steps), deleted with the game (steps) or the tenant (jobs).
    "instances/game_logs.py": (
        ("logs",),
        {"create_log_group": _t(S), "put_retention_policy": _t(S), "delete_log_group": _t(S, J)},
    ),
    # /setdns checks the zone (jobs); start and stop publish and remove the record (steps). Only in a
    # customer's account: Route 53 zones take no tag conditions, so a function role allowed to change
    # records could change every zone of the hosting account (the operator's own domains); a hosting
    # tenant's /setdns is refused by AWS, and told so.
    "instances/dns.py": (
        ("route53",),
        {
            "get_hosted_zone": _c(J),
            "list_resource_record_sets": _c(J, S, R),
            "change_resource_record_sets": _c(S, R),
        },
    ),
    # The instance's identity, made at start and retired at stop (steps): IoT in gangway's account,
    # SSM, EC2 and STS in the tenant's.
    "instances/identity.py": (
        ("ssm", "iot", "ec2", "sts"),
        {
            "describe_endpoint": _g(S),
            "create_thing": _g(S),
            "create_keys_and_certificate": _g(S),
            "attach_policy": _g(S),
            "attach_thing_principal": _g(S),
            "list_thing_principals": _g(S, R),
            "detach_policy": _g(S, R),
            "detach_thing_principal": _g(S, R),
            "update_certificate": _g(S, R),
            "delete_certificate": _g(S, R),
            "delete_thing": _g(S, R),
            "put_parameter": _t(S),
            "list_tags_for_resource": _t(S, R),
            "get_parameters_by_path": _t(S, R),
            "delete_parameters": _t(S, R),
            "associate_iam_instance_profile": _t(S),
            "describe_iam_instance_profile_associations": _t(S, R),
            "get_caller_identity": _t(S, R),
        },
    ),
    # Builds clients through the broker and calls none itself.
    "instances/gateways.py": ((), {}),
    # /terminal (jobs) assumes gangway-terminal (hosting) or the customer's terminal role.
    "instances/terminal.py": (("sts",), {"assume_role": _t(J)}),
}


@cache
def _operations(service: str) -> dict[str, str]:
    """{client method: IAM action} for a boto3 service."""
    model = botocore.session.get_session().get_service_model(service)
    prefix = _IAM_PREFIX.get(service, model.endpoint_prefix)
    # SQS's batch operations are authorised as their single action (devstack/iam_moto.py BATCH_ACTIONS).
    return {
        xform_name(op): BATCH_ACTIONS.get(f"{prefix}:{op}", f"{prefix}:{op}") for op in model.operation_names
    }


def client_calls(source: str, services: Iterable[str]) -> set[str]:
    """Every client method of `services` that `source` names: `x.describe_instances(...)`, a bound
    method passed along (`iot.delete_thing`), or a paginator (`get_paginator("list_state_machines")`).
    Methods of the module's own classes called on `self` are not client calls."""
    ops = {m for s in services for m in _operations(s)}
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in ops:
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.add(node.attr)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get_paginator"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in ops
        ):
            found.add(str(node.args[0].value))
    return found


def _action(services: Iterable[str], method: str) -> str:
    return next(_operations(s)[method] for s in services if method in _operations(s))


def allows(doc: Mapping[str, Any], action: str) -> bool:
    """Whether an Allow statement of `doc` names `action` (IAM's case-insensitive wildcard match).

    Resources and conditions are not evaluated, as in moto's enforcement.
    """
    statements = doc.get("Statement", [])
    for stmt in statements if isinstance(statements, list) else [statements]:
        if stmt.get("Effect") != "Allow":
            continue
        names = stmt.get("Action", [])
        for name in names if isinstance(names, list) else [names]:
            if isinstance(name, str) and fnmatch.fnmatchcase(action.lower(), name.lower()):
                return True
    return False


def hosting_role_policy() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((POLICIES / "hosting-role.json").read_text())
    return doc


def function_policy(handler: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((POLICIES / f"{handler}.json").read_text())
    return doc


def gaps(
    calls: Mapping[str, tuple[tuple[str, ...], Mapping[str, Call]]],
    policies: Mapping[str, Mapping[str, Any]],
    customer: Mapping[str, Any],
    hosting: Mapping[str, Any] | None = None,
) -> list[str]:
    """Each call some function runs whose action its policy (or the hosting or customer role) does not
    allow."""
    from deploy.template.hosting import assumes_hosting_role

    role = hosting_role_policy() if hosting is None else hosting
    out: list[str] = []
    for module, (services, methods) in sorted(calls.items()):
        for method, call in sorted(methods.items()):
            action = _action(services, method)
            if action in _ALWAYS_ALLOWED:
                continue
            if call.hosting and call.brokered:
                if not allows(role, action):
                    out.append(f"{module} {method}: policies/hosting-role.json lacks {action}")
                out += [
                    f"{module} {method}: policies/{h}.json cannot assume the hosting role"
                    for h in sorted(call.handlers)
                    if not assumes_hosting_role(policies[h])
                ]
            elif call.hosting:
                out += [
                    f"{module} {method}: policies/{h}.json lacks {action}"
                    for h in sorted(call.handlers)
                    if not allows(policies[h], action)
                ]
            if call.tenant and not allows(customer, action):
                out.append(f"{module} {method}: policies/customer-role.yaml lacks {action}")
    return out


def test_every_client_call_in_the_code_is_listed_with_who_runs_it() -> None:
    scanned = {
        str(p.relative_to(ROOT / "chalicelib")): p.read_text()
        for p in sorted((ROOT / "chalicelib").rglob("*.py"))
    }
    unlisted: list[str] = []
    for module, (services, methods) in CALLS.items():
        assert module in scanned, f"CALLS names {module}, which is gone"
        found = client_calls(scanned[module], services)
        unlisted += [f"{module}: {m} is called but not in CALLS" for m in sorted(found - set(methods))]
        unlisted += [
            f"{module}: CALLS lists {m}, which it no longer calls" for m in sorted(set(methods) - found)
        ]
    # A module not in CALLS that builds a client or pages through one must be added (gateway methods
    # named like operations, `lc.gateways.ec2(game).create_volume(...)`, are not client calls).
    for module, source in scanned.items():
        if module not in CALLS and any(s in source for s in (".client(", "boto3.client", "get_paginator(")):
            unlisted.append(f"{module}: builds AWS clients but is not in CALLS")
    assert not unlisted, "\n".join(unlisted)


def test_every_function_policy_and_the_customer_role_allow_every_call_they_run() -> None:
    policies = {h: function_policy(h) for h in HANDLERS}
    problems = gaps(CALLS, policies, customer_role_document())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("handler", "action"),
    [("jobs", "states:StartExecution"), ("steps", "sts:AssumeRole"), ("api_handler", "iot:Publish")],
)
def test_taking_one_needed_action_out_of_a_policy_fails_the_check(handler: str, action: str) -> None:
    policies = {h: function_policy(h) for h in HANDLERS}
    cut = copy.deepcopy(policies[handler])
    for stmt in cut["Statement"]:
        names = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        stmt["Action"] = [a for a in names if a != action] or ["none:Nothing"]
    problems = gaps(CALLS, {**policies, handler: cut}, customer_role_document())
    assert any(p.endswith(f"policies/{handler}.json lacks {action}") for p in problems), problems


@pytest.mark.parametrize("action", ["logs:DeleteLogGroup", "ec2:CreateSecurityGroup", "iot:CreateThing"])
def test_taking_one_needed_action_out_of_the_hosting_role_fails_the_check(action: str) -> None:
    policies = {h: function_policy(h) for h in HANDLERS}
    cut = hosting_role_policy()
    for stmt in cut["Statement"]:
        names = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        stmt["Action"] = [a for a in names if a != action] or ["none:Nothing"]
    problems = gaps(CALLS, policies, customer_role_document(), cut)
    assert any(p.endswith(f"policies/hosting-role.json lacks {action}") for p in problems), problems


def test_taking_one_needed_action_out_of_the_customer_role_fails_the_check() -> None:
    policies = {h: function_policy(h) for h in HANDLERS}
    customer = customer_role_document()
    for stmt in customer["Statement"]:
        names = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        stmt["Action"] = [a for a in names if a != "ec2:DeleteSecurityGroup"] or ["none:Nothing"]
    problems = gaps(CALLS, policies, customer)
    assert any(p.endswith("customer-role.yaml lacks ec2:DeleteSecurityGroup") for p in problems), problems


def test_the_scanner_sees_calls_bound_methods_and_paginators_but_not_own_methods() -> None:
    source = (
        "def f(ec2, iot, self):\n"
        "    ec2.describe_instances()\n"
        "    attempt(iot.delete_thing)\n"
        "    self.create_volume()\n"
        "    ec2.get_paginator('describe_snapshots')\n"
    )
    assert client_calls(source, ("ec2", "iot")) == {
        "describe_instances",
        "delete_thing",
        "describe_snapshots",
    }

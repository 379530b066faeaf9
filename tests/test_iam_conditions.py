"""The emulator's tag conditions follow IAM's semantics (devstack/iam_conditions.py, issue 15.5).

moto alone lets a condition on a resource's tag pass whatever the tag is; these tests pin down what the
strict evaluation does instead, as AWS documents it: a String test on a missing key fails, a policy
variable naming a tag the session lacks makes its statement not match, an explicit Deny wins, and a
session tag needs sts:TagSession in the role's trust.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devstack.iam_conditions import Resource, decide

TENANT = "${aws:PrincipalTag/gangway:tenant}"
MANAGE = {
    "Effect": "Allow",
    "Action": ["ec2:TerminateInstances"],
    "Resource": "arn:aws:ec2:*:*:instance/*",
    "Condition": {"StringEquals": {"aws:ResourceTag/gangway:tenant": TENANT}},
}
CREATE = {
    "Effect": "Allow",
    "Action": ["ec2:RunInstances"],
    "Resource": "arn:aws:ec2:*:*:instance/*",
    "Condition": {"StringEquals": {"aws:RequestTag/gangway:tenant": TENANT}},
}
LOGS = {
    "Effect": "Allow",
    "Action": ["logs:DeleteLogGroup"],
    "Resource": f"arn:aws:logs:*:*:log-group:/gangway/test/{TENANT}/*",
}
POLICY = {"Version": "2012-10-17", "Statement": [MANAGE, CREATE, LOGS]}
A = {"gangway:tenant": "a"}
INSTANCE = "arn:aws:ec2:us-east-1:123456789012:instance/i-1"


def _on(tags: dict[str, str]) -> list[Resource]:
    return [Resource(INSTANCE, tags)]


def test_a_resource_tag_condition_allows_only_the_sessions_own_tenant() -> None:
    assert decide([POLICY], "ec2:TerminateInstances", _on({"gangway:tenant": "a"}), A)
    assert not decide([POLICY], "ec2:TerminateInstances", _on({"gangway:tenant": "b"}), A)
    assert not decide([POLICY], "ec2:TerminateInstances", _on({"gangway": "a/x"}), A)  # the tag is missing
    assert not decide(
        [POLICY], "ec2:TerminateInstances", _on({"gangway:tenant": "a"}), {}
    )  # untagged session


def test_a_create_needs_the_sessions_tenant_in_the_request_tags() -> None:
    def new(tags: dict[str, str]) -> list[Resource]:
        return [Resource(INSTANCE, request_tags=tags, create_action="RunInstances")]

    assert decide([POLICY], "ec2:RunInstances", new({"gangway:tenant": "a"}), A)
    assert not decide([POLICY], "ec2:RunInstances", new({"gangway:tenant": "b"}), A)
    assert not decide([POLICY], "ec2:RunInstances", new({}), A)
    # Every resource of a request must be allowed: an existing one of another tenant spoils the call.
    both = [*new({"gangway:tenant": "a"}), Resource(INSTANCE, {"gangway:tenant": "b"})]
    assert not decide([POLICY], "ec2:RunInstances", both, A)


def test_a_policy_variable_in_a_resource_names_only_the_sessions_own_tenant() -> None:
    def group(tenant: str) -> list[Resource]:
        return [Resource(f"arn:aws:logs:us-east-1:123456789012:log-group:/gangway/test/{tenant}/valheim")]

    assert decide([POLICY], "logs:DeleteLogGroup", group("a"), A)
    assert not decide([POLICY], "logs:DeleteLogGroup", group("b"), A)
    assert not decide([POLICY], "logs:DeleteLogGroup", group(""), {})


def test_operators_ifexists_deny_and_unknown_operators() -> None:
    like = {**MANAGE, "Condition": {"StringLike": {"aws:ResourceTag/gangway:tenant": "a*"}}}
    assert decide([{"Statement": [like]}], "ec2:TerminateInstances", _on({"gangway:tenant": "ab"}), A)
    if_exists = {**MANAGE, "Condition": {"StringEqualsIfExists": {"aws:ResourceTag/gangway:tenant": "a"}}}
    assert decide([{"Statement": [if_exists]}], "ec2:TerminateInstances", _on({}), A)
    deny = {"Effect": "Deny", "Action": "ec2:*", "Resource": "*"}
    assert not decide(
        [POLICY, {"Statement": [deny]}], "ec2:TerminateInstances", _on({"gangway:tenant": "a"}), A
    )
    unknown = {**MANAGE, "Condition": {"NumericLessThan": {"aws:ResourceTag/gangway:tenant": "1"}}}
    assert not decide([{"Statement": [unknown]}], "ec2:TerminateInstances", _on({"gangway:tenant": "1"}), A)
    assert not decide([POLICY], "ec2:DeleteVolume", _on({"gangway:tenant": "a"}), A)  # no statement's action


def _role(
    iam: Any, name: str, trust_actions: list[str], principal: str, policy: dict[str, Any] = POLICY
) -> str:
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": trust_actions}],
    }
    arn = str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"])
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return arn


def test_in_the_emulator_moto_alone_ignores_the_tag_but_a_strict_role_does_not(emulator: Any) -> None:
    """The same policy on two roles: moto's own check lets a session terminate another tenant's
    instance (the fake kinder than AWS); registered as strict, the hosting role's sessions cannot."""
    import os

    import boto3

    from chalicelib.instances.ec2 import tags_for
    from chalicelib.wiring import container
    from devstack.iam import ACCOUNT, running_as
    from devstack.iam_conditions import STRICT_ROLES

    c = container()
    iam, ec2 = c.client("iam"), c.client("ec2")
    caller = f"arn:aws:iam::{ACCOUNT}:user/gangway-test-steps"
    pid = os.getpid()
    # moto matches an EC2 statement's Resource against "*" only (devstack.iam._plain), so "*" here.
    as_moto_sees_it = {"Version": "2012-10-17", "Statement": [{**MANAGE, "Resource": "*"}]}
    lenient = _role(
        iam, f"gangway-access-lenient-{pid}", ["sts:AssumeRole", "sts:TagSession"], caller, as_moto_sees_it
    )
    strict = _role(iam, f"gangway-access-strict-{pid}", ["sts:AssumeRole", "sts:TagSession"], caller)
    untagged = _role(iam, f"gangway-access-notags-{pid}", ["sts:AssumeRole"], caller)
    STRICT_ROLES.add(f"gangway-access-strict-{pid}")
    image = ec2.describe_images(Owners=["self"])["Images"][0]["ImageId"]

    def b_instance() -> str:
        tags = [{"ResourceType": "instance", "Tags": tags_for("b", "world", "server")}]
        run = ec2.run_instances(
            ImageId=image, InstanceType="t3.small", MinCount=1, MaxCount=1, TagSpecifications=tags
        )
        return str(run["Instances"][0]["InstanceId"])

    def session(role: str) -> Any:
        with running_as("steps"):
            creds = c.client("sts").assume_role(
                RoleArn=role, RoleSessionName="a-session", Tags=[{"Key": "gangway:tenant", "Value": "a"}]
            )["Credentials"]
        return boto3.client(
            "ec2",
            region_name=c.settings.region,
            endpoint_url=c.settings.aws_endpoint_url,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )

    try:
        session(lenient).terminate_instances(
            InstanceIds=[b_instance()]
        )  # moto: the condition never looked at
        with pytest.raises(ClientError) as refused:
            session(strict).terminate_instances(InstanceIds=[b_instance()])
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        with pytest.raises(ClientError) as untrusted:
            session(untagged)  # session tags without sts:TagSession in the trust: refused, as in IAM
        assert untrusted.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        STRICT_ROLES.discard(f"gangway-access-strict-{pid}")

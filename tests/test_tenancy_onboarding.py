"""Connecting a guild's own AWS account through signed component interactions; the broker and audit."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from chalicelib.discord import CallbackType
from chalicelib.games import GameState, GameStore
from chalicelib.tenancy import AuditLog, TenantStore
from chalicelib.wiring import container
from devstack.discord_user import Who, snowflake
from devstack.iam import customer_role_policy
from tests.helpers import Harness

STORE = TenantStore(default_region="us-east-1")


def _role(external_id: str | None) -> str:
    """A customer role in the emulator's IAM whose trust policy demands `external_id` (None: no
    ExternalId at all, a role any gangway user could assume)."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": "sts:AssumeRole",
    }
    if external_id is not None:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    trust = {"Version": "2012-10-17", "Statement": [statement]}
    name = f"gangway-access-Role-{snowflake()}"
    iam = container().client("iam")
    arn = str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"])
    # What policies/customer-role.yaml gives it: checked when the session runs with IAM enforced.
    iam.put_role_policy(
        RoleName=name, PolicyName="gangway", PolicyDocument=json.dumps(customer_role_policy())
    )
    return arn


def _connect(harness: Harness) -> str:
    """/setup, then Connect: returns the ExternalId the reply shows."""
    harness.command("setup")
    answer = harness.component("setup:connect")
    assert answer["type"] == CallbackType.CHANNEL_MESSAGE and answer["data"]["flags"] == 64
    tenant = STORE.read(harness.user.who.guild_id or "")
    assert tenant is not None and tenant.external_id
    assert tenant.external_id in answer["data"]["content"]
    return tenant.external_id


def _submit_role(harness: Harness, arn: str, region: str = "eu-west-1") -> Any:
    status, answer = harness.post(
        harness.user.modal_submit("setup:role", {"role_arn": arn, "region": region})
    )
    assert status == 200
    return answer


def _verify(harness: Harness) -> dict[str, Any]:
    """Press Verify (type 6), run the job, and return the edit it made to the message."""
    payload = harness.user.component("setup:verify")
    status, answer = harness.post(payload)
    assert (status, answer) == (200, {"type": CallbackType.DEFERRED_UPDATE_MESSAGE})
    harness.run_jobs_for(payload["token"])
    (call,) = harness.calls_for(payload["token"])
    assert call["method"] == "PATCH" and call["path"].endswith("/messages/@original")
    edit: dict[str, Any] = call["json"]
    return edit


@pytest.fixture
def deny_run_instances() -> Iterator[None]:
    """AWS answering UnauthorizedOperation to RunInstances, injected at the botocore seam like Stubber."""

    def deny(model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        body = {"Error": {"Code": "UnauthorizedOperation", "Message": "You are not authorized"}}
        return AWSResponse("https://ec2", 403, {}, None), body  # type: ignore[arg-type]

    def hook(client: Any) -> None:
        client.meta.events.register("before-call.ec2.RunInstances", deny)

    container().broker.hooks.append(hook)
    yield
    container().broker.hooks.remove(hook)


def test_connect_offers_a_quick_create_link_with_this_servers_external_id(harness: Harness) -> None:
    external_id = _connect(harness)
    answer = harness.component("setup:connect")
    buttons = answer["data"]["components"][0]["components"]
    link = urllib.parse.urlparse(buttons[0]["url"])
    query = urllib.parse.parse_qs(link.fragment.split("?", 1)[1])
    assert query["param_ExternalId"] == [external_id]
    assert query["param_GangwayAccountId"] == ["123456789012"]
    assert query["templateURL"][0].endswith("/gangway-customer-role.yaml")
    assert buttons[2]["custom_id"] == "setup:roleform"
    assert STORE.read(harness.user.who.guild_id or "").external_id == external_id  # type: ignore[union-attr]


def test_the_quick_create_link_is_one_cloudformation_accepts(harness: Harness) -> None:
    """CloudFormation's console takes a template URL only from S3 (an https object URL), not from the
    site's CloudFront address; the link opens the quick-create page of the tenant's region with the stack
    name and the tenant's ExternalId filled in."""
    external_id = _connect(harness)
    answer = harness.component("setup:connect")
    link = urllib.parse.urlparse(answer["data"]["components"][0]["components"][0]["url"])
    region = STORE.read(harness.user.who.guild_id or "").region  # type: ignore[union-attr]
    assert (link.scheme, link.netloc, link.path) == (
        "https",
        f"{region}.console.aws.amazon.com",
        "/cloudformation/home",
    )
    assert urllib.parse.parse_qs(link.query) == {"region": [region]}
    route, query_text = link.fragment.split("?", 1)
    assert route == "/stacks/quickcreate"
    query = urllib.parse.parse_qs(query_text, strict_parsing=True)
    assert set(query) == {"templateURL", "stackName", "param_ExternalId", "param_GangwayAccountId"}
    template = urllib.parse.urlparse(query["templateURL"][0])
    assert template.scheme == "https" and not template.query and not template.fragment
    assert re.fullmatch(
        r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\.s3\.[a-z]{2}(-[a-z]+)+-\d\.amazonaws\.com", template.netloc
    )
    assert template.path == "/gangway-customer-role.yaml"
    assert query["param_ExternalId"] == [external_id] and len(external_id) >= 16
    assert re.fullmatch(r"[A-Za-z0-9-]{1,128}", query["stackName"][0])


def test_each_tenant_gets_its_own_external_id(harness: Harness) -> None:
    first = _connect(harness)
    other = Who(guild_id=snowflake(), user_id=snowflake())
    harness.command("setup", who=other)
    harness.component("setup:connect", who=other)
    second = STORE.read(other.guild_id or "")
    assert second is not None and second.external_id and second.external_id != first


def test_role_form_opens_a_modal(harness: Harness) -> None:
    _connect(harness)
    answer = harness.component("setup:roleform")
    assert answer["type"] == CallbackType.MODAL
    assert [c["component"]["custom_id"] for c in answer["data"]["components"]] == ["role_arn", "region"]


@pytest.mark.parametrize(
    ("arn", "region", "message"),
    [
        ("not an arn", "eu-west-1", "isn't an IAM role ARN"),
        ("arn:aws:iam::12345:role/x", "eu-west-1", "isn't an IAM role ARN"),
        ("arn:aws:iam::123456789012:role/x", "mars-1", "isn't a region"),
        ("arn:aws:iam::123456789012:role/" + "x" * 3000, "eu-west-1", "isn't an IAM role ARN"),
    ],
)
def test_a_bad_role_arn_or_region_gets_a_clear_message_and_nothing_is_stored(
    harness: Harness, arn: str, region: str, message: str
) -> None:
    _connect(harness)
    answer = _submit_role(harness, arn, region)
    assert answer["data"]["flags"] == 64 and message in answer["data"]["content"]
    assert STORE.read(harness.user.who.guild_id or "").pending_role_arn is None  # type: ignore[union-attr]


def test_onboarding_end_to_end_switches_the_tenant_to_its_verified_account(harness: Harness) -> None:
    external_id = _connect(harness)
    arn = _role(external_id)
    answer = _submit_role(harness, arn)
    assert answer["type"] == CallbackType.UPDATE_MESSAGE
    assert answer["data"]["components"][0]["components"][0]["custom_id"] == "setup:verify"
    pending = STORE.read(harness.user.who.guild_id or "")
    assert pending is not None and pending.pending_role_arn == arn and pending.account_mode == "hosting"

    edit = _verify(harness)
    assert "Your AWS account is connected" in json.dumps(edit)
    assert "ec2:RunInstances" in json.dumps(edit)
    tenant = STORE.read(harness.user.who.guild_id or "")
    assert tenant is not None
    assert (tenant.account_mode, tenant.role_arn, tenant.region) == ("customer", arn, "eu-west-1")
    assert tenant.aws_account_id == "123456789012" and tenant.verified_at and tenant.pending_role_arn is None
    actions = {e.action for e in AuditLog().recent(tenant.tenant_id, limit=50)}
    assert {"sts:AssumeRole", "ec2:RunInstances", "iam:GetRole", "sts:GetCallerIdentity"} <= actions


def test_a_role_that_does_not_demand_our_external_id_is_refused(harness: Harness) -> None:
    _connect(harness)
    # Trusting the account without an ExternalId: assumable (a role demanding another one is not, as in
    # AWS once IAM is enforced), and the confused-deputy check must refuse it.
    _submit_role(harness, _role(None))
    edit = _verify(harness)
    assert "does not require this server's ExternalId" in json.dumps(edit)
    tenant = STORE.read(harness.user.who.guild_id or "")
    assert tenant is not None
    assert tenant.account_mode == "hosting" and tenant.role_arn is None and tenant.verified_at is None
    assert tenant.verify_problem and "ExternalId" in tenant.verify_problem


def test_a_missing_permission_is_named_and_nothing_is_verified(
    harness: Harness, deny_run_instances: None
) -> None:
    external_id = _connect(harness)
    _submit_role(harness, _role(external_id))
    edit = _verify(harness)
    text = json.dumps(edit)
    assert "missing permission `ec2:RunInstances`" in text
    assert "ec2:CreateVolume" not in text  # only what is missing is named
    tenant = STORE.read(harness.user.who.guild_id or "")
    assert tenant is not None and tenant.account_mode == "hosting" and tenant.verified_at is None
    denied = [e for e in AuditLog().recent(tenant.tenant_id, limit=50) if e.action == "ec2:RunInstances"]
    assert denied and denied[0].outcome == "UnauthorizedOperation"


def test_back_to_the_hosting_account(harness: Harness) -> None:
    external_id = _connect(harness)
    _submit_role(harness, _role(external_id))
    _verify(harness)
    answer = harness.component("setup:hosting")
    assert "hosting account" in json.dumps(answer["data"]["embeds"])
    tenant = STORE.read(harness.user.who.guild_id or "")
    assert tenant is not None and tenant.account_mode == "hosting" and tenant.role_arn is None
    assert tenant.external_id == external_id  # kept for a later switch back


def test_onboarding_steps_need_manage_server(harness: Harness) -> None:
    _connect(harness)
    member = Who(guild_id=harness.user.who.guild_id, user_id=snowflake(), permissions=0)
    for custom_id in (
        "setup:connect",
        "setup:roleform",
        "setup:verify",
        "setup:hosting",
        "setup:remove:confirm",
    ):
        answer = harness.component(custom_id, who=member)
        assert "Manage Server" in answer["data"]["content"], custom_id


def test_moving_a_server_with_games_to_another_account_or_region_is_refused(harness: Harness) -> None:
    """A game's snapshots, security group and logs stay where they were made: a move would strand them."""
    external_id = _connect(harness)
    guild = harness.user.who.guild_id or ""
    GameStore().create(guild, "valheim", description="", created_by="1")
    _submit_role(harness, _role(external_id))  # the role's region is eu-west-1; the games are in us-east-1
    text = json.dumps(_verify(harness))
    assert "games live in AWS account" in text and "`valheim`" in text and "/deletegame" in text
    tenant = STORE.read(guild)
    assert tenant is not None and tenant.account_mode == "hosting" and tenant.region == "us-east-1"
    assert tenant.pending_role_arn  # still waiting: verifying again works once the games are gone

    GameStore().delete(guild, "valheim", state=GameState.STOPPED)
    assert "Your AWS account is connected" in json.dumps(_verify(harness))
    GameStore().create(guild, "rust", description="", created_by="1")
    answer = harness.component("setup:hosting")
    assert "games live in AWS account" in answer["data"]["content"] and "`rust`" in answer["data"]["content"]
    tenant = STORE.read(guild)
    assert tenant is not None and tenant.account_mode == "customer" and tenant.region == "eu-west-1"

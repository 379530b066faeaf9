"""Connecting a guild's own AWS account: the quick-create link, and verifying the role it made.

Verification assumes the role with the tenant's ExternalId, reads who it is, checks that the role's
trust policy really demands that ExternalId (the confused-deputy guard), then asks AWS whether each
permission gangway needs is granted, using DryRun where the API has it and a harmless read elsewhere.
A missing permission is named, so the admin knows what to fix.
"""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from chalicelib.errors import AccountUnreachable, ValidationError
from chalicelib.instances import error_code
from chalicelib.instances.images import Image, ImageConfig, ImageRefused, ImageResolver
from chalicelib.tenancy.broker import CredentialsBroker, TenantAccess
from chalicelib.tenancy.store import Tenant

__all__ = ["REGIONS", "ROLE_ARN", "Verifier", "VerifyResult", "check_role_arn", "quick_create_link"]

ROLE_ARN: Final = re.compile(r"arn:aws:iam::(\d{12}):role/[\w+=,.@/-]{1,128}")
REGIONS: Final = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "eu-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-south-1",
    "sa-east-1",
)
_DENIED: Final = {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "UnauthorizedException"}
_ALLOWED: Final = {"DryRunOperation"}
STACK_NAME: Final = "gangway-access"
# The type the RunInstances dry run asks for: the smallest of the default x86 family.
PROBE_INSTANCE_TYPE: Final = "t3.micro"


def check_role_arn(value: str, region: str) -> tuple[str, str]:
    """A clean (role ARN, region) pair from what an admin typed.

    Raises:
        ValidationError: not an IAM role ARN, or not a region gangway runs in.
    """
    arn, reg = value.strip(), region.strip().lower()
    if not ROLE_ARN.fullmatch(arn):
        raise ValidationError(
            "That isn't an IAM role ARN. Copy the `RoleArn` output of the gangway-access stack; it looks "
            "like `arn:aws:iam::123456789012:role/gangway-access-Role-ABC`."
        )
    if reg not in REGIONS:
        raise ValidationError(
            f"`{reg[:30]}` isn't a region gangway supports. Try one of: {', '.join(REGIONS[:6])}…"
        )
    return arn, reg


def quick_create_link(*, template_url: str, region: str, external_id: str, hosting_account: str) -> str:
    """CloudFormation's quick-create URL with our parameters filled in."""
    query = urllib.parse.urlencode(
        {
            "templateURL": template_url,
            "stackName": STACK_NAME,
            "param_ExternalId": external_id,
            "param_GangwayAccountId": hosting_account,
        }
    )
    return f"https://{region}.console.aws.amazon.com/cloudformation/home?region={region}#/stacks/quickcreate?{query}"


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of verifying a role."""

    ok: bool
    account_id: str = ""
    problems: tuple[str, ...] = ()
    checked: tuple[str, ...] = field(default_factory=tuple)


def _checks(region: str, image: Image | None) -> list[tuple[str, str, Callable[[Any], Any]]]:
    """(permission, service, call) for what gangway does in a customer account; the RunInstances dry
    run uses the image a launch would (instances/images.py resolved it in that account and region), and
    is left out when there is none (that problem is already reported).

    ssm:StartSession (for /terminal) has no harmless probe without a running instance; /terminal
    reports it when it is missing.
    """
    zone = f"{region}a"
    checks: list[tuple[str, str, Callable[[Any], Any]]] = [
        ("ec2:DescribeInstances", "ec2", lambda c: c.describe_instances(DryRun=True)),
    ]
    if image is not None:
        checks.append(
            (
                "ec2:RunInstances",
                "ec2",
                lambda c: c.run_instances(
                    DryRun=True,
                    ImageId=image.image_id,
                    InstanceType=PROBE_INSTANCE_TYPE,
                    MinCount=1,
                    MaxCount=1,
                    TagSpecifications=[
                        {"ResourceType": "instance", "Tags": [{"Key": "gangway", "Value": "check"}]}
                    ],
                ),
            )
        )
    return [
        *checks,
        (
            "ec2:CreateVolume",
            "ec2",
            lambda c: c.create_volume(
                DryRun=True,
                AvailabilityZone=zone,
                Size=1,
                TagSpecifications=[
                    {"ResourceType": "volume", "Tags": [{"Key": "gangway", "Value": "check"}]}
                ],
            ),
        ),
        ("ec2:DescribeSnapshots", "ec2", lambda c: c.describe_snapshots(DryRun=True, OwnerIds=["self"])),
        ("ec2:DescribeVolumes", "ec2", lambda c: c.describe_volumes(DryRun=True)),
        ("iot:DescribeEndpoint", "iot", lambda c: c.describe_endpoint(endpointType="iot:Data-ATS")),
    ]


class Verifier:
    """Checks a role before a tenant may use it; `images` says where launches take their image from."""

    def __init__(self, broker: CredentialsBroker, images: ImageConfig) -> None:
        self._broker = broker
        self._images = images

    def verify(self, tenant: Tenant, *, role_arn: str, region: str, actor: str) -> VerifyResult:
        """Assume `role_arn` with the tenant's ExternalId and check every permission gangway needs."""
        try:
            self._broker.credentials(
                tenant.tenant_id,
                role_arn=role_arn,
                external_id=tenant.external_id or "",
                purpose="verify",
                actor=actor,
                fresh=True,
            )
        except AccountUnreachable:
            return VerifyResult(
                False,
                problems=(
                    f"AWS refused to let gangway assume `{role_arn}`. Make sure the stack was created with "
                    f"ExternalId `{tenant.external_id}` and that the ARN is the stack's `RoleArn` output.",
                ),
            )
        candidate = dataclasses.replace(tenant, account_mode="customer", role_arn=role_arn, region=region)
        access = self._broker.access(candidate, purpose="verify", actor=actor)
        account = str(access.client("sts").get_caller_identity()["Account"])
        problems = self._trust_problems(access, role_arn, tenant.external_id or "")
        checked: list[str] = ["ec2:DescribeInstanceTypes", "ssm:GetParameter", "ec2:DescribeImages"]
        clients: dict[str, Any] = {}
        image = self._image(access, region, problems)
        for permission, service, call in _checks(region, image):
            client = clients.setdefault(service, access.client(service))
            checked.append(permission)
            try:
                call(client)
            except Exception as exc:
                code = error_code(exc, type(exc).__name__)
                if code in _DENIED:
                    problems.append(f"missing permission `{permission}`")
                elif code not in _ALLOWED:
                    problems.append(f"`{permission}` could not be checked ({code})")
        return VerifyResult(not problems, account, tuple(problems), tuple(checked))

    def _image(self, access: TenantAccess, region: str, problems: list[str]) -> Image | None:
        """The image a launch would boot in this account and region, fresh (uncached), or None with the
        reason added to `problems`: the same resolution as a launch's, so a role that passes can start."""
        resolver = ImageResolver(
            lambda: access.client("ec2"), lambda: access.client("ssm"), self._images, scope=region
        )
        try:
            return resolver.image(PROBE_INSTANCE_TYPE)
        except ImageRefused as exc:
            problems.append(f"no machine image gangway trusts: {exc}")
        except Exception as exc:
            code = error_code(exc, type(exc).__name__)
            if code in _DENIED:
                problems.append(
                    "missing permission to find the machine image (`ec2:DescribeInstanceTypes`, "
                    "`ssm:GetParameter` on the publisher's parameter or `ec2:DescribeImages`)"
                )
            else:
                problems.append(f"the machine image could not be checked ({code})")
        return None

    @staticmethod
    def _trust_problems(access: TenantAccess, role_arn: str, external_id: str) -> list[str]:
        """The role must demand this tenant's ExternalId, or any other gangway user could use it."""
        name = role_arn.rsplit("/", 1)[-1]
        try:
            doc: Any = access.client("iam").get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
        except Exception as exc:
            code = error_code(exc, type(exc).__name__)
            return [f"missing permission `iam:GetRole` on the role itself ({code})"]
        if isinstance(doc, str):
            doc = json.loads(urllib.parse.unquote(doc))
        for stmt in doc.get("Statement", []):
            wanted = stmt.get("Condition", {}).get("StringEquals", {}).get("sts:ExternalId")
            if stmt.get("Effect") == "Allow" and wanted == external_id:
                return []
        return [
            "the role's trust policy does not require this server's ExternalId "
            f"`{external_id}`; recreate the stack with that value"
        ]

"""Each game instance's IoT identity (DESIGN.md §4): one thing, one certificate, the stack's instance
policy (deploy/template/iot.py `InstancePolicy`, `gangway-<stage>-instance`: its policy variables resolve to
the thing's `tenant` and `game` attributes, so it allows only the game's own topics), and the
certificate's key handed over through SSM Parameter Store.

Why SSM and not user data: user data is readable by anyone who may describe the instance and stays on
it for its life. The key goes into two SecureString parameters under
`/gangway/<stage>/<tenant>/<game>/<instance-id>/`, tagged `gangway:instance` with the instance's ARN; the
instance role (policies/customer-role.yaml `InstanceRole`) may read a parameter only when that tag is
its own `ec2:SourceInstanceARN`, so an instance can read its own key and no other. The bootstrap
(templates/user-data.sh) waits for them, so this step may run after the launch.

Where the thing lives: in the account whose IoT endpoint the backend publishes to and whose IoT rule
forwards `evt` to the agent-events queue, that is gangway's own (hosting) account, whatever account
runs the instance; a certificate works from anywhere. The parameters and the instance role live beside
the instance, in the tenant's account. Every call goes through the broker, so all of it is audited
(instances/gateways.py hands the clients over).

`retire` removes all of it (every certificate of the thing, the thing, every parameter under the
game's path; the shared policy stays) and never raises: a stop must not fail on it; the next `issue`
retires leftovers first. The clients come as providers, built on first use, so that even reaching the
accounts fails inside `retire` and `give_role`, which tell instead of raising.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final

from chalicelib.instances.aws_errors import error_code

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_iot import IoTClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_ssm.type_defs import TagTypeDef
    from mypy_boto3_sts import STSClient

    from chalicelib.tenancy import Tenant

__all__ = [
    "Identity",
    "IdentityGateway",
    "instance_profile",
    "parameter_prefix",
    "policy_name",
    "thing_name",
]

log = logging.getLogger(__name__)

_GONE: Final = frozenset({"ResourceNotFoundException", "ParameterNotFound", "InvalidParameters"})


def thing_name(stage: str, tenant_id: str, game: str) -> str:
    """The thing (and MQTT client id) of a game's instance; the stage keeps stages apart in one account."""
    return f"gangway-{stage}-{tenant_id}-{game}"


def policy_name(stage: str) -> str:
    """The stack's IoT policy for instances (deploy/template/iot.py `InstancePolicy`)."""
    return f"gangway-{stage}-instance"


def parameter_prefix(stage: str, tenant_id: str, game: str) -> str:
    """Where a game's instances find their key: `<prefix>/<instance-id>/{certificate,private-key}`."""
    return f"/gangway/{stage}/{tenant_id}/{game}"


def instance_profile(tenant: Tenant, stage: str) -> str:
    """The instance profile whose role may read the instance's own key parameters: `gangway-instance`
    from the customer role stack in a tenant's account, `gangway-<stage>-instance` in gangway's."""
    return (
        "gangway-instance"
        if tenant.account_mode == "customer" and tenant.role_arn
        else f"gangway-{stage}-instance"
    )


@dataclass(frozen=True)
class Identity:
    """What `issue` made: the thing, its certificate, and the parameter path the instance reads."""

    thing: str
    certificate_id: str
    parameters: str


class IdentityGateway:
    """One game's instance identity: IoT in gangway's account; SSM, EC2 and STS in the instance's."""

    def __init__(
        self,
        *,
        iot: Callable[[], IoTClient],
        ssm: Callable[[], SSMClient],
        ec2: Callable[[], EC2Client],
        sts: Callable[[], STSClient],
        stage: str,
        tenant: Tenant,
        game: str,
        endpoints: Sequence[str | None] = (),
    ) -> None:
        """`endpoints`: configured IoT data endpoint URLs, tried before asking IoT (see `endpoint`)."""
        self._make_iot, self._make_ssm, self._make_ec2, self._make_sts = iot, ssm, ec2, sts
        self._region = tenant.region
        self._tenant = tenant.tenant_id
        self._game = game
        self._endpoints = tuple(endpoints)
        self.thing = thing_name(stage, tenant.tenant_id, game)
        self.policy = policy_name(stage)
        self.prefix = parameter_prefix(stage, tenant.tenant_id, game)
        self.profile = instance_profile(tenant, stage)

    @cached_property
    def _iot(self) -> IoTClient:
        return self._make_iot()

    @cached_property
    def _ssm(self) -> SSMClient:
        return self._make_ssm()

    def endpoint(self) -> str:
        """The IoT data endpoint (host) the agent connects to: the first configured one (the deployment's
        IOT_DATA_ENDPOINT; locally the broker's host, as the local stack's agents do not read user data);
        else asked of IoT."""
        for url in self._endpoints:
            if url:
                return str(url).split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
        return str(self._iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"])

    def instance_arn(self, instance_id: str) -> str:
        """The instance's ARN, its account asked of STS (the instance role's condition names it)."""
        account = str(self._make_sts().get_caller_identity()["Account"])
        return f"arn:aws:ec2:{self._region}:{account}:instance/{instance_id}"

    def give_role(self, instance_id: str) -> str | None:
        """Associate the instance profile with the running instance; the problem in words if EC2 refused.

        Never raises: without the role the agent cannot fetch its key and the start ends in the agent's
        timeout and compensation, which already tells the user; the warning in the log says why.
        """
        try:
            ec2 = self._make_ec2()
            current = ec2.describe_iam_instance_profile_associations(
                Filters=[{"Name": "instance-id", "Values": [instance_id]}]
            )["IamInstanceProfileAssociations"]
            if not any(a["State"] in ("associating", "associated") for a in current):
                ec2.associate_iam_instance_profile(
                    IamInstanceProfile={"Name": self.profile}, InstanceId=instance_id
                )
        except Exception as exc:
            log.warning(
                "identity: no instance profile %s for %s/%s: %s", self.profile, self._tenant, self._game, exc
            )
            code = error_code(exc, type(exc).__name__)
            return f"the instance profile `{self.profile}` could not be given to the instance ({code})"
        return None

    def issue(self, instance_id: str, instance_arn: str | None = None) -> Identity:
        """Thing, certificate, policy and the two parameters; repeated for the same instance, a no-op.

        `instance_arn` is asked of STS (`instance_arn`) when not given.
        """
        arn_of_instance = instance_arn or self.instance_arn(instance_id)
        path = f"{self.prefix}/{instance_id}"
        existing = self._existing(path)
        if existing is not None:
            return Identity(self.thing, existing, path)
        self.retire()  # leftovers of an earlier instance whose cleanup failed
        # The shared policy reads these two attributes: they are what limits the instance to its topics.
        attributes = {"tenant": self._tenant, "game": self._game}
        self._iot.create_thing(thingName=self.thing, attributePayload={"attributes": attributes})
        cert = self._iot.create_keys_and_certificate(setAsActive=True)
        arn, cert_id = str(cert["certificateArn"]), str(cert["certificateId"])
        self._iot.attach_policy(policyName=self.policy, target=arn)
        self._iot.attach_thing_principal(thingName=self.thing, principal=arn)
        tags: list[TagTypeDef] = [
            {"Key": "gangway", "Value": f"{self._tenant}/{self._game}"},
            {"Key": "gangway:instance", "Value": arn_of_instance},
            {"Key": "gangway:certificate", "Value": cert_id},
        ]
        for name, value in (
            ("private-key", cert["keyPair"]["PrivateKey"]),
            ("certificate", cert["certificatePem"]),
        ):
            self._ssm.put_parameter(
                Name=f"{path}/{name}", Value=value, Type="SecureString", Tier="Standard", Tags=tags
            )
        return Identity(self.thing, cert_id, path)

    def _existing(self, path: str) -> str | None:
        """The certificate id when this instance's identity is already complete (a redelivered step)."""
        try:
            got = self._ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=f"{path}/certificate")
        except Exception as exc:
            if error_code(exc, type(exc).__name__) in _GONE | {"InvalidResourceId"}:
                return None
            raise
        cert = {t["Key"]: t["Value"] for t in got.get("TagList", [])}.get("gangway:certificate")
        principals = self._principals()
        return cert if cert and any(p.endswith("/" + cert) for p in principals) else None

    def _principals(self) -> list[str]:
        try:
            return [str(p) for p in self._iot.list_thing_principals(thingName=self.thing)["principals"]]
        except Exception as exc:
            if error_code(exc, type(exc).__name__) in _GONE:
                return []
            raise

    def retire(self) -> list[str]:
        """Remove certificates, thing and parameters; returns what could not be removed, never raises."""
        try:
            ssm, iot = self._ssm, self._iot
        except Exception as exc:
            log.warning("identity: retire for %s/%s failed: %s", self._tenant, self._game, exc)
            return [f"reaching AWS ({error_code(exc, type(exc).__name__)})"]
        problems: list[str] = []

        def attempt(what: str, call: Callable[..., object], **kwargs: Any) -> None:
            try:
                call(**kwargs)
            except Exception as exc:
                code = error_code(exc, type(exc).__name__)
                if code not in _GONE:
                    problems.append(f"{what} ({code})")
                    log.warning("identity: %s for %s/%s failed: %s", what, self._tenant, self._game, exc)

        try:
            principals = self._principals()
        except Exception as exc:
            principals = []
            problems.append(f"listing the certificates ({error_code(exc, type(exc).__name__)})")
        for arn in principals:
            cert_id = arn.rsplit("/", 1)[-1]
            attempt("detaching the policy", iot.detach_policy, policyName=self.policy, target=arn)
            attempt(
                "detaching the certificate", iot.detach_thing_principal, thingName=self.thing, principal=arn
            )
            attempt(
                "deactivating the certificate",
                iot.update_certificate,
                certificateId=cert_id,
                newStatus="INACTIVE",
            )
            attempt("deleting the certificate", iot.delete_certificate, certificateId=cert_id)
        attempt("deleting the thing", iot.delete_thing, thingName=self.thing)
        try:
            names = [
                p["Name"]
                for page in ssm.get_paginator("get_parameters_by_path").paginate(
                    Path=self.prefix + "/", Recursive=True
                )
                for p in page["Parameters"]
            ]
        except Exception as exc:
            names = []
            problems.append(f"listing the key parameters ({error_code(exc, type(exc).__name__)})")
        for start in range(0, len(names), 10):
            attempt("deleting the key parameters", ssm.delete_parameters, Names=names[start : start + 10])
        return problems

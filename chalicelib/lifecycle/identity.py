"""Each game instance's IoT identity (DESIGN.md §4): one thing, one certificate, the stack's instance
policy (deploy/template.py `InstancePolicy`, `gangway-<stage>-instance`: its policy variables resolve to
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
the instance, in the tenant's account. Every call goes through the broker, so all of it is audited.

`retire` removes all of it (every certificate of the thing, the thing, every parameter under the
game's path; the shared policy stays) and never raises: a stop must not fail on it; the next `issue`
retires leftovers first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Final

from chalicelib.games import Game
from chalicelib.lifecycle.collaborators import Lifecycle
from chalicelib.tenancy import Tenant

__all__ = [
    "Identity",
    "IdentityGateway",
    "endpoint",
    "give_role",
    "instance_profile",
    "issue",
    "parameter_prefix",
    "retire",
    "thing_name",
]

log = logging.getLogger(__name__)

_GONE: Final = frozenset({"ResourceNotFoundException", "ParameterNotFound", "InvalidParameters"})


def thing_name(stage: str, tenant_id: str, game: str) -> str:
    """The thing (and MQTT client id) of a game's instance; the stage keeps stages apart in one account."""
    return f"gangway-{stage}-{tenant_id}-{game}"


def policy_name(stage: str) -> str:
    """The stack's IoT policy for instances (deploy/template.py `InstancePolicy`)."""
    return f"gangway-{stage}-instance"


def parameter_prefix(stage: str, tenant_id: str, game: str) -> str:
    """Where a game's instances find their key: `<prefix>/<instance-id>/{certificate,private-key}`."""
    return f"/gangway/{stage}/{tenant_id}/{game}"


@dataclass(frozen=True)
class Identity:
    """What `issue` made: the thing, its certificate, and the parameter path the instance reads."""

    thing: str
    certificate_id: str
    parameters: str


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(exc).__name__))
    return type(exc).__name__


class IdentityGateway:
    """IoT (gangway's account) and SSM (the instance's account) for one game; clients are audited."""

    def __init__(self, *, iot: Any, ssm: Any, stage: str, tenant_id: str, game: str) -> None:
        self._iot = iot
        self._ssm = ssm
        self._tenant = tenant_id
        self._game = game
        self.thing = thing_name(stage, tenant_id, game)
        self.policy = policy_name(stage)
        self.prefix = parameter_prefix(stage, tenant_id, game)

    def issue(self, instance_id: str, instance_arn: str) -> Identity:
        """Thing, certificate, policy and the two parameters; repeated for the same instance, a no-op."""
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
        tags = [
            {"Key": "gangway", "Value": f"{self._tenant}/{self._game}"},
            {"Key": "gangway:instance", "Value": instance_arn},
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
            if _code(exc) in _GONE | {"InvalidResourceId"}:
                return None
            raise
        cert = {t["Key"]: t["Value"] for t in got.get("TagList", [])}.get("gangway:certificate")
        principals = self._principals()
        return cert if cert and any(p.endswith("/" + cert) for p in principals) else None

    def _principals(self) -> list[str]:
        try:
            return [str(p) for p in self._iot.list_thing_principals(thingName=self.thing)["principals"]]
        except Exception as exc:
            if _code(exc) in _GONE:
                return []
            raise

    def retire(self) -> list[str]:
        """Remove certificates, thing and parameters; returns what could not be removed."""
        problems: list[str] = []

        def attempt(what: str, call: Any, **kwargs: Any) -> None:
            try:
                call(**kwargs)
            except Exception as exc:
                if _code(exc) not in _GONE:
                    problems.append(f"{what} ({_code(exc)})")
                    log.warning("identity: %s for %s/%s failed: %s", what, self._tenant, self._game, exc)

        try:
            principals = self._principals()
        except Exception as exc:
            principals = []
            problems.append(f"listing the certificates ({_code(exc)})")
        for arn in principals:
            cert_id = arn.rsplit("/", 1)[-1]
            attempt("detaching the policy", self._iot.detach_policy, policyName=self.policy, target=arn)
            attempt(
                "detaching the certificate",
                self._iot.detach_thing_principal,
                thingName=self.thing,
                principal=arn,
            )
            attempt(
                "deactivating the certificate",
                self._iot.update_certificate,
                certificateId=cert_id,
                newStatus="INACTIVE",
            )
            attempt("deleting the certificate", self._iot.delete_certificate, certificateId=cert_id)
        attempt("deleting the thing", self._iot.delete_thing, thingName=self.thing)
        try:
            names = [
                p["Name"]
                for page in self._ssm.get_paginator("get_parameters_by_path").paginate(
                    Path=self.prefix + "/", Recursive=True
                )
                for p in page["Parameters"]
            ]
        except Exception as exc:
            names = []
            problems.append(f"listing the key parameters ({_code(exc)})")
        for start in range(0, len(names), 10):
            attempt(
                "deleting the key parameters", self._ssm.delete_parameters, Names=names[start : start + 10]
            )
        return problems


def _gateway(lc: Lifecycle, game: Game, *, stage: str, iot_region: str, actor: str) -> IdentityGateway:
    tenant = lc.tenants.require(game.tenant_id)
    ssm = lc.broker.access(tenant, purpose="identity", actor=actor).client("ssm")
    iot = lc.broker.access(_in_gangways_account(tenant, iot_region), purpose="identity", actor=actor).client(
        "iot"
    )
    return IdentityGateway(iot=iot, ssm=ssm, stage=stage, tenant_id=game.tenant_id, game=game.name)


def _in_gangways_account(tenant: Tenant, region: str) -> Tenant:
    """The tenant as the broker sees a hosting tenant in gangway's region: IoT lives where the backend's
    endpoint and rule are (see the module docstring), still audited under the tenant."""
    return replace(tenant, account_mode="hosting", role_arn=None, region=region)


def issue(lc: Lifecycle, game: Game, *, stage: str, iot_region: str, actor: str) -> Identity:
    """The identity of the game's current instance (`game.resources.instance_id`)."""
    tenant = lc.tenants.require(game.tenant_id)
    access = lc.broker.access(tenant, purpose="identity", actor=actor)
    account = str(access.client("sts").get_caller_identity()["Account"])
    instance_arn = f"arn:aws:ec2:{tenant.region}:{account}:instance/{game.resources.instance_id}"
    gateway = _gateway(lc, game, stage=stage, iot_region=iot_region, actor=actor)
    return gateway.issue(game.resources.instance_id or "", instance_arn)


def retire(lc: Lifecycle, game: Game, *, stage: str, iot_region: str, actor: str) -> list[str]:
    """Remove the game's identity; never raises (a stop must not fail on it)."""
    try:
        return _gateway(lc, game, stage=stage, iot_region=iot_region, actor=actor).retire()
    except Exception as exc:
        log.warning("identity: retire for %s/%s failed: %s", game.tenant_id, game.name, exc)
        return [f"reaching AWS ({_code(exc)})"]


def instance_profile(tenant: Tenant, stage: str) -> str:
    """The instance profile whose role may read the instance's own key parameters: `gangway-instance`
    from the customer role stack in a tenant's account, `gangway-<stage>-instance` in gangway's."""
    return (
        "gangway-instance"
        if tenant.account_mode == "customer" and tenant.role_arn
        else f"gangway-{stage}-instance"
    )


def give_role(lc: Lifecycle, game: Game, *, stage: str, actor: str) -> str | None:
    """Associate the instance profile with the running instance; the problem in words if EC2 refused.

    Never raises: without the role the agent cannot fetch its key and the start ends in the agent's
    timeout and compensation, which already tells the user; the warning in the log says why.
    """
    tenant = lc.tenants.require(game.tenant_id)
    profile = instance_profile(tenant, stage)
    try:
        ec2 = lc.broker.access(tenant, purpose="identity", actor=actor).client("ec2")
        current = ec2.describe_iam_instance_profile_associations(
            Filters=[{"Name": "instance-id", "Values": [game.resources.instance_id or ""]}]
        )["IamInstanceProfileAssociations"]
        if not any(a["State"] in ("associating", "associated") for a in current):
            ec2.associate_iam_instance_profile(
                IamInstanceProfile={"Name": profile}, InstanceId=game.resources.instance_id
            )
    except Exception as exc:
        log.warning("identity: no instance profile %s for %s/%s: %s", profile, game.tenant_id, game.name, exc)
        return f"the instance profile `{profile}` could not be given to the instance ({_code(exc)})"
    return None


def endpoint(lc: Lifecycle, game: Game, *, settings: Any, actor: str) -> str:
    """The IoT data endpoint (host) the agent connects to: the deployment's IOT_DATA_ENDPOINT; locally
    the broker's host (the local stack's agents do not read user data); else asked of IoT."""
    for url in (settings.iot_data_endpoint, settings.mqtt_url):
        if url:
            return str(url).split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    tenant = _in_gangways_account(lc.tenants.require(game.tenant_id), settings.region)
    iot = lc.broker.access(tenant, purpose="identity", actor=actor).client("iot")
    return str(iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"])

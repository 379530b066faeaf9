"""The embedded AWS emulator (moto server) and the resources the app expects in it.

Tables are created from the same PynamoDB models the app uses; queues get a dead-letter queue like
the deployed ones. Step Functions execution is switched on (feasibility.md §2).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from devstack.fair_queues import install_fair_queues

if TYPE_CHECKING:
    from chalicelib.config import Settings

__all__ = [
    "EMULATOR_ACCOUNT",
    "LOCAL_ARTIFACTS_BUCKET",
    "Emulator",
    "artifacts_bucket",
    "create_resources",
    "emulator_settings",
    "ensure_vapid_keys",
    "fake_credentials",
    "seed_images",
]

log = logging.getLogger(__name__)


# The account moto answers as (its default): customer roles in tests live in it too.
EMULATOR_ACCOUNT = "123456789012"
# moto checks only that a role ARN is well formed; the deployed template makes the real role.
WORKFLOWS_ROLE = f"arn:aws:iam::{EMULATOR_ACCOUNT}:role/gangway-workflows"


def emulator_settings() -> dict[str, str]:
    """Settings the app needs against the emulator: its stand-in Debian images are the emulator
    account's own (`seed_images`), so that account is the publisher whose ownership a launch checks."""
    return {"IMAGE_OWNER": EMULATOR_ACCOUNT}


# The local stand-in for the `gangway-artifacts` stack's bucket (deploy/bootstrap.json), where the agent's
# wheelhouse lies. Its name fits the steps policy's `gangway-artifacts-*` (the name CloudFormation gives).
LOCAL_ARTIFACTS_BUCKET = "gangway-artifacts-local"


def artifacts_bucket(s3: Any, name: str = LOCAL_ARTIFACTS_BUCKET) -> str:
    """Make the artifacts bucket in the emulator (idempotent); returns its name."""
    try:
        s3.head_bucket(Bucket=name)
    except s3.exceptions.ClientError:
        s3.create_bucket(Bucket=name)
    return name


def fake_credentials(region: str = "us-east-1") -> dict[str, str]:
    """Environment that keeps boto3 away from any real account."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


# DynamoDB's item writes that may carry a condition. Real DynamoDB evaluates a condition and applies the
# write atomically; moto's backend does neither under its threaded server (no lock around "check, then
# write"), so two concurrent conditional writes of one version could both succeed there.
_DYNAMODB_WRITES: Final = (
    "put_item",
    "update_item",
    "delete_item",
    "transact_write_items",
    "batch_write_item",
)
_dynamodb_lock = threading.RLock()


def _atomic_dynamodb_writes() -> None:
    """Make the emulator's DynamoDB writes atomic, as AWS's are (once per process)."""
    from moto.dynamodb.models import DynamoDBBackend

    for name in _DYNAMODB_WRITES:
        write = getattr(DynamoDBBackend, name)
        if getattr(write, "_gangway_atomic", False):
            continue

        def atomic(self: Any, *args: Any, _write: Any = write, **kwargs: Any) -> Any:
            with _dynamodb_lock:
                return _write(self, *args, **kwargs)

        atomic._gangway_atomic = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, atomic)


class Emulator:
    """A moto server on loopback, in this process."""

    def __init__(self, port: int) -> None:
        # moto's Step Functions engine calls back into moto on MOTO_PORT (feasibility.md §2, gotcha 2).
        os.environ["MOTO_PORT"] = str(port)
        from moto.server import ThreadedMotoServer

        for name in ("werkzeug", "moto.stepfunctions.parser"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        _atomic_dynamodb_writes()
        install_fair_queues()  # the agent-events queue is an SQS fair queue (devstack/fair_queues.py)

    def start(self) -> Emulator:
        self._server.start()
        req = urllib.request.Request(  # noqa: S310 - the loopback emulator
            self.url + "/moto-api/config",
            data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(req, timeout=10).close()  # noqa: S310 - loopback emulator
        return self

    def stop(self) -> None:
        self._server.stop()


def create_resources(
    settings: Settings,
    sqs: Any,
    dynamodb: Any,
    *,
    visibility_timeout: int = 30,
    image_regions: Sequence[str] | None = None,
) -> dict[str, str]:
    """Create every table and queue the app uses (idempotent); returns queue URLs by name.

    `image_regions` limits where the stand-in Debian images are published (`seed_images`): each region
    costs the emulator its EC2 backend (about a second), so the tests name the few they use.
    """
    from chalicelib.games import GameRecord
    from chalicelib.jobs import InteractionRecord
    from chalicelib.tenancy import AuditRecord, TenantRecord

    for model in (TenantRecord, GameRecord, InteractionRecord, AuditRecord):
        if not model.exists():
            model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
    for table in (settings.interactions_table, settings.audit_table):
        dynamodb.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )
    _create_access_resources(settings)
    _create_push_resources(settings)
    _create_instance_resources(settings)
    seed_images(settings, image_regions)
    urls: dict[str, str] = {}
    dlq = sqs.create_queue(QueueName=settings.jobs_queue + "-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    urls[settings.jobs_queue] = sqs.create_queue(
        QueueName=settings.jobs_queue,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(settings.job_max_receives)}
            ),
        },
    )["QueueUrl"]
    urls[settings.jobs_queue + "-dlq"] = dlq
    urls.update(_create_workflow_resources(settings, sqs))
    urls.update(_create_agent_events_queues(settings, sqs, visibility_timeout))
    return urls


def _create_agent_events_queues(settings: Settings, sqs: Any, visibility_timeout: int) -> dict[str, str]:
    """The queue the IoT rule (locally the MQTT bridge) fills and the fair queue agent_intake fills from it,
    both parking failures in one DLQ, as deploy/template/ has them."""
    name, intake = settings.agent_events_queue, settings.agent_intake_queue
    dlq = sqs.create_queue(QueueName=name + "-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {
        "VisibilityTimeout": str(visibility_timeout),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
    }
    urls = {q: sqs.create_queue(QueueName=q, Attributes=attributes)["QueueUrl"] for q in (intake, name)}
    return {**urls, name + "-dlq": dlq}


def _create_workflow_resources(settings: Settings, sqs: Any) -> dict[str, str]:
    """The steps queue and one state machine per ASL file, named as the deployment template names them."""
    import boto3

    from chalicelib.workflows import DEFINITIONS, definition, state_machine_name

    dlq = sqs.create_queue(QueueName=settings.steps_queue + "-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName=settings.steps_queue,
        Attributes={
            # Longer than any step: Step Functions may hold a callback while it applies a Retry.
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sfn = boto3.client("stepfunctions", endpoint_url=settings.aws_endpoint_url, region_name=settings.region)
    existing = {m["name"]: m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
    for path in sorted(DEFINITIONS.glob("*.asl.json")):
        stem = path.name.removesuffix(".asl.json")
        name = state_machine_name(settings.workflows_prefix, stem)
        text = definition(stem, {"StepsQueueUrl": url, "StepsQueueArn": arn})
        if name in existing:
            sfn.update_state_machine(stateMachineArn=existing[name], definition=text)
        else:
            sfn.create_state_machine(name=name, definition=text, roleArn=WORKFLOWS_ROLE)
    return {settings.steps_queue: url, settings.steps_queue + "-dlq": dlq}


def _create_instance_resources(settings: Settings) -> None:
    """What deploy/template/iot.py gives every instance: the shared IoT policy its certificate gets
    (`InstancePolicy`) and the instance profile whose role, with the template's policy, reads its key
    (instances/identity.py) and ships the game's logs."""
    import boto3

    from devstack.iam import instance_role_policy

    name = f"gangway-{settings.stage}-instance"
    iot = boto3.client("iot", region_name=settings.region, endpoint_url=settings.aws_endpoint_url)
    own = "gangway/${iot:Connection.Thing.Attributes[tenant]}/${iot:Connection.Thing.Attributes[game]}"
    arn = f"arn:aws:iot:{settings.region}:*"
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["iot:Connect"],
                "Resource": f"{arn}:client/${{iot:Connection.Thing.ThingName}}",
            },
            {"Effect": "Allow", "Action": ["iot:Publish"], "Resource": f"{arn}:topic/{own}/evt"},
            {"Effect": "Allow", "Action": ["iot:Subscribe"], "Resource": f"{arn}:topicfilter/{own}/cmd"},
            {"Effect": "Allow", "Action": ["iot:Receive"], "Resource": f"{arn}:topic/{own}/cmd"},
        ],
    }
    if name not in [p["policyName"] for p in iot.list_policies()["policies"]]:
        iot.create_policy(policyName=name, policyDocument=json.dumps(document))
    iam = boto3.client("iam", region_name=settings.region, endpoint_url=settings.aws_endpoint_url)
    if name not in [p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]]:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
        policy = json.dumps(instance_role_policy(settings.stage))
        iam.put_role_policy(RoleName=name, PolicyName="OwnKey", PolicyDocument=policy)
        iam.create_instance_profile(InstanceProfileName=name)
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)


def seed_images(settings: Settings, regions: Sequence[str] | None = None) -> dict[tuple[str, str], str]:
    """The publisher's public image parameters, as moto has none: for each of `regions` (every region
    gangway offers when None, and always the default one) and each architecture, an image owned by the
    emulator's account and the parameter (`settings.image_parameter` with `{arch}` filled in) that names
    it. Returns (region, arch) → image id.

    AWS reserves `/aws/...` parameter names (PutParameter refuses them, in moto too), and RegisterImage
    takes no architecture in moto, so both are written into the in-process emulator's backends: local
    configuration only, never code that runs in AWS (instances/images.py reads them like the real ones).
    """
    from moto.core.utils import utcnow
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami
    from moto.ec2.utils import random_ami_id
    from moto.ssm.models import Parameter, ssm_backends

    from chalicelib.instances.images import ARCH_NAMES
    from chalicelib.tenancy.onboarding import REGIONS

    seeded: dict[tuple[str, str], str] = {}
    for region in dict.fromkeys((settings.region, *(REGIONS if regions is None else regions))):
        parameters = ssm_backends[EMULATOR_ACCOUNT][region]._parameters
        ec2 = ec2_backends[EMULATOR_ACCOUNT][region]
        for architecture, arch in ARCH_NAMES.items():
            name = settings.image_parameter.replace("{arch}", arch)
            if dict.__contains__(parameters, name):  # not its lazy loader: an already seeded emulator
                seeded[(region, arch)] = parameters[name][-1].value
                continue
            image_id = random_ami_id()
            ec2.amis[image_id] = Ami(
                ec2,
                image_id,
                name=f"debian-12-{arch}-emulator",
                description=f"Stand-in for Debian 12 ({arch}) in the local emulator",
                owner_id=EMULATOR_ACCOUNT,
                public=True,
                architecture=architecture,
                virtualization_type="hvm",
                root_device_type="ebs",
                root_device_name="/dev/xvda",
                region_name=f"{region}a",
            )
            parameters[name].append(
                Parameter(  # type: ignore[abstract]  # moto's CloudFormation hooks are not needed here
                    account_id=EMULATOR_ACCOUNT,
                    name=name,
                    value=image_id,
                    parameter_type="String",
                    description=None,
                    allowed_pattern=None,
                    keyid=None,
                    last_modified_date=utcnow(),
                    version=1,
                    data_type="aws:ec2:image",
                )
            )
            seeded[(region, arch)] = image_id
    return seeded


def _create_push_resources(settings: Settings) -> None:
    """Web push: the push table (TTL on `purge_at`) and the VAPID key pair, made once (`gangway vapid`)."""
    import boto3

    from chalicelib.push import PushRecord

    if not PushRecord.exists():
        PushRecord.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
    dynamodb = boto3.client("dynamodb", region_name=settings.region, endpoint_url=settings.aws_endpoint_url)
    dynamodb.update_time_to_live(
        TableName=settings.push_table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "purge_at"}
    )
    ensure_vapid_keys(settings)


def ensure_vapid_keys(settings: Settings, *, replace: bool = False) -> str:
    """Create the VAPID key pair in its SecureString parameter unless it holds one already (or `replace`),
    and its public half alone in the API function's parameter; returns the public key. What `gangway vapid`
    and `make deploy` run, against AWS or the emulator."""
    import boto3

    from deploy.parameters import ensure_vapid_keys as ensure

    ssm = boto3.client("ssm", region_name=settings.region, endpoint_url=settings.aws_endpoint_url)
    return ensure(ssm, settings.vapid_parameter, settings.vapid_public_parameter, replace=replace)


def _create_access_resources(settings: Settings) -> None:
    """Player access: the grant, access and rate-limit tables (TTL on `purge_at`) and the SecureString
    parameter holding the keys that seal IPAuth tokens, as `make deploy` makes it."""
    import boto3

    from chalicelib.access import AccessRecord, GrantRecord, RateRecord

    dynamodb = boto3.client("dynamodb", region_name=settings.region, endpoint_url=settings.aws_endpoint_url)
    for model in (GrantRecord, AccessRecord, RateRecord):
        if not model.exists():
            model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
    for table in (settings.grants_table, settings.access_table, settings.ratelimit_table):
        dynamodb.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "purge_at"}
        )
    from deploy.parameters import ensure_link_keys

    ssm = boto3.client("ssm", region_name=settings.region, endpoint_url=settings.aws_endpoint_url)
    ensure_link_keys(ssm, settings.ipauth_keys_parameter)

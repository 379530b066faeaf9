"""The resources Chalice does not make, for one stage, as a template to merge into Chalice's own.

`python -m deploy.template --stage dev --out build/dev.resources.json`, then
`chalice package --stage dev --merge-template build/dev.resources.json build/dev` (what `make template`,
i.e. `python -m deploy build`, runs). Chalice deep-merges this into its SAM template: new resources are
added, and the keys given for its own resources (role policies, environment, logging, DependsOn)
override its values.

Built from the code, so the template cannot drift from it:
- one DynamoDB table per PynamoDB model in `chalicelib/*/models.py` (keys, indexes and TTL from the
  model; the name from the stage's `*_TABLE` variable, or `gangway-<stage>-<suffix>`);
- one queue (with dead-letter queue and alarm) per `*_queue` setting, sized for the function app.py
  binds to it, which waits for it (DependsOn);
- one Step Functions state machine per `chalicelib/workflows/*.asl.json`;
- each function's role policy from its `policies/*.json` file, scoped to the stage (`deploy.policy`),
  and every table and queue name in its environment.

Run it in a fresh process: the models and app.py bind names from the environment once, at import.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from deploy.policy import scope_policy

if TYPE_CHECKING:
    from pynamodb.models import Model

__all__ = ["ROOT", "UNSET_SECRET", "Stage", "build", "main", "queue_names", "table_models", "table_names"]

Json = dict[str, Any]
ROOT: Final = Path(__file__).resolve().parent.parent
WORKFLOWS: Final = ROOT / "chalicelib" / "workflows"
# What a secret holds until the operator puts the real value (CloudFormation needs some value).
UNSET_SECRET: Final = "unset"  # noqa: S105 - a placeholder, not a secret
# Discord's interaction token lives 15 minutes (discord-protocol.md); retries of a job must fit in it.
_JOBS_VISIBILITY_SECONDS: Final = 180
_LOG_RETENTION_DAYS: Final = 30
_DLQ_RETENTION_SECONDS: Final = 14 * 24 * 3600  # the SQS maximum: time to look at what failed
# CloudFront's managed cache policy "CachingOptimized" (CloudFront developer guide, managed cache policies).
_CACHING_OPTIMIZED: Final = "658327ea-f89d-4fab-a63d-7e88639e58f6"
# The page only talks to itself and to the API: every other source is shut.
_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "manifest-src 'self'; worker-src 'self'; "
    "connect-src 'self' https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)
_PLACEHOLDER: Final = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def _sub(text: str) -> Json:
    return {"Fn::Sub": text}


def _ref(name: str) -> Json:
    return {"Ref": name}


def _att(name: str, attr: str) -> Json:
    return {"Fn::GetAtt": [name, attr]}


def _camel(text: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", text) if p)


@dataclass(frozen=True)
class Stage:
    """One stage of `.chalice/config.json`: its name, environment and Lambda functions."""

    name: str
    env: Mapping[str, str]
    functions: Mapping[str, Mapping[str, Any]]

    @classmethod
    def load(cls, name: str, config: Path = ROOT / ".chalice" / "config.json") -> Stage:
        """Read the stage from Chalice's config. Raises KeyError for a stage it does not define."""
        stage = json.loads(config.read_text())["stages"][name]
        return cls(
            name, dict(stage.get("environment_variables", {})), dict(stage.get("lambda_functions", {}))
        )

    @property
    def prefix(self) -> str:
        return f"gangway-{self.name}"

    @property
    def jobs_queue(self) -> str:
        return self.env.get("JOBS_QUEUE", f"{self.prefix}-jobs")


def table_names(stage: Stage) -> dict[str, str]:
    """Every table setting as environment variable -> the stage's table name."""
    return _setting_names(stage, "_table")


def queue_names(stage: Stage) -> dict[str, str]:
    """Every queue setting as environment variable -> the stage's queue name."""
    return _setting_names(stage, "_queue")


def _setting_names(stage: Stage, suffix: str) -> dict[str, str]:
    # A `*_table`/`*_queue` field of `Settings` is read from its upper-cased name (config.py); a stage
    # that does not set one gets `gangway-<stage>-<the default's suffix>`: a new one needs no config edit.
    from dataclasses import fields

    from chalicelib.config import Settings

    names: dict[str, str] = {}
    for f in fields(Settings):
        if f.name.endswith(suffix) and isinstance(f.default, str):
            env = f.name.upper()
            names[env] = stage.env.get(env) or f"{stage.prefix}-{f.default.removeprefix('gangway-')}"
    return names


def table_models(stage: Stage) -> list[type[Model]]:
    """Every PynamoDB model in `chalicelib/*/models.py`, imported with the stage's table names.

    Raises RuntimeError when the models were already imported with other names (not a fresh process).
    """
    from pynamodb.models import Model

    # The whole stage environment, as in its Lambdas: settings() is read once, at the first import.
    os.environ.update({**stage.env, **table_names(stage), **queue_names(stage)})
    for path in sorted((ROOT / "chalicelib").glob("*/models.py")):
        importlib.import_module(f"chalicelib.{path.parent.name}.models")
    found: list[type[Model]] = []
    todo = list(Model.__subclasses__())
    while todo:
        cls = todo.pop(0)
        todo += cls.__subclasses__()
        if cls.__module__.startswith("chalicelib.") and getattr(cls.Meta, "table_name", None):
            found.append(cls)
    for cls in found:
        if not cls.Meta.table_name.startswith(stage.prefix + "-"):
            raise RuntimeError(
                f"{cls.__name__} is bound to table {cls.Meta.table_name!r}, not a {stage.prefix}- table: "
                "build the template in a fresh process"
            )
    return sorted(found, key=lambda c: c.Meta.table_name)


def _key_schema(keys: Sequence[Any]) -> list[Json]:
    # DynamoDB wants the partition key first (CreateTable, KeySchema).
    return sorted((dict(k) for k in keys), key=lambda k: k["KeyType"] != "HASH")


def _table(model: type[Model], stage: Stage) -> tuple[str, Json]:
    from pynamodb.attributes import TTLAttribute

    # The schema PynamoDB's own create_table sends (and the local stack uses), so keys cannot differ.
    schema = model._get_schema()
    name = model.Meta.table_name
    props: Json = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": sorted(schema["attribute_definitions"], key=lambda a: a["AttributeName"]),
        "KeySchema": _key_schema(schema["key_schema"]),
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True},
        "Tags": [{"Key": "gangway:stage", "Value": stage.name}],
    }
    for kind, key in (
        ("global_secondary_indexes", "GlobalSecondaryIndexes"),
        ("local_secondary_indexes", "LocalSecondaryIndexes"),
    ):
        indexes = [
            {
                "IndexName": i["index_name"],
                "KeySchema": _key_schema(i["key_schema"]),
                "Projection": i["projection"],
            }
            for i in schema[kind]  # type: ignore[literal-required]
        ]
        if indexes:
            props[key] = indexes
    ttl = [a.attr_name for a in model.get_attributes().values() if isinstance(a, TTLAttribute)]
    if ttl:
        props["TimeToLiveSpecification"] = {"AttributeName": ttl[0], "Enabled": True}
    logical = _camel(name.removeprefix(stage.prefix + "-")) + "Table"
    # Retain on replacement: a key change must never drop a table's rows.
    return logical, {
        "Type": "AWS::DynamoDB::Table",
        "UpdateReplacePolicy": "Retain",
        "DeletionPolicy": "Delete",
        "Properties": props,
    }


def _queue(
    logical: str, name: str, *, visibility: int, max_receives: int, retention: int, alarms: bool = True
) -> Json:
    """A queue, its dead-letter queue, and an alarm when the dead-letter queue holds anything."""
    dlq = f"{logical}DeadLetter"
    res: Json = {
        dlq: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": f"{name}-dlq",
                "MessageRetentionPeriod": _DLQ_RETENTION_SECONDS,
                "SqsManagedSseEnabled": True,
            },
        },
        logical: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": name,
                "VisibilityTimeout": visibility,
                "MessageRetentionPeriod": retention,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {"deadLetterTargetArn": _att(dlq, "Arn"), "maxReceiveCount": max_receives},
            },
        },
    }
    if alarms:
        res[f"{dlq}Alarm"] = _alarm(
            f"{name}-dlq-not-empty",
            f"Messages in {name}-dlq: work that failed {max_receives} times. Read them, fix, redrive.",
            queue=dlq,
            metric="ApproximateNumberOfMessagesVisible",
            threshold=0,
        )
    return res


def _alarm(name: str, description: str, *, queue: str, metric: str, threshold: int, periods: int = 1) -> Json:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": name,
            "AlarmDescription": description,
            "Namespace": "AWS/SQS",
            "MetricName": metric,
            "Dimensions": [{"Name": "QueueName", "Value": _att(queue, "QueueName")}],
            "Statistic": "Maximum",
            "Period": 300,
            "EvaluationPeriods": periods,
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [_ref("AlarmTopic")],
        },
    }


def _queues(stage: Stage, handlers: Mapping[str, str]) -> Json:
    """Every queue the settings name (jobs, steps, ...) plus agent-events, each with DLQ and alarm."""
    consumer = {queue: fn for fn, queue in handlers.items()}
    res: Json = {
        "AlarmTopic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": f"{stage.prefix}-alarms"}},
        "AlarmEmailSubscription": {
            "Type": "AWS::SNS::Subscription",
            "Condition": "HasAlarmEmail",
            "Properties": {
                "TopicArn": _ref("AlarmTopic"),
                "Protocol": "email",
                "Endpoint": _ref("AlarmEmail"),
            },
        },
        **_queue(
            "AgentEventsQueue",
            f"{stage.prefix}-agent-events",
            visibility=60,
            max_receives=5,
            retention=24 * 3600,
        ),
    }
    for name in sorted(queue_names(stage).values()):
        fn = consumer.get(name)
        timeout = int(stage.functions.get(fn, {}).get("lambda_timeout", 60)) if fn else 60
        logical = _camel(name.removeprefix(stage.prefix + "-")) + "Queue"
        if name == stage.jobs_queue:
            # The runner tells the user itself on receive JOB_MAX_RECEIVES; two more receives let that
            # last answer be retried before the message is parked. 3 x 180 s fits the 15-minute token.
            receives = int(stage.env.get("JOB_MAX_RECEIVES", "3")) + 2
            res["JobsQueueAgeAlarm"] = _alarm(
                f"{name}-stuck",
                "The oldest job waited over 10 minutes: the jobs Lambda is not consuming.",
                queue=logical,
                metric="ApproximateAgeOfOldestMessage",
                threshold=600,
                periods=2,
            )
        else:
            receives = 5
        # Longer than the consumer may run (Lambda requires it of an SQS event source), with a margin.
        visibility = max(_JOBS_VISIBILITY_SECONDS if name == stage.jobs_queue else 0, timeout + 60)
        res.update(_queue(logical, name, visibility=visibility, max_receives=receives, retention=24 * 3600))
    return res


def _iot(stage: Stage) -> Json:
    rule = f"gangway_{stage.name.replace('-', '_')}_agent_events"
    topic = "gangway/${!iot:Connection.Thing.Attributes[tenant]}/${!iot:Connection.Thing.Attributes[game]}"
    iot_arn = "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}"
    return {
        "AgentEventsRuleRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "iot.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                            "Condition": {
                                "StringEquals": {"aws:SourceAccount": _ref("AWS::AccountId")},
                                "ArnLike": {"aws:SourceArn": _sub(f"{iot_arn}:rule/{rule}")},
                            },
                        }
                    ],
                },
                "Policies": [
                    {
                        "PolicyName": "ForwardAgentEvents",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Sid": "AgentEventsQueues",
                                    "Effect": "Allow",
                                    "Action": ["sqs:SendMessage"],
                                    "Resource": [
                                        _att("AgentEventsQueue", "Arn"),
                                        _att("AgentEventsQueueDeadLetter", "Arn"),
                                    ],
                                }
                            ],
                        },
                    }
                ],
            },
        },
        # Agents publish on gangway/{tenant}/{game}/evt (DESIGN.md §4); the topic names both.
        "AgentEventsRule": {
            "Type": "AWS::IoT::TopicRule",
            "Properties": {
                "RuleName": rule,
                "TopicRulePayload": {
                    "Description": "Agent events and replies to the agent-events queue",
                    "Sql": "SELECT *, topic() AS topic FROM 'gangway/+/+/evt'",
                    "AwsIotSqlVersion": "2016-03-23",
                    "RuleDisabled": False,
                    "Actions": [
                        {
                            "Sqs": {
                                "QueueUrl": _ref("AgentEventsQueue"),
                                "RoleArn": _att("AgentEventsRuleRole", "Arn"),
                                "UseBase64": False,
                            }
                        }
                    ],
                    "ErrorAction": {
                        "Sqs": {
                            "QueueUrl": _ref("AgentEventsQueueDeadLetter"),
                            "RoleArn": _att("AgentEventsRuleRole", "Arn"),
                            "UseBase64": False,
                        }
                    },
                },
            },
        },
        # Attached to each instance's certificate. The thing's attributes `tenant` and `game` fill the
        # policy variables, which IoT resolves only when the client id is the thing's name and the
        # certificate is attached to it (IoT developer guide, "Thing policy variables").
        "InstancePolicy": {
            "Type": "AWS::IoT::Policy",
            "Properties": {
                "PolicyName": f"{stage.prefix}-instance",
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "ConnectAsItsThing",
                            "Effect": "Allow",
                            "Action": ["iot:Connect"],
                            "Resource": _sub(f"{iot_arn}:client/${{!iot:Connection.Thing.ThingName}}"),
                            "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
                        },
                        {
                            "Sid": "PublishOwnEvents",
                            "Effect": "Allow",
                            "Action": ["iot:Publish"],
                            "Resource": _sub(f"{iot_arn}:topic/{topic}/evt"),
                        },
                        {
                            "Sid": "SubscribeOwnCommands",
                            "Effect": "Allow",
                            "Action": ["iot:Subscribe"],
                            "Resource": _sub(f"{iot_arn}:topicfilter/{topic}/cmd"),
                        },
                        {
                            "Sid": "ReceiveOwnCommands",
                            "Effect": "Allow",
                            "Action": ["iot:Receive"],
                            "Resource": _sub(f"{iot_arn}:topic/{topic}/cmd"),
                        },
                    ],
                },
            },
        },
        # Worn by hosting-account game instances: it reads only the IoT key parameters tagged with its own
        # instance's ARN (chalicelib/instances/identity.py) and writes to the stage's game log groups;
        # StartGame associates the profile.
        "InstanceRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": f"{stage.prefix}-instance",
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ec2.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                "Policies": [
                    {
                        "PolicyName": "OwnKey",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Sid": "ReadOwnKey",
                                    "Effect": "Allow",
                                    "Action": ["ssm:GetParameter"],
                                    "Resource": _sub(
                                        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:"
                                        f"parameter/gangway/{stage.name}/*"
                                    ),
                                    "Condition": {
                                        "StringEquals": {
                                            "aws:ResourceTag/gangway:instance": "${ec2:SourceInstanceARN}"
                                        }
                                    },
                                },
                                {
                                    # The game's output and the agent's journal; StartGame makes the group
                                    # (chalicelib/instances/game_logs.py).
                                    "Sid": "ShipGameLogs",
                                    "Effect": "Allow",
                                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                                    "Resource": _sub(
                                        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:"
                                        f"log-group:/gangway/{stage.name}/*"
                                    ),
                                },
                            ],
                        },
                    }
                ],
            },
        },
        "InstanceProfile": {
            "Type": "AWS::IAM::InstanceProfile",
            "Properties": {
                "InstanceProfileName": f"{stage.prefix}-instance",
                "Roles": [_ref("InstanceRole")],
            },
        },
    }


def _site(stage: Stage) -> Json:
    return {
        "SiteBucket": {
            "Type": "AWS::S3::Bucket",
            "Properties": {
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "Tags": [{"Key": "gangway:stage", "Value": stage.name}],
            },
        },
        "SiteBucketPolicy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": _ref("SiteBucket"),
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "CloudFrontReadsThroughOAC",
                            "Effect": "Allow",
                            "Principal": {"Service": "cloudfront.amazonaws.com"},
                            "Action": ["s3:GetObject"],
                            "Resource": _sub("${SiteBucket.Arn}/*"),
                            "Condition": {
                                "StringEquals": {
                                    "AWS:SourceArn": _sub(
                                        "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${SiteDistribution}"
                                    )
                                }
                            },
                        },
                        {
                            "Sid": "TlsOnly",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [_att("SiteBucket", "Arn"), _sub("${SiteBucket.Arn}/*")],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        },
                    ],
                },
            },
        },
        "SiteOriginAccessControl": {
            "Type": "AWS::CloudFront::OriginAccessControl",
            "Properties": {
                "OriginAccessControlConfig": {
                    "Name": f"{stage.prefix}-site",
                    "OriginAccessControlOriginType": "s3",
                    "SigningBehavior": "always",
                    "SigningProtocol": "sigv4",
                }
            },
        },
        "SiteSecurityHeaders": {
            "Type": "AWS::CloudFront::ResponseHeadersPolicy",
            "Properties": {
                "ResponseHeadersPolicyConfig": {
                    "Name": f"{stage.prefix}-security-headers",
                    "SecurityHeadersConfig": {
                        "ContentSecurityPolicy": {"ContentSecurityPolicy": _sub(_CSP), "Override": True},
                        "StrictTransportSecurity": {
                            "AccessControlMaxAgeSec": 63072000,
                            "IncludeSubdomains": True,
                            "Preload": True,
                            "Override": True,
                        },
                        "ContentTypeOptions": {"Override": True},
                        "FrameOptions": {"FrameOption": "DENY", "Override": True},
                        # IP links carry a token in the URL: never send it on as a referrer.
                        "ReferrerPolicy": {"ReferrerPolicy": "no-referrer", "Override": True},
                    },
                }
            },
        },
        "SiteDistribution": {
            "Type": "AWS::CloudFront::Distribution",
            "Properties": {
                "DistributionConfig": {
                    "Comment": f"{stage.prefix} site",
                    "Enabled": True,
                    "DefaultRootObject": "index.html",
                    "HttpVersion": "http2and3",
                    "IPV6Enabled": True,
                    "PriceClass": "PriceClass_100",
                    "Origins": [
                        {
                            "Id": "site",
                            "DomainName": _att("SiteBucket", "RegionalDomainName"),
                            "OriginAccessControlId": _att("SiteOriginAccessControl", "Id"),
                            "S3OriginConfig": {"OriginAccessIdentity": ""},
                        }
                    ],
                    "DefaultCacheBehavior": {
                        "TargetOriginId": "site",
                        "ViewerProtocolPolicy": "redirect-to-https",
                        "AllowedMethods": ["GET", "HEAD"],
                        "CachedMethods": ["GET", "HEAD"],
                        "Compress": True,
                        "CachePolicyId": _CACHING_OPTIMIZED,
                        "ResponseHeadersPolicyId": _ref("SiteSecurityHeaders"),
                    },
                }
            },
        },
    }


def _ipauth_alias(stage: Stage) -> str:
    return f"alias/{stage.prefix}-ipauth"


def _link_key(stage: Stage) -> Json:
    # The account (through IAM policies) may use and manage the key; listing the actions instead of
    # kms:* keeps the policy check strict. PutKeyPolicy must stay or the key could not be managed.
    actions = sorted(
        [
            "kms:Encrypt",
            "kms:Decrypt",
            "kms:GenerateDataKey",
            "kms:DescribeKey",
            "kms:GetKeyPolicy",
            "kms:PutKeyPolicy",
            "kms:GetKeyRotationStatus",
            "kms:EnableKeyRotation",
            "kms:DisableKeyRotation",
            "kms:ListResourceTags",
            "kms:TagResource",
            "kms:UntagResource",
            "kms:UpdateKeyDescription",
            "kms:EnableKey",
            "kms:DisableKey",
            "kms:ScheduleKeyDeletion",
            "kms:CancelKeyDeletion",
            "kms:CreateAlias",
            "kms:UpdateAlias",
            "kms:DeleteAlias",
        ]
    )
    return {
        "LinkTokenKey": {
            "Type": "AWS::KMS::Key",
            "UpdateReplacePolicy": "Retain",
            "DeletionPolicy": "Delete",
            "Properties": {
                "Description": f"{stage.prefix}: encrypts IP-link tokens",
                "EnableKeyRotation": True,
                "PendingWindowInDays": 7,
                "KeyPolicy": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "AccountUsesAndManagesThroughIam",
                            "Effect": "Allow",
                            "Principal": {"AWS": _sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")},
                            "Action": actions,
                            "Resource": "*",
                        }
                    ],
                },
            },
        },
        "LinkTokenKeyAlias": {
            "Type": "AWS::KMS::Alias",
            "Properties": {"AliasName": _ipauth_alias(stage), "TargetKeyId": _ref("LinkTokenKey")},
        },
    }


# Secrets the operator fills. Retained when the stack goes, so `make destroy` never loses a token; a
# later deploy adopts an existing one instead of creating it (the `<Name>Exists` parameters).
SECRETS: Final = {
    "BotToken": ("discord-bot-token", "The Discord bot token (Developer Portal, Bot, Reset Token)."),
    "VapidKeys": ("vapid-keys", 'Web-push VAPID key pair as JSON {"public": ..., "private": ...}.'),
}


def _secrets(stage: Stage) -> Json:
    return {
        f"{key}Secret": {
            "Type": "AWS::SecretsManager::Secret",
            "Condition": f"Create{key}Secret",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "Name": f"gangway/{stage.name}/{name}",
                "Description": about,
                "SecretString": UNSET_SECRET,
            },
        }
        for key, (name, about) in SECRETS.items()
    }


def _workflows(stage: Stage, folder: Path) -> Json:
    files = sorted(folder.glob("*.asl.json"))
    if not files:
        return {}
    res: Json = {
        "WorkflowsRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "states.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                            "Condition": {"StringEquals": {"aws:SourceAccount": _ref("AWS::AccountId")}},
                        }
                    ],
                },
                "Policies": [
                    {
                        "PolicyName": "Workflows",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Sid": "SendSteps",
                                    "Effect": "Allow",
                                    "Action": ["sqs:SendMessage"],
                                    "Resource": _att("StepsQueue", "Arn"),
                                },
                                {
                                    "Sid": "LogDeliveryHasNoResourceLevelPermissions",
                                    "Effect": "Allow",
                                    "Action": [
                                        "logs:CreateLogDelivery",
                                        "logs:GetLogDelivery",
                                        "logs:UpdateLogDelivery",
                                        "logs:DeleteLogDelivery",
                                        "logs:ListLogDeliveries",
                                        "logs:PutResourcePolicy",
                                        "logs:DescribeResourcePolicies",
                                        "logs:DescribeLogGroups",
                                    ],
                                    "Resource": "*",
                                },
                                {
                                    "Sid": "XRayHasNoResourceLevelPermissions",
                                    "Effect": "Allow",
                                    "Action": [
                                        "xray:PutTraceSegments",
                                        "xray:PutTelemetryRecords",
                                        "xray:GetSamplingRules",
                                        "xray:GetSamplingTargets",
                                    ],
                                    "Resource": "*",
                                },
                            ],
                        },
                    }
                ],
            },
        },
    }
    # Placeholders an ASL file may use, and what they become.
    known = {"StepsQueueUrl": _ref("StepsQueue"), "StepsQueueArn": _att("StepsQueue", "Arn")}
    for path in files:
        stem = path.name.removesuffix(".asl.json")
        logical = _camel(stem)
        text = path.read_text()
        json.loads(text)  # a broken file fails the build here, not in CloudFormation
        unknown = set(_PLACEHOLDER.findall(text)) - set(known)
        if unknown:
            raise ValueError(f"{path.name}: unknown placeholders {sorted(unknown)}; known: {sorted(known)}")
        machine: Json = {
            "StateMachineName": f"{stage.prefix}-{stem}",
            "StateMachineType": "STANDARD",
            "RoleArn": _att("WorkflowsRole", "Arn"),
            "DefinitionString": text,
            # ALL events, without their data: inputs carry interaction tokens.
            "LoggingConfiguration": {
                "Level": "ALL",
                "IncludeExecutionData": False,
                "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": _att(f"{logical}Logs", "Arn")}}],
            },
            "TracingConfiguration": {"Enabled": True},
        }
        used = sorted(set(_PLACEHOLDER.findall(text)))
        if used:
            # Fn::Sub rather than DefinitionSubstitutions: same result in AWS (ASL itself never writes
            # "${"), and the emulator's CloudFormation resolves Fn::Sub but ignores the substitutions.
            machine["DefinitionString"] = {"Fn::Sub": [text, {k: known[k] for k in used}]}
        res[f"{logical}Logs"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": f"/aws/vendedlogs/states/{stage.prefix}-{stem}",
                "RetentionInDays": _LOG_RETENTION_DAYS,
            },
        }
        res[f"{logical}StateMachine"] = {"Type": "AWS::StepFunctions::StateMachine", "Properties": machine}
    return res


def _function_logical_id(name: str) -> str:
    from chalice.utils import to_cfn_resource_name

    return "APIHandler" if name == "api_handler" else to_cfn_resource_name(name)


def _chalice_overrides(stage: Stage, policies: Path) -> Json:
    """Keys merged into Chalice's own resources: scoped role policies, settings, ordering, log retention."""
    from chalice.utils import to_cfn_resource_name

    res: Json = {}
    for name, cfg in stage.functions.items():
        policy_file = policies / Path(cfg["iam_policy_file"]).name
        role = f"{to_cfn_resource_name(name)}Role"
        doc = scope_policy(json.loads(policy_file.read_text()), stage.name)
        res[role] = {"Properties": {"Policies": [{"PolicyName": f"{role}Policy", "PolicyDocument": doc}]}}
        fn = _function_logical_id(name)
        env: Json = {
            **table_names(stage),
            **queue_names(stage),
            "WORKFLOWS_PREFIX": stage.prefix,  # state machines are gangway-<stage>-<file stem>
            "IPAUTH_KEY_ID": _ipauth_alias(stage),
            "HOSTING_ACCOUNT_ID": _ref("AWS::AccountId"),
            "IOT_DATA_ENDPOINT": _ref("IotDataEndpoint"),
            "DISCORD_PUBLIC_KEY": _ref("DiscordPublicKey"),
            "DISCORD_APPLICATION_ID": _ref("DiscordApplicationId"),
            # Not a GetAtt of the distribution: its CSP names the API, which names these functions.
            # `make deploy` fills it from the SiteURL output (a second, quick update on first create).
            "SITE_URL": _ref("SiteUrl"),
        }
        # The function logs to a group the stack made first, with a retention, instead of one Lambda
        # would create on first use and keep for ever (LoggingConfig, Lambda advanced logging controls).
        res[fn] = {
            "Properties": {
                "Environment": {"Variables": env},
                "LoggingConfig": {"LogGroup": _ref(f"{fn}Logs"), "LogFormat": "Text"},
            }
        }
        res[f"{fn}Logs"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": f"/aws/lambda/{stage.prefix}-{name}",
                "RetentionInDays": _LOG_RETENTION_DAYS,
            },
        }
    return res


def sqs_handlers(stage: Stage) -> dict[str, str]:
    """Function name -> queue name of every `@app.on_sqs_message` in app.py, as the stage binds them.

    Imports app.py with the stage's environment (Chalice does the same when it packages), so run it in
    the generator's fresh process.
    """
    from chalice.app import SQSEventConfig

    os.environ.update(stage.env)
    sys.path.insert(0, str(ROOT))
    app = importlib.import_module("app").app
    return {e.name: e.queue for e in app.event_sources if isinstance(e, SQSEventConfig) and e.queue}


def app_functions() -> list[str]:
    """The Lambda functions Chalice makes of app.py (import it first, with `sqs_handlers`)."""
    app = importlib.import_module("app").app
    names = ["api_handler"] if app.routes else []
    names += [e.name for e in app.event_sources]
    names += [f.name for f in app.pure_lambda_functions]
    return names


def _consumers_wait_for_their_queues(resources: Json, handlers: Mapping[str, str]) -> None:
    """Chalice's SQS event source names its queue by ARN text, not Ref: add the DependsOn it lacks.

    Raises ValueError for a handler whose queue the template does not declare.
    """
    queues = {
        r["Properties"]["QueueName"]: k for k, r in resources.items() if r.get("Type") == "AWS::SQS::Queue"
    }
    for fn, queue in sorted(handlers.items()):
        if queue not in queues:
            raise ValueError(f"{fn} consumes queue {queue!r}, which deploy/template.py does not declare")
        resources.setdefault(_function_logical_id(fn), {})["DependsOn"] = [queues[queue]]


def _parameters(stage: Stage) -> Json:
    params: Json = {
        "DiscordPublicKey": {
            "Type": "String",
            "Default": stage.env.get("DISCORD_PUBLIC_KEY", ""),
            "AllowedPattern": "^([0-9a-fA-F]{64})?$",
            "Description": "The application's public key (Developer Portal, General Information)",
        },
        "DiscordApplicationId": {
            "Type": "String",
            "Default": stage.env.get("DISCORD_APPLICATION_ID", ""),
            "AllowedPattern": "^([0-9]{17,20})?$",
            "Description": "The application id (a snowflake)",
        },
        "AlarmEmail": {"Type": "String", "Default": "", "Description": "Where alarms are mailed (optional)"},
        "SiteUrl": {
            "Type": "String",
            "Default": "",
            "Description": "The SiteURL output (make deploy fills it)",
        },
        "IotDataEndpoint": {
            "Type": "String",
            "Default": "",
            "Description": "https://<prefix>-ats.iot.<region>.amazonaws.com (make deploy looks it up)",
        },
    }
    for key in SECRETS:
        params[f"{key}SecretExists"] = {
            "Type": "String",
            "Default": "false",
            "AllowedValues": ["false", "true"],
            "Description": "true when the secret exists outside this stack (kept by an earlier destroy)",
        }
    return params


def _outputs() -> Json:
    return {
        "InteractionsEndpointURL": {
            "Description": "Paste into the Developer Portal: Interactions Endpoint URL",
            "Value": _sub(
                "https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/api/discord/interactions"
            ),
        },
        "SiteURL": {"Value": _sub("https://${SiteDistribution.DomainName}")},
        "SiteBucketName": {"Value": _ref("SiteBucket")},
        "SiteDistributionId": {"Value": _ref("SiteDistribution")},
        "AlarmTopicArn": {"Value": _ref("AlarmTopic")},
        "AgentEventsQueueUrl": {"Value": _ref("AgentEventsQueue")},
        "InstancePolicyName": {"Value": _ref("InstancePolicy")},
        "LinkTokenKeyArn": {"Value": _att("LinkTokenKey", "Arn")},
    }


def build(
    stage: Stage,
    models: Sequence[type[Model]],
    *,
    workflows: Path = WORKFLOWS,
    policies: Path = ROOT / "policies",
    handlers: Mapping[str, str] | None = None,
) -> Json:
    """The merge template for `stage`: every resource Chalice does not make, and overrides for its own."""
    resources: Json = dict(_table(m, stage) for m in models)
    for part in (
        _queues(stage, handlers or {}),
        _iot(stage),
        _site(stage),
        _link_key(stage),
        _secrets(stage),
        _workflows(stage, workflows),
        _chalice_overrides(stage, policies),
    ):
        resources.update(part)
    _consumers_wait_for_their_queues(resources, handlers or {})
    conditions: Json = {"HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [_ref("AlarmEmail"), ""]}]}}
    for key in SECRETS:
        conditions[f"Create{key}Secret"] = {"Fn::Equals": [_ref(f"{key}SecretExists"), "false"]}
    return {
        "Description": f"gangway {stage.name}: the whole system in one stack (deploy/template.py + Chalice)",
        "Parameters": _parameters(stage),
        "Conditions": conditions,
        "Resources": resources,
        "Outputs": _outputs(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.template", description=__doc__.split("\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--out", required=True, help="where to write the merge template")
    parser.add_argument("--workflows", default=str(WORKFLOWS), help="folder of *.asl.json state machines")
    args = parser.parse_args(argv)
    stage = Stage.load(args.stage)
    models = table_models(stage)
    handlers = sqs_handlers(stage)
    unconfigured = sorted(set(app_functions()) - set(stage.functions))
    if unconfigured:
        sys.stderr.write(
            f"functions without an entry in .chalice/config.json stages.{stage.name}.lambda_functions "
            f"(iam_policy_file: ../policies/<name>.json, lambda_timeout): {', '.join(unconfigured)}\n"
        )
        return 1
    template = build(stage, models, workflows=Path(args.workflows), handlers=handlers)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(template, indent=2) + "\n")
    sys.stderr.write(f"wrote {out}: {len(template['Resources'])} resources\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

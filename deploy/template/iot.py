"""The agents' side of IoT Core: the rule that forwards their events to the intake queue, their policy
and role.

Agents publish on `gangway/{tenant}/{game}/evt` and listen on `.../cmd` (DESIGN.md §4); the instance
policy lets each one use only its own thing's topics.
"""

from __future__ import annotations

from deploy.template.cfn import Json, att, ref, sub
from deploy.template.stage import Stage

__all__ = ["iot_resources"]


def iot_resources(stage: Stage) -> Json:
    """The agent-events rule and its role, the instance IoT policy, and the instance role and profile."""
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
                                "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
                                "ArnLike": {"aws:SourceArn": sub(f"{iot_arn}:rule/{rule}")},
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
                                    "Sid": "AgentIntakeQueues",
                                    "Effect": "Allow",
                                    "Action": ["sqs:SendMessage"],
                                    "Resource": [
                                        att("AgentIntakeQueue", "Arn"),
                                        att("AgentEventsQueueDeadLetter", "Arn"),
                                    ],
                                }
                            ],
                        },
                    }
                ],
            },
        },
        # Agents publish on gangway/{tenant}/{game}/evt (DESIGN.md §4); the topic names both. An SQS action
        # cannot set a MessageGroupId, so the rule fills the intake queue and the agent_intake function
        # moves each event to the fair agent-events queue grouped by tenant (chalicelib/agents/intake.py).
        "AgentEventsRule": {
            "Type": "AWS::IoT::TopicRule",
            "Properties": {
                "RuleName": rule,
                "TopicRulePayload": {
                    "Description": "Agent events and replies to the agent-intake queue",
                    "Sql": "SELECT *, topic() AS topic FROM 'gangway/+/+/evt'",
                    "AwsIotSqlVersion": "2016-03-23",
                    "RuleDisabled": False,
                    "Actions": [
                        {
                            "Sqs": {
                                "QueueUrl": ref("AgentIntakeQueue"),
                                "RoleArn": att("AgentEventsRuleRole", "Arn"),
                                "UseBase64": False,
                            }
                        }
                    ],
                    "ErrorAction": {
                        "Sqs": {
                            "QueueUrl": ref("AgentEventsQueueDeadLetter"),
                            "RoleArn": att("AgentEventsRuleRole", "Arn"),
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
                            "Resource": sub(f"{iot_arn}:client/${{!iot:Connection.Thing.ThingName}}"),
                            "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
                        },
                        {
                            "Sid": "PublishOwnEvents",
                            "Effect": "Allow",
                            "Action": ["iot:Publish"],
                            "Resource": sub(f"{iot_arn}:topic/{topic}/evt"),
                        },
                        {
                            "Sid": "SubscribeOwnCommands",
                            "Effect": "Allow",
                            "Action": ["iot:Subscribe"],
                            "Resource": sub(f"{iot_arn}:topicfilter/{topic}/cmd"),
                        },
                        {
                            "Sid": "ReceiveOwnCommands",
                            "Effect": "Allow",
                            "Action": ["iot:Receive"],
                            "Resource": sub(f"{iot_arn}:topic/{topic}/cmd"),
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
                                    # Read once, then deleted by the instance: the key leaves SSM as soon
                                    # as the instance holds it (lifecycle/templates/user-data.sh).
                                    "Sid": "ReadOwnKey",
                                    "Effect": "Allow",
                                    "Action": ["ssm:GetParameter", "ssm:DeleteParameter"],
                                    "Resource": sub(
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
                                    "Resource": sub(
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
                "Roles": [ref("InstanceRole")],
            },
        },
    }

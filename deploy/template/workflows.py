"""One Step Functions state machine per `chalicelib/workflows/*.asl.json`, with its log group and role.

The ASL files may name the steps queue through placeholders (`${StepsQueueUrl}`, `${StepsQueueArn}`);
any other placeholder fails the build here rather than in CloudFormation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Final

from deploy.template.cfn import LOG_RETENTION_DAYS, Json, att, camel, ref
from deploy.template.stage import ROOT, Stage

__all__ = ["WORKFLOWS", "workflow_resources"]

WORKFLOWS: Final = ROOT / "chalicelib" / "workflows"
_PLACEHOLDER: Final = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def workflow_resources(stage: Stage, folder: Path) -> Json:
    """The role every state machine wears, and a machine and log group per file; nothing without files.

    Raises ValueError for a file that is not JSON or uses an unknown placeholder.
    """
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
                            "Condition": {"StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")}},
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
                                    "Resource": att("StepsQueue", "Arn"),
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
    known = {"StepsQueueUrl": ref("StepsQueue"), "StepsQueueArn": att("StepsQueue", "Arn")}
    for path in files:
        stem = path.name.removesuffix(".asl.json")
        logical = camel(stem)
        text = path.read_text()
        json.loads(text)  # a broken file fails the build here, not in CloudFormation
        unknown = set(_PLACEHOLDER.findall(text)) - set(known)
        if unknown:
            raise ValueError(f"{path.name}: unknown placeholders {sorted(unknown)}; known: {sorted(known)}")
        machine: Json = {
            "StateMachineName": f"{stage.prefix}-{stem}",
            "StateMachineType": "STANDARD",
            "RoleArn": att("WorkflowsRole", "Arn"),
            "DefinitionString": text,
            # ALL events, without their data: inputs carry interaction tokens.
            "LoggingConfiguration": {
                "Level": "ALL",
                "IncludeExecutionData": False,
                "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": att(f"{logical}Logs", "Arn")}}],
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
                "RetentionInDays": LOG_RETENTION_DAYS,
            },
        }
        res[f"{logical}StateMachine"] = {"Type": "AWS::StepFunctions::StateMachine", "Properties": machine}
    return res

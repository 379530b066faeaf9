"""Keys merged into the resources Chalice makes for each function, and the ordering Chalice leaves out.

Each function's role gets its `policies/*.json` scoped to the stage (`deploy.policy`), its environment
every table and queue name, and its logs a group with a retention; an SQS consumer waits for its queue;
the steps function carries web push's layer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from deploy.package import LAYER_ZIP
from deploy.policy import scope_policy
from deploy.template.cfn import LOG_RETENTION_DAYS, Json, att, ref
from deploy.template.hosting import HOSTING_ROLE
from deploy.template.keys import secure_parameter
from deploy.template.site import customer_template_url
from deploy.template.stage import Stage, queue_names, table_names

__all__ = [
    "PARTIAL_BATCH_FUNCTIONS",
    "PUSH_FUNCTION",
    "PUSH_LAYER",
    "chalice_overrides",
    "consumers_wait_for_their_queues",
    "function_logical_id",
]

PUSH_FUNCTION = "steps"  # the one function that sends web pushes (chalicelib/push/addip_push.py)
PUSH_LAYER = "WebPushLayer"
# SQS consumers that answer Lambda's partial batch response (`batchItemFailures`), so a batch's records
# that went through are not sent again (chalicelib/agents/intake.py). Chalice cannot say it; SAM's SQS
# event takes FunctionResponseTypes.
PARTIAL_BATCH_FUNCTIONS = ("agent_intake",)


def function_logical_id(name: str) -> str:
    """The logical id Chalice gives function `name` in its SAM template."""
    from chalice.utils import to_cfn_resource_name

    return "APIHandler" if name == "api_handler" else to_cfn_resource_name(name)


def chalice_overrides(stage: Stage, policies: Path) -> Json:
    """Keys merged into Chalice's own resources: scoped role policies, settings, ordering, log retention."""
    from chalice.utils import to_cfn_resource_name

    res: Json = {}
    for name, cfg in stage.functions.items():
        policy_file = policies / Path(cfg["iam_policy_file"]).name
        role = f"{to_cfn_resource_name(name)}Role"
        doc = scope_policy(json.loads(policy_file.read_text()), stage.name)
        res[role] = {"Properties": {"Policies": [{"PolicyName": f"{role}Policy", "PolicyDocument": doc}]}}
        fn = function_logical_id(name)
        env: Json = {
            **table_names(stage),
            **queue_names(stage),
            "WORKFLOWS_PREFIX": stage.prefix,  # state machines are gangway-<stage>-<file stem>
            # The SecureString parameters `make deploy` creates (deploy/parameters.py).
            "DISCORD_BOT_TOKEN_PARAMETER": secure_parameter(stage.name, "discord-bot-token"),
            "VAPID_PARAMETER": secure_parameter(stage.name, "vapid-keys"),
            "VAPID_PUBLIC_PARAMETER": secure_parameter(stage.name, "vapid-public"),
            "IPAUTH_KEYS_PARAMETER": secure_parameter(stage.name, "ipauth-keys"),
            "HOSTING_ACCOUNT_ID": ref("AWS::AccountId"),
            # The broker assumes it, tagged with the tenant, for every hosted tenant (hosting.py).
            "HOSTING_ROLE_ARN": att(HOSTING_ROLE, "Arn"),
            "IOT_DATA_ENDPOINT": ref("IotDataEndpoint"),
            "DISCORD_PUBLIC_KEY": ref("DiscordPublicKey"),
            "DISCORD_APPLICATION_ID": ref("DiscordApplicationId"),
            # Not a GetAtt of the distribution: its CSP names the API, which names these functions.
            # `make deploy` fills it from the SiteURL output (a second, quick update on first create).
            "SITE_URL": ref("SiteUrl"),
            # The steps sign each instance a URL of the agent's wheelhouse (make deploy uploads it first).
            "AGENT_WHEELHOUSE": ref("AgentWheelhouse"),
            # /setup's quick-create link: an S3 object URL, which CloudFormation accepts (not CloudFront).
            "CUSTOMER_TEMPLATE_URL": customer_template_url(),
        }
        # The function logs to a group the stack made first, with a retention, instead of one Lambda
        # would create on first use and keep for ever (LoggingConfig, Lambda advanced logging controls).
        res[fn] = {
            "Properties": {
                "Environment": {"Variables": env},
                "LoggingConfig": {"LogGroup": ref(f"{fn}Logs"), "LogFormat": "Text"},
            }
        }
        if name == PUSH_FUNCTION:
            res[fn]["Properties"]["Layers"] = [ref(PUSH_LAYER)]
        if name in PARTIAL_BATCH_FUNCTIONS:
            # Chalice names the event `<function>-sqs-event-source` (chalice/deploy/appgraph.py).
            event = to_cfn_resource_name(f"{name}-sqs-event-source")
            partial = {"Properties": {"FunctionResponseTypes": ["ReportBatchItemFailures"]}}
            res[fn]["Properties"]["Events"] = {event: partial}
        res[f"{fn}Logs"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": f"/aws/lambda/{stage.prefix}-{name}",
                "RetentionInDays": LOG_RETENTION_DAYS,
            },
        }
    # Web push's dependencies (cryptography, aiohttp, requests…: 28 MB unpacked), split off Chalice's
    # zip by deploy/package.py, load only where pushes are sent.
    res[PUSH_LAYER] = {
        "Type": "AWS::Serverless::LayerVersion",
        "Properties": {
            "LayerName": f"{stage.prefix}-web-push",
            "Description": "pywebpush and what only it requires (deploy/package.py)",
            "ContentUri": f"./{LAYER_ZIP}",
            "RetentionPolicy": "Delete",
        },
    }
    return res


def consumers_wait_for_their_queues(resources: Json, handlers: Mapping[str, str]) -> None:
    """Chalice's SQS event source names its queue by ARN text, not Ref: add the DependsOn it lacks.

    Raises ValueError for a handler whose queue the template does not declare.
    """
    queues = {
        r["Properties"]["QueueName"]: k for k, r in resources.items() if r.get("Type") == "AWS::SQS::Queue"
    }
    for fn, queue in sorted(handlers.items()):
        if queue not in queues:
            raise ValueError(f"{fn} consumes queue {queue!r}, which the template does not declare")
        resources.setdefault(function_logical_id(fn), {})["DependsOn"] = [queues[queue]]

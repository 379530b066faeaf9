"""The deployment template: built from the code, lint-clean, least privilege, priced (issue 8).

The merged template is built once per module the way `make template` builds it (the generator in a
fresh process, then `chalice package --merge-template`), once as the tree is and once with a sample
workflow so the state-machine path is proven before the first real workflow lands.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint  # type: ignore[import-untyped]
from pynamodb.attributes import TTLAttribute
from pynamodb.models import Model

from chalicelib.config import Settings
from deploy.cost import PRICES, deployed_outside, idle_cost, play_cost
from deploy.policy import NO_RESOURCE_LEVEL, policy_problems, scope_policy, template_policies
from deploy.stack import Deployment
from deploy.template import ROOT, SECURE_PARAMETERS, WORKFLOWS, Stage, build, secure_parameter
from deploy.template import main as template_main

STAGE = "dev"
SAMPLE_WORKFLOW = {
    "Comment": "One step through the steps queue, as every workflow does (DESIGN.md section 3)",
    "StartAt": "Step",
    "States": {
        "Step": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {
                "QueueUrl": "${StepsQueueUrl}",
                "MessageBody": {"step": "demo", "input.$": "$", "token.$": "$$.Task.Token"},
            },
            "End": True,
        }
    },
}


def build_template(out: Path, workflows: Path | None = None) -> dict[str, Any]:
    dep = Deployment(STAGE, build_dir=out, say=lambda _: None)
    return dict(json.loads(dep.build(workflows=workflows).read_text()))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_template(tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="module")
def with_workflow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("workflows")
    (folder / "demo.asl.json").write_text(json.dumps(SAMPLE_WORKFLOW))
    return build_template(tmp_path_factory.mktemp("build"), folder)


def of_type(tpl: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in tpl["Resources"].items() if r["Type"] == rtype}


def app_models() -> list[type[Model]]:
    for path in sorted((ROOT / "chalicelib").glob("*/models.py")):
        importlib.import_module(f"chalicelib.{path.parent.name}.models")
    found, todo = [], list(Model.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.startswith("chalicelib."):
            found.append(cls)
    return found


# -- the same template as before the generator was cut into parts ------------------------------------

GOLDEN = ROOT / "tests" / "golden"
# (golden file, stage, workflows folder): the stages of .chalice/config.json with the shipped
# workflows, and dev with only SAMPLE_WORKFLOW ("demo").
GOLDEN_BUILDS = [
    ("template-local.json", "local", None),
    ("template-dev.json", "dev", None),
    ("template-prod.json", "prod", None),
    ("template-dev-demo-workflow.json", "dev", "demo"),
]
# What an ASL placeholder becomes (Fn::Sub of the file's text), as deploy/template/workflows.py promises.
ASL_PLACEHOLDERS = {
    "StepsQueueUrl": {"Ref": "StepsQueue"},
    "StepsQueueArn": {"Fn::GetAtt": ["StepsQueue", "Arn"]},
}


def shipped_definition(text: str) -> Any:
    """The DefinitionString an ASL file's text should become."""
    used = sorted(set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text)))
    return {"Fn::Sub": [text, {k: ASL_PLACEHOLDERS[k] for k in used}]} if used else text


def machines(tpl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    # A merge template also holds keys for Chalice's resources, without a Type.
    return {k: r for k, r in tpl["Resources"].items() if r.get("Type") == "AWS::StepFunctions::StateMachine"}


@pytest.mark.parametrize(("golden", "stage", "workflow"), GOLDEN_BUILDS, ids=[g for g, _, _ in GOLDEN_BUILDS])
def test_the_generator_writes_its_golden_template_with_the_workflows_as_they_are_now(
    golden: str, stage: str, workflow: str | None, tmp_path: Path
) -> None:
    """Byte for byte the golden file, except each state machine's ASL text, which is the file's today.

    The ASL files change on their own (chalicelib/workflows); what the generator does with them is
    pinned here instead: the text as read at test time, its placeholders substituted. A workflow file
    added or removed does change the template: regenerate the golden files then, with
    `python -m deploy.template --stage <stage> --out tests/golden/template-<stage>.json` (and, for the
    demo one, `--workflows` a folder holding SAMPLE_WORKFLOW as demo.asl.json).
    """
    folder = WORKFLOWS
    if workflow is not None:
        folder = tmp_path / "workflows"
        folder.mkdir()
        (folder / f"{workflow}.asl.json").write_text(json.dumps(SAMPLE_WORKFLOW))
    out = tmp_path / "resources.json"
    assert template_main(["--stage", stage, "--out", str(out), "--workflows", str(folder)]) == 0
    built = json.loads(out.read_text())
    expected_text = (GOLDEN / golden).read_text()
    expected = json.loads(expected_text)
    prefix = f"gangway-{stage}-"
    for name, machine in machines(built).items():
        stem = machine["Properties"]["StateMachineName"].removeprefix(prefix)
        shipped = (folder / f"{stem}.asl.json").read_text()
        assert machine["Properties"]["DefinitionString"] == shipped_definition(shipped), name
        assert name in machines(expected), f"{name} is new: regenerate tests/golden/{golden}"
        # Put the golden's definition back where it was, to compare everything else byte for byte.
        was = expected["Resources"][name]["Properties"]["DefinitionString"]
        machine["Properties"]["DefinitionString"] = was
    assert json.dumps(built, indent=2) + "\n" == expected_text


def test_the_golden_templates_hold_definitions_as_the_generator_makes_them() -> None:
    for golden, _, _ in GOLDEN_BUILDS:
        for name, machine in machines(json.loads((GOLDEN / golden).read_text())).items():
            definition = copy.deepcopy(machine["Properties"]["DefinitionString"])
            text = definition if isinstance(definition, str) else definition["Fn::Sub"][0]
            assert definition == shipped_definition(text), f"{golden}: {name}"


def test_building_a_template_leaves_this_process_environment_and_path_as_they_were(tmp_path: Path) -> None:
    # This process imported the models already, bound to conftest's test-* tables: the build must
    # neither need a fresh process nor change what this one sees.
    app_models()
    env, path, modules = dict(os.environ), list(sys.path), set(sys.modules)
    assert template_main(["--stage", STAGE, "--out", str(tmp_path / "resources.json")]) == 0
    assert dict(os.environ) == env
    assert sys.path == path
    assert "app" not in set(sys.modules) - modules


# -- lint --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["as_is", "with_workflow"])
def test_merged_template_lints_clean(variant: str, request: pytest.FixtureRequest) -> None:
    tpl = request.getfixturevalue("template" if variant == "as_is" else "with_workflow")
    matches = lint(json.dumps(tpl), regions=["us-east-1", "eu-west-1"])
    assert [str(m) for m in matches] == []


def test_bootstrap_template_lints_clean() -> None:
    assert [str(m) for m in lint((ROOT / "deploy" / "bootstrap.json").read_text())] == []


# -- tables from the models --------------------------------------------------------------------------


def test_every_model_has_a_table_with_its_keys_ttl_pitr_and_encryption(template: dict[str, Any]) -> None:
    tables = {r["Properties"]["TableName"]: r for r in of_type(template, "AWS::DynamoDB::Table").values()}
    models = app_models()
    assert len(tables) == len(models) >= 3
    for model in models:
        suffix = model.Meta.table_name.rsplit("-", 1)[-1]  # test-tenants here, gangway-dev-tenants there
        res = tables[f"gangway-{STAGE}-{suffix}"]
        props = res["Properties"]
        keys = {
            a.attr_name: ("HASH" if a.is_hash_key else "RANGE")
            for a in model.get_attributes().values()
            if a.is_hash_key or a.is_range_key
        }
        assert {k["AttributeName"]: k["KeyType"] for k in props["KeySchema"]} == keys
        assert props["KeySchema"][0]["KeyType"] == "HASH"
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"] == {"SSEEnabled": True}
        ttl = [a.attr_name for a in model.get_attributes().values() if isinstance(a, TTLAttribute)]
        if ttl:
            assert props["TimeToLiveSpecification"] == {"AttributeName": ttl[0], "Enabled": True}
        else:
            assert "TimeToLiveSpecification" not in props
        assert res["UpdateReplacePolicy"] == "Retain"


def test_every_function_is_told_every_table_name_the_template_creates(template: dict[str, Any]) -> None:
    tables = {r["Properties"]["TableName"] for r in of_type(template, "AWS::DynamoDB::Table").values()}
    table_vars = {f.name.upper() for f in fields(Settings) if f.name.endswith("_table")}
    for name, fn in of_type(template, "AWS::Serverless::Function").items():
        env = fn["Properties"]["Environment"]["Variables"]
        told = {v for k, v in env.items() if k in table_vars}
        assert told == tables, name
        assert env["IPAUTH_KEYS_PARAMETER"] == f"/gangway/{STAGE}/ipauth-keys"
        assert env["DISCORD_BOT_TOKEN_PARAMETER"] == Stage.load(STAGE).env["DISCORD_BOT_TOKEN_PARAMETER"]
        assert env["VAPID_PARAMETER"] == Stage.load(STAGE).env["VAPID_PARAMETER"]
        assert env["DISCORD_PUBLIC_KEY"] == {"Ref": "DiscordPublicKey"}


# -- queues, alarms, IoT, site, key, secrets ---------------------------------------------------------


def test_jobs_queue_outlasts_the_function_and_parks_poison_messages_after_the_runners_last_try(
    template: dict[str, Any],
) -> None:
    q = template["Resources"]["JobsQueue"]["Properties"]
    assert q["QueueName"] == Stage.load(STAGE).jobs_queue
    assert q["VisibilityTimeout"] > template["Resources"]["Jobs"]["Properties"]["Timeout"]
    max_receives = int(Stage.load(STAGE).env["JOB_MAX_RECEIVES"])
    assert q["RedrivePolicy"]["maxReceiveCount"] > max_receives
    assert q["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["JobsQueueDeadLetter", "Arn"]}
    # 15-minute interaction token (discord-protocol.md): the runner's retries fit inside it.
    assert q["VisibilityTimeout"] * max_receives <= 15 * 60
    assert template["Resources"]["Jobs"]["DependsOn"] == ["JobsQueue"]


def test_every_queue_has_a_dead_letter_queue_with_an_alarm_on_its_depth(
    with_workflow: dict[str, Any],
) -> None:
    queues = of_type(with_workflow, "AWS::SQS::Queue")
    alarms = of_type(with_workflow, "AWS::CloudWatch::Alarm").values()
    watched = {
        a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for a in alarms
        if a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    }
    mains = {k: q for k, q in queues.items() if not k.endswith("DeadLetter")}
    assert set(mains) == {"JobsQueue", "AgentIntakeQueue", "AgentEventsQueue", "StepsQueue"}
    for name, q in mains.items():
        dlq = q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert dlq in queues and dlq in watched, name
    for q in queues.values():
        assert q["Properties"]["SqsManagedSseEnabled"] is True
    for a in alarms:
        assert a["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_a_queue_handler_whose_queue_the_template_lacks_fails_the_build() -> None:
    with pytest.raises(ValueError, match="gangway-dev-nowhere"):
        build(Stage.load(STAGE), [], handlers={"jobs": "gangway-dev-nowhere"})


def test_every_statement_in_the_template_is_seen_by_the_policy_check(with_workflow: dict[str, Any]) -> None:
    checked = {where.split(".")[0] for where, _, _ in template_policies(with_workflow)}
    for name, res in with_workflow["Resources"].items():
        props = dict(res.get("Properties", {}))
        props.pop("AssumeRolePolicyDocument", None)  # trust policies say who, not what
        if '"Statement"' in json.dumps(props):
            assert name in checked, f"{name} ({res['Type']}) holds a policy the check does not read"


def test_agent_events_reach_the_intake_queue_through_the_iot_rule(template: dict[str, Any]) -> None:
    rule = template["Resources"]["AgentEventsRule"]["Properties"]["TopicRulePayload"]
    assert "FROM 'gangway/+/+/evt'" in rule["Sql"]
    assert "topic() AS topic" in rule["Sql"]  # what agent_intake reads the tenant from
    assert rule["Actions"][0]["Sqs"]["QueueUrl"] == {"Ref": "AgentIntakeQueue"}
    # What the rule cannot deliver, and what agent_intake fails to, wait in agent-events' DLQ (one alarm).
    assert rule["ErrorAction"]["Sqs"]["QueueUrl"] == {"Ref": "AgentEventsQueueDeadLetter"}
    redrive = template["Resources"]["AgentIntakeQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["AgentEventsQueueDeadLetter", "Arn"]}


def test_agent_intake_moves_batches_of_ten_to_the_fair_queue_and_retries_only_what_failed(
    template: dict[str, Any],
) -> None:
    """Issue 15.4: the rule's queue feeds agent_intake, which alone may send to agent_events' queue."""
    res = template["Resources"]
    stage = Stage.load(STAGE)
    intake, events = res["AgentIntake"], res["AgentEvents"]
    [source] = intake["Properties"]["Events"].values()
    assert source["Type"] == "SQS"
    assert source["Properties"]["BatchSize"] == 10
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["Properties"]["Queue"]["Fn::Sub"].endswith(":" + stage.env["AGENT_INTAKE_QUEUE"])
    assert intake["DependsOn"] == ["AgentIntakeQueue"]
    [consumer] = events["Properties"]["Events"].values()
    assert consumer["Properties"]["Queue"]["Fn::Sub"].endswith(":" + stage.env["AGENT_EVENTS_QUEUE"])
    # Its visibility outlasts the forwarder's timeout, as Lambda requires of an SQS event source.
    assert res["AgentIntakeQueue"]["Properties"]["VisibilityTimeout"] > intake["Properties"]["Timeout"]
    statements = res["AgentIntakeRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    sends = [s for s in statements if "sqs:SendMessage" in s["Action"]]
    assert [s["Resource"]["Fn::Sub"] for s in sends] == [
        "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:" + stage.env["AGENT_EVENTS_QUEUE"]
    ]
    assert not any(a.startswith("dynamodb:") for s in statements for a in s["Action"])


def test_instances_may_use_only_their_own_things_topics(template: dict[str, Any]) -> None:
    doc = template["Resources"]["InstancePolicy"]["Properties"]["PolicyDocument"]
    own = "gangway/${!iot:Connection.Thing.Attributes[tenant]}/${!iot:Connection.Thing.Attributes[game]}"
    grants = {s["Action"][0]: s["Resource"]["Fn::Sub"] for s in doc["Statement"]}
    assert set(grants) == {"iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive"}
    assert grants["iot:Connect"].endswith(":client/${!iot:Connection.Thing.ThingName}")
    assert grants["iot:Publish"].endswith(f":topic/{own}/evt")
    assert grants["iot:Subscribe"].endswith(f":topicfilter/{own}/cmd")
    assert grants["iot:Receive"].endswith(f":topic/{own}/cmd")


def test_site_is_a_private_bucket_behind_cloudfront_with_csp_and_hsts(template: dict[str, Any]) -> None:
    res = template["Resources"]
    block = res["SiteBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    origin = res["SiteDistribution"]["Properties"]["DistributionConfig"]["Origins"][0]
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["SiteOriginAccessControl", "Id"]}
    reader = res["SiteBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert reader["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert "${SiteDistribution}" in reader["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Sub"]
    headers = res["SiteSecurityHeaders"]["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    csp = headers["ContentSecurityPolicy"]["ContentSecurityPolicy"]["Fn::Sub"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "${RestAPI}" in csp
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert headers["ReferrerPolicy"]["ReferrerPolicy"] == "no-referrer"


def test_functions_log_to_groups_the_stack_makes_with_a_retention(template: dict[str, Any]) -> None:
    for name, fn in of_type(template, "AWS::Serverless::Function").items():
        group = template["Resources"][fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]]["Properties"]
        assert group["RetentionInDays"] > 0, name
        assert group["LogGroupName"].startswith(f"/aws/lambda/gangway-{STAGE}-"), name  # what OwnLogs allows


def test_no_paid_secret_store_or_customer_key_is_in_the_stack(template: dict[str, Any]) -> None:
    """Issue 16.3: the secrets are SecureString parameters (`make deploy` makes them), not $0.40/month
    Secrets Manager secrets, and no $1/month customer-managed KMS key seals the IPAuth links."""
    types = {r["Type"] for r in template["Resources"].values()}
    assert not types & {"AWS::SecretsManager::Secret", "AWS::KMS::Key", "AWS::KMS::Alias"}
    assert not [p for p in template["Parameters"] if p.endswith("SecretExists")]
    text = json.dumps(template)
    assert "secretsmanager:" not in text and "kms:" not in text


def test_each_function_reads_only_the_parameters_it_needs_by_arn(template: dict[str, Any]) -> None:
    read: dict[str, set[str]] = {}
    for name, role in of_type(template, "AWS::IAM::Role").items():
        if name == "InstanceRole":
            continue  # the instances' own parameters (the agent's key), not the stage's secrets
        for policy in role["Properties"].get("Policies", []):
            for stmt in policy["PolicyDocument"]["Statement"]:
                if "ssm:GetParameter" in stmt["Action"] and "Resource" in stmt:
                    res = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
                    subs = [r["Fn::Sub"] for r in res if isinstance(r, dict)]
                    texts = [t for t in subs if ":parameter/gangway/" in t]
                    read.setdefault(name, set()).update(t.rsplit("/", 1)[1] for t in texts)
                    assert all(f":parameter/gangway/{STAGE}/" in t for t in texts), texts
    assert read == {
        "ApiHandlerRole": {"ipauth-keys", "vapid-public"},  # the public key alone, never the pair
        "JobsRole": {"ipauth-keys", "discord-bot-token"},
        "StepsRole": {"ipauth-keys", "vapid-keys", "discord-bot-token"},
        "AgentEventsRole": {"discord-bot-token"},
        "HostingRole": set(),  # the public Debian image parameter alone
    }
    assert set(SECURE_PARAMETERS) == {"ipauth-keys", "vapid-keys", "vapid-public", "discord-bot-token"}
    settings = Settings.from_env({"GANGWAY_STAGE": STAGE})
    assert secure_parameter(STAGE, "ipauth-keys") == settings.ipauth_keys_parameter
    assert secure_parameter(STAGE, "vapid-public") == settings.vapid_public_parameter


# -- workflows ---------------------------------------------------------------------------------------


def test_each_workflow_file_becomes_a_state_machine_with_logging_and_tracing(
    with_workflow: dict[str, Any], template: dict[str, Any]
) -> None:
    shipped = {
        p.name.removesuffix(".asl.json") for p in (ROOT / "chalicelib" / "workflows").glob("*.asl.json")
    }
    in_tree = of_type(template, "AWS::StepFunctions::StateMachine").values()
    assert {m["Properties"]["StateMachineName"] for m in in_tree} == {f"gangway-{STAGE}-{s}" for s in shipped}
    machines = of_type(with_workflow, "AWS::StepFunctions::StateMachine")
    assert list(machines) == ["DemoStateMachine"]
    props = machines["DemoStateMachine"]["Properties"]
    assert props["StateMachineName"] == f"gangway-{STAGE}-demo"
    text, values = props["DefinitionString"]["Fn::Sub"]
    assert json.loads(text) == SAMPLE_WORKFLOW
    assert values == {"StepsQueueUrl": {"Ref": "StepsQueue"}}
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is False


def test_a_workflow_with_an_unknown_placeholder_fails_the_build(tmp_path: Path) -> None:
    (tmp_path / "bad.asl.json").write_text(
        json.dumps(
            {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": "${NoSuchThing}", "End": True}}}
        )
    )
    with pytest.raises(ValueError, match="NoSuchThing"):
        build(Stage.load(STAGE), [], workflows=tmp_path)


# -- least privilege ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((ROOT / "policies").glob("*.json")), ids=lambda p: p.name)
def test_policy_files_name_actions_and_scope_resources(path: Path) -> None:
    assert policy_problems(json.loads(path.read_text()), path.name) == []


@pytest.mark.parametrize("variant", ["as_is", "with_workflow"])
def test_every_policy_in_the_merged_template_is_least_privilege(
    variant: str, request: pytest.FixtureRequest
) -> None:
    tpl = request.getfixturevalue("template" if variant == "as_is" else "with_workflow")
    found = list(template_policies(tpl))
    assert {kind for _, kind, _ in found} == {"identity", "resource"}  # no KMS key policy any more
    problems = [p for where, kind, doc in found for p in policy_problems(doc, where, kind=kind, stage=STAGE)]
    assert problems == []


def test_function_roles_are_their_policy_files_scoped_to_the_stage(template: dict[str, Any]) -> None:
    stage = Stage.load(STAGE)
    for name, cfg in stage.functions.items():
        role = next(
            r
            for k, r in of_type(template, "AWS::IAM::Role").items()
            if k.lower() == name.replace("_", "") + "role"
        )
        doc = json.loads((ROOT / "policies" / Path(cfg["iam_policy_file"]).name).read_text())
        assert role["Properties"]["Policies"] == [
            {
                "PolicyName": role["Properties"]["Policies"][0]["PolicyName"],
                "PolicyDocument": scope_policy(doc, STAGE),
            }
        ]


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Statement": [{"Sid": "S", "Effect": "Allow", "Action": action, "Resource": resource, **extra}]}


@pytest.mark.parametrize(
    ("doc", "stage", "complaint"),
    [
        (allow("dynamodb:*", "arn:aws:dynamodb:*:*:table/gangway-*-games"), None, "wildcard action"),
        (allow("*", "arn:aws:dynamodb:*:*:table/gangway-*-games"), None, "wildcard action"),
        (allow(["dynamodb:GetItem"], "*"), None, '"Resource": "*"'),
        (allow(["dynamodb:GetItem"], "arn:aws:dynamodb:*:*:table/*"), None, "does not name"),
        (
            allow(
                ["dynamodb:GetItem"],
                {"Fn::Sub": "arn:${AWS::Partition}:dynamodb:*:*:table/gangway-dev-games"},
            ),
            "dev",
            "region or account",
        ),
        (allow(["dynamodb:GetItem"], "arn:aws:dynamodb:us-east-1:1:table/gangway-*-games"), "dev", "stage"),
        ({"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}, None, "NotAction"),
        (allow(["kms:Decrypt"], "arn:aws:kms:*:*:key/*"), None, "does not name"),
    ],
)
def test_the_policy_check_catches_what_could_be_narrower(
    doc: dict[str, Any], stage: str | None, complaint: str
) -> None:
    problems = policy_problems(doc, "p.json", stage=stage)
    assert problems and complaint in problems[0]


def test_the_policy_check_accepts_what_cannot_be_narrower() -> None:
    xray = allow(sorted(NO_RESOURCE_LEVEL), "*")
    aliased = allow(
        ["kms:Decrypt"],
        "arn:aws:kms:*:*:key/*",
        Condition={"ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/gangway-*-ipauth"}},
    )
    deny_all = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*"}]}
    key_policy = allow(["kms:Decrypt"], "*")
    assert policy_problems(xray, "x") == policy_problems(aliased, "k") == policy_problems(deny_all, "d") == []
    assert policy_problems(key_policy, "key", kind="key") == []


# -- what it costs idle ------------------------------------------------------------------------------


def test_idle_cost_is_priced_from_every_resource_in_the_template(template: dict[str, Any]) -> None:
    prices = json.loads(PRICES.read_text())
    assert prices["source"] and prices["date"]
    cost = idle_cost(template)
    n = {rtype: count for rtype, count, _, _ in cost.lines}
    expected = n["AWS::CloudWatch::Alarm"] * 0.10 + n["AWS::S3::Bucket"] * 0.01
    assert cost.total == pytest.approx(expected)
    assert "AWS::SecretsManager::Secret" not in n and "AWS::KMS::Key" not in n
    assert "idle total" in cost.table()


def test_the_idle_bill_is_at_most_fifty_cents_and_twenty_hours_of_play_are_priced(
    template: dict[str, Any],
) -> None:
    """Issue 16.3: $2.21/month idle before (two secrets $0.80, a KMS key $1.00, four alarms $0.40)."""
    outside = deployed_outside()
    idle = idle_cost(template, outside=outside)
    assert idle.total <= 0.50
    assert "SSM SecureString (standard, make deploy)" in idle.table()  # listed, at $0.00
    play = play_cost(idle)
    game = json.loads((ROOT / "chalicelib" / "games" / "prices.json").read_text())["regions"]["us-east-1"]
    hourly = (
        game["on_demand_hourly"]["t3.medium"] + 12 * game["gp3_gb_month"] / 730 + game["public_ipv4_hourly"]
    )
    assert (play.instance_type, play.disk_gb, play.hours) == ("t3.medium", 12, 20)
    assert play.on_demand == pytest.approx(20 * hourly, abs=0.01)
    assert play.snapshot == pytest.approx(12 * game["snapshot_gb_month"])
    assert play.spot[0] < play.spot[1] < play.on_demand
    assert play.total_on_demand == pytest.approx(idle.total + play.on_demand + play.snapshot, abs=0.01)
    text = play.table()
    assert "on-demand" in text and "Spot" in text and "snapshot" in text


def test_a_resource_type_without_a_price_fails_the_cost(template: dict[str, Any]) -> None:
    tpl = {"Resources": {**template["Resources"], "X": {"Type": "AWS::EC2::NatGateway", "Properties": {}}}}
    with pytest.raises(KeyError, match="NatGateway"):
        idle_cost(tpl)


# -- the hosting role (issue 15.5) -------------------------------------------------------------------


def test_the_hosting_role_is_trusted_by_the_functions_that_broker_and_they_hold_no_ec2_rights(
    template: dict[str, Any],
) -> None:
    """Hosted tenants act through HostingRole, tagged with their tenant: only jobs, steps and the reaper
    may assume it (and tag the session only with a tenant); every function is told its ARN; and no
    function role may still touch EC2 itself (ec2_events only reads instances for its events)."""
    resources = template["Resources"]
    role = resources["HostingRole"]["Properties"]
    assert role["RoleName"] == f"gangway-{STAGE}-hosting"
    trust = role["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Action"] for s in trust] == ["sts:AssumeRole", "sts:TagSession"]
    for stmt in trust:
        assert {p["Fn::GetAtt"][0] for p in stmt["Principal"]["AWS"]} == {
            "JobsRole",
            "StepsRole",
            "ReaperRole",
        }
    assert trust[1]["Condition"] == {"StringLike": {"aws:RequestTag/gangway:tenant": "?*"}}
    for name, fn in of_type(template, "AWS::Serverless::Function").items():
        env = fn["Properties"]["Environment"]["Variables"]
        assert env["HOSTING_ROLE_ARN"] == {"Fn::GetAtt": ["HostingRole", "Arn"]}, name
    ec2 = {
        (name, action)
        for name, r in of_type(template, "AWS::IAM::Role").items()
        if name not in ("HostingRole", "InstanceRole")
        for policy in r["Properties"].get("Policies", [])
        for stmt in policy["PolicyDocument"]["Statement"]
        for action in (stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]])
        if action.startswith("ec2:")
    }
    assert ec2 == {("Ec2EventsRole", "ec2:DescribeInstances")}
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    tenant = "${aws:PrincipalTag/gangway:tenant}"
    for stmt in statements:
        if stmt["Sid"] == "Ec2ActOnlyOnTheTenantsResources":
            assert stmt["Condition"] == {"StringEquals": {"aws:ResourceTag/gangway:tenant": tenant}}
        if stmt["Sid"].endswith("OnlyTaggedWithTheTenant"):
            assert stmt["Condition"] == {"StringEquals": {"aws:RequestTag/gangway:tenant": tenant}}

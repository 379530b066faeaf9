"""`make deploy` / `make destroy` against the embedded emulator: the merged template really creates.

The same `deploy.stack.Deployment` code that talks to AWS talks to the session's moto server here
(endpoint_url): artifacts stack, package upload, stack create and update, the bot token, the site
upload, command registration (to the Discord stand-in), and destroy. moto cannot run the SAM transform
or create a few resource types; the deployment says which it left out and this file checks that list
against moto itself, so it stays honest. Those resources' settings are checked in test_template.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.cloudformation.parsing import get_model_map

from chalicelib.access import LinkKeyRing
from deploy.__main__ import main as deploy_main
from deploy.parameters import adopt_legacy_secret, read_secure
from deploy.stack import EMULATOR_SKIPS, Deployment, for_emulator, site_files
from deploy.template import ROOT
from devstack.aws import Emulator
from devstack.discord_api import DiscordStandIn
from tests.conftest import APPLICATION_ID
from tests.test_template import SAMPLE_WORKFLOW

STAGE = "dev"
# moto warns for each resource type its CloudFormation skips; the first test checks that list instead.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")


@dataclass
class Deployed:
    dep: Deployment
    template: dict[str, Any]
    outputs: dict[str, Any]
    lines: list[str] = field(default_factory=list)

    def client(self, service: str) -> Any:
        return self.dep.client(service)

    def physical(self, logical: str) -> str:
        found = self.client("cloudformation").describe_stack_resource(
            StackName=self.dep.stack_name, LogicalResourceId=logical
        )
        return str(found["StackResourceDetail"]["PhysicalResourceId"])


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("workflows")
    (folder / "demo.asl.json").write_text(json.dumps(SAMPLE_WORKFLOW))
    out = tmp_path_factory.mktemp("build")
    Deployment(STAGE, build_dir=out, say=lambda _: None).build(workflows=folder)
    return out


@pytest.fixture(scope="module")
def deployed(emulator: Emulator, standin: DiscordStandIn, build_dir: Path) -> Iterator[Deployed]:
    lines: list[str] = []
    env = {**os.environ, "DISCORD_BOT_TOKEN": "deployed-bot-token", "DISCORD_APPLICATION_ID": APPLICATION_ID}
    dep = Deployment(STAGE, build_dir=build_dir, endpoint_url=emulator.url, env=env, say=lines.append)
    sam = build_dir / STAGE / "sam.json"
    outputs = dep.deploy(sam)
    yield Deployed(dep, json.loads(sam.read_text()), outputs, lines)


def resources(tpl: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in tpl["Resources"].values() if r["Type"] == rtype]


def test_what_the_emulator_leaves_out_is_exactly_what_moto_cannot_create(deployed: Deployed) -> None:
    sam = json.loads(json.dumps(deployed.template))
    for res in sam["Resources"].values():
        if res["Type"] == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = "s3://artifacts/package.zip"  # what deploy uploads first
        elif res["Type"] == "AWS::Serverless::LayerVersion":
            res["Properties"]["ContentUri"] = "s3://artifacts/push-layer.zip"
    cfn, skipped = for_emulator(sam)
    translated_types = {r["Type"] for r in cfn["Resources"].values()}
    moto_types = set(get_model_map())
    assert translated_types <= moto_types  # everything else really is created
    assert not (EMULATOR_SKIPS - {"AWS::ApiGateway::Deployment", "AWS::ApiGateway::Stage"}) & moto_types
    assert any("left out" in line and "AgentEventsRule" in line for line in deployed.lines)
    assert "JobsQueue" not in skipped


def test_web_push_layer_is_made_from_the_split_package(deployed: Deployed) -> None:
    # moto names the layer after its logical id (AWS takes LayerName: test_package.py checks the template).
    layers = deployed.client("lambda").list_layers()["Layers"]
    assert [x for x in layers if "WebPushLayer" in x["LayerName"]]
    s3 = deployed.client("s3")
    keys = [
        o["Key"]
        for b in s3.list_buckets()["Buckets"]
        for o in s3.list_objects_v2(Bucket=b["Name"]).get("Contents", [])
    ]
    assert any(k.startswith(f"{STAGE}/") and k.endswith(".layer.zip") for k in keys)


def test_every_table_exists_with_its_keys_indexes_and_billing(deployed: Deployed) -> None:
    # moto's CloudFormation drops TimeToLiveSpecification and PointInTimeRecoverySpecification
    # (moto/dynamodb/models/table.py, create_from_cloudformation_json); test_template.py checks them.
    ddb = deployed.client("dynamodb")
    for props in resources(deployed.template, "AWS::DynamoDB::Table"):
        table = ddb.describe_table(TableName=props["TableName"])["Table"]
        assert table["KeySchema"] == props["KeySchema"]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        indexes = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
        assert indexes == {i["IndexName"] for i in props.get("GlobalSecondaryIndexes", [])}


def test_every_queue_exists_and_redrives_to_its_dead_letter_queue(deployed: Deployed) -> None:
    sqs = deployed.client("sqs")
    queues = {k: r["Properties"] for k, r in deployed.template["Resources"].items() if r["Type"] == "AWS::SQS::Queue"}
    for props in queues.values():
        url = sqs.get_queue_url(QueueName=props["QueueName"])["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if "RedrivePolicy" in props:
            redrive = json.loads(attrs["RedrivePolicy"])
            # Its own `-dlq`, or (the agent intake) the agent-events queue's: one DLQ and alarm for both.
            dlq = queues[props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]]["QueueName"]
            assert dlq.endswith("-dlq")
            assert redrive["deadLetterTargetArn"].endswith(":" + dlq)
            assert int(redrive["maxReceiveCount"]) == props["RedrivePolicy"]["maxReceiveCount"]
            assert int(attrs["VisibilityTimeout"]) == props["VisibilityTimeout"]


def test_the_jobs_function_consumes_its_queue_one_message_at_a_time(deployed: Deployed) -> None:
    lam = deployed.client("lambda")
    queue_arn = deployed.client("sqs").get_queue_attributes(
        QueueUrl=deployed.client("sqs").get_queue_url(QueueName=f"gangway-{STAGE}-jobs")["QueueUrl"],
        AttributeNames=["QueueArn"],
    )["Attributes"]["QueueArn"]
    mappings = lam.list_event_source_mappings(EventSourceArn=queue_arn)["EventSourceMappings"]
    assert len(mappings) == 1 and mappings[0]["BatchSize"] == 1
    env = lam.get_function_configuration(FunctionName=mappings[0]["FunctionArn"])["Environment"]["Variables"]
    assert env["JOBS_QUEUE"] == f"gangway-{STAGE}-jobs" and env["TENANTS_TABLE"] == f"gangway-{STAGE}-tenants"
    assert env["DISCORD_APPLICATION_ID"] == APPLICATION_ID


def test_deploy_makes_the_link_keys_and_vapid_pair_and_the_instance_policy_exists(deployed: Deployed) -> None:
    """The SecureString parameters CloudFormation cannot make: standard tier, the AWS-managed key."""
    ssm = deployed.client("ssm")
    for name in ("ipauth-keys", "vapid-keys", "discord-bot-token"):
        found = ssm.describe_parameters(
            ParameterFilters=[{"Key": "Name", "Values": [f"/gangway/{STAGE}/{name}"]}]
        )["Parameters"]
        assert [(p["Type"], p["Tier"]) for p in found] == [("SecureString", "Standard")], name
        assert found[0].get("KeyId", "alias/aws/ssm") == "alias/aws/ssm"
    ring = LinkKeyRing.parse(
        ssm.get_parameter(Name=f"/gangway/{STAGE}/ipauth-keys", WithDecryption=True)["Parameter"]["Value"]
    )
    assert ring.previous is None
    doc = deployed.client("iot").get_policy(policyName=f"gangway-{STAGE}-instance")["policyDocument"]
    assert "${iot:Connection.Thing.Attributes[tenant]}" in doc


def test_each_workflow_runs_as_a_state_machine_with_its_queue_substituted(deployed: Deployed) -> None:
    # With execution on, moto's Step Functions API is a second backend that CloudFormation does not
    # write to; the emulator runs in this process, so read the one CloudFormation wrote.
    from moto.stepfunctions.models import stepfunctions_backends

    arn = deployed.physical("DemoStateMachine")
    machine = stepfunctions_backends["123456789012"]["us-east-1"].describe_state_machine(arn)
    assert machine.name == f"gangway-{STAGE}-demo"
    definition = json.loads(machine.definition)
    assert definition["States"]["Step"]["Parameters"]["QueueUrl"].endswith(f"/gangway-{STAGE}-steps")


def _resolve(value: Any, deployed: Deployed) -> Any:
    """Ref and Fn::GetAtt of the stack's queues, roles and topic, as CloudFormation would resolve them."""
    if isinstance(value, list):
        return [_resolve(v, deployed) for v in value]
    if not isinstance(value, dict):
        return value
    if "Ref" in value:
        return deployed.physical(value["Ref"])  # queue URL, topic ARN
    if "Fn::GetAtt" in value:
        name, attr = value["Fn::GetAtt"]
        physical = deployed.physical(name)
        if attr == "QueueName":
            return physical.rsplit("/", 1)[-1]
        if attr == "Arn" and deployed.template["Resources"][name]["Type"] == "AWS::IAM::Role":
            return deployed.client("iam").get_role(RoleName=physical)["Role"]["Arn"]
        raise AssertionError(f"cannot resolve {value}")
    return {k: _resolve(v, deployed) for k, v in value.items()}


def _camel(value: Any) -> Any:
    """CloudFormation's PascalCase property names as the IoT API's camelCase ones."""
    if isinstance(value, list):
        return [_camel(v) for v in value]
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _camel(v) for k, v in value.items()}
    return value


def test_what_moto_skips_is_accepted_by_the_service_apis_with_the_stacks_names(deployed: Deployed) -> None:
    """The alarms and the IoT rule, made through their APIs from the template."""
    cw = deployed.client("cloudwatch")
    for props in resources(deployed.template, "AWS::CloudWatch::Alarm"):
        cw.put_metric_alarm(**_resolve(props, deployed))
    names = {p["AlarmName"] for p in resources(deployed.template, "AWS::CloudWatch::Alarm")}
    alarms = cw.describe_alarms(AlarmNames=sorted(names))["MetricAlarms"]
    assert {a["AlarmName"] for a in alarms} == names
    queues = {p["QueueName"] for p in resources(deployed.template, "AWS::SQS::Queue")}
    assert all(a["Dimensions"][0]["Value"] in queues for a in alarms)
    rule = resources(deployed.template, "AWS::IoT::TopicRule")[0]
    iot = deployed.client("iot")
    iot.create_topic_rule(
        ruleName=rule["RuleName"], topicRulePayload=_camel(_resolve(rule["TopicRulePayload"], deployed))
    )
    action = iot.get_topic_rule(ruleName=rule["RuleName"])["rule"]["actions"][0]["sqs"]
    # The rule fills the intake queue; agent_intake re-sends each event to the fair agent-events queue.
    assert action["queueUrl"].endswith(f"/gangway-{STAGE}-agent-intake")
    assert deployed.client("s3").get_bucket_encryption(Bucket=deployed.outputs["SiteBucketName"])


def test_deploy_puts_the_token_uploads_the_site_registers_and_prints_the_endpoint(
    deployed: Deployed, standin: DiscordStandIn
) -> None:
    assert deployed.dep.bot_token() == "deployed-bot-token"
    s3, bucket = deployed.client("s3"), deployed.outputs["SiteBucketName"]
    obj = s3.get_object(Bucket=bucket, Key="index.html")
    assert obj["ContentType"] == "text/html; charset=utf-8" and obj["CacheControl"] == "no-cache"
    config = json.loads(s3.get_object(Bucket=bucket, Key="config.json")["Body"].read())
    assert config == {"api_url": deployed.outputs["EndpointURL"].rstrip("/")}  # what site/app.js reads
    # The customer role template is an S3 object the functions name by its S3 URL (CloudFormation takes
    # no other template URL), not a file of the CloudFront site.
    templates = deployed.outputs["CustomerTemplateBucketName"]
    role = s3.get_object(Bucket=templates, Key="gangway-customer-role.yaml")["Body"].read()
    assert role == (ROOT / "policies" / "customer-role.yaml").read_bytes()
    lam = deployed.client("lambda")
    names = [
        f["FunctionName"]
        for f in lam.list_functions()["Functions"]
        if f["FunctionName"].startswith("gangway-")
    ]
    env = lam.get_function_configuration(FunctionName=names[0])["Environment"]["Variables"]
    assert env["CUSTOMER_TEMPLATE_URL"] == (
        f"https://{templates}.s3.{deployed.dep.region}.amazonaws.com/gangway-customer-role.yaml"
    )
    # The agent's wheelhouse went to the artifacts bucket under its sha256, and the functions know where.
    wheelhouse = env["AGENT_WHEELHOUSE"]
    artifacts, key = wheelhouse.removeprefix("s3://").split("/", 1)
    assert artifacts.startswith("gangway-artifacts-") and key.startswith("agent/")  # the steps policy's scope
    archive = s3.get_object(Bucket=artifacts, Key=f"{key}.tar")["Body"].read()
    assert hashlib.sha256(archive).hexdigest() == key.removeprefix("agent/")
    requirements = s3.get_object(Bucket=artifacts, Key=f"{key}.requirements.txt")["Body"].read().decode()
    assert "gangway-agent==" in requirements and all(
        "--hash=sha256:" in line for line in requirements.splitlines()
    )
    puts = [
        c
        for c in standin.calls()
        if c["method"] == "PUT" and c["path"].endswith(f"/applications/{APPLICATION_ID}/commands")
    ]
    assert puts and puts[-1]["auth"] == "Bot" and puts[-1]["status"] == 200
    url = deployed.outputs["InteractionsEndpointURL"]
    assert url.startswith("https://") and url.endswith("/api/discord/interactions")
    assert any(url in line for line in deployed.lines)


def test_a_later_deploy_keeps_parameters_it_is_not_given(deployed: Deployed, emulator: Emulator) -> None:
    given = ("DISCORD_APPLICATION_ID", "DISCORD_BOT_TOKEN", "DISCORD_PUBLIC_KEY")
    env = {k: v for k, v in os.environ.items() if k not in given}
    again = Deployment(
        STAGE, build_dir=deployed.dep.build_dir, endpoint_url=emulator.url, env=env, say=lambda _: None
    )
    again.deploy(deployed.dep.build_dir / STAGE / "sam.json")
    stack = deployed.client("cloudformation").describe_stacks(StackName=f"gangway-{STAGE}")["Stacks"][0]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params["DiscordApplicationId"] == APPLICATION_ID
    assert again.bot_token() == deployed.dep.bot_token() == "deployed-bot-token"  # kept, not reset


def test_rotating_the_token_stores_it_and_recycles_every_function(
    deployed: Deployed, emulator: Emulator
) -> None:
    dep = Deployment(STAGE, build_dir=deployed.dep.build_dir, endpoint_url=emulator.url, say=lambda _: None)
    touched = dep.rotate_token("rotated-bot-token")
    assert dep.bot_token() == "rotated-bot-token"
    lam = deployed.client("lambda")
    assert len(touched) == len(resources(deployed.template, "AWS::Serverless::Function"))
    for name in touched:
        assert lam.get_function_configuration(FunctionName=name)["Description"].startswith(
            "bot token rotated"
        )


def test_rotating_the_link_key_keeps_the_previous_and_recycles_every_function(
    deployed: Deployed, emulator: Emulator
) -> None:
    dep = Deployment(STAGE, build_dir=deployed.dep.build_dir, endpoint_url=emulator.url, say=lambda _: None)
    ssm, name = deployed.client("ssm"), f"/gangway/{STAGE}/ipauth-keys"

    def ring() -> LinkKeyRing:
        return LinkKeyRing.parse(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])

    before = ring()
    touched = dep.rotate_link_keys()
    after = ring()
    assert after.previous == before.current and after.current != before.current
    lam = deployed.client("lambda")
    assert len(touched) == len(resources(deployed.template, "AWS::Serverless::Function"))
    for fn in touched:
        assert lam.get_function_configuration(FunctionName=fn)["Description"].startswith("link keys rotated")


def test_destroy_backs_up_the_tables_empties_the_bucket_and_deletes_the_stack(
    emulator: Emulator, tmp_path: Path
) -> None:
    lines: list[str] = []
    dep = Deployment("prod", build_dir=tmp_path, endpoint_url=emulator.url, say=lines.append)
    outputs = dep.deploy(dep.build())
    bucket = outputs["SiteBucketName"]
    kept = dep.destroy()
    cfn = boto3.client("cloudformation", endpoint_url=emulator.url)
    with pytest.raises(cfn.exceptions.ClientError):
        cfn.describe_stacks(StackName="gangway-prod")
    s3 = boto3.client("s3", endpoint_url=emulator.url)
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    backups = boto3.client("dynamodb", endpoint_url=emulator.url).list_backups(
        TableName="gangway-prod-tenants"
    )
    assert backups["BackupSummaries"]
    assert any("/gangway/prod/discord-bot-token" in k and "no charge" in k for k in kept)
    assert dep.destroy() == [] and "nothing to destroy" in lines[-1]


def test_an_upgrade_copies_the_old_secrets_into_parameters_once(emulator: Emulator) -> None:
    """An older gangway kept the bot token and VAPID pair in retained Secrets Manager secrets: the
    next deploy carries them over (browsers stay subscribed), never over a parameter that exists."""
    sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=emulator.url)
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=emulator.url)
    stage = f"upgrade{os.getpid()}"
    sm.create_secret(Name=f"gangway/{stage}/discord-bot-token", SecretString="old-bot-token")
    sm.create_secret(Name=f"gangway/{stage}/vapid-keys", SecretString="unset")  # never filled
    token, vapid = f"/gangway/{stage}/discord-bot-token", f"/gangway/{stage}/vapid-keys"
    assert adopt_legacy_secret(ssm, sm, f"gangway/{stage}/discord-bot-token", token) is True
    assert read_secure(ssm, token) == "old-bot-token"
    assert adopt_legacy_secret(ssm, sm, f"gangway/{stage}/vapid-keys", vapid) is False  # nothing to keep
    assert adopt_legacy_secret(ssm, sm, f"gangway/{stage}/absent", f"/gangway/{stage}/absent") is False
    sm.put_secret_value(SecretId=f"gangway/{stage}/discord-bot-token", SecretString="newer")
    assert adopt_legacy_secret(ssm, sm, f"gangway/{stage}/discord-bot-token", token) is False
    assert read_secure(ssm, token) == "old-bot-token"


def test_dry_run_prints_every_step_and_calls_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    # Port 9 (discard) answers nothing: any AWS call would fail the test.
    dep = Deployment(
        STAGE, build_dir=tmp_path, dry_run=True, endpoint_url="http://127.0.0.1:9", say=lines.append
    )
    dep.deploy(dep.build(), guild="123")
    dep.destroy()
    assert dep.rotate_link_keys() == []
    text = "\n".join(lines)
    for step in (
        "/gangway/dev/ipauth-keys (new link keys) and /gangway/dev/vapid-keys",
        "put a new current key into /gangway/dev/ipauth-keys, keeping the current one as previous",
        "deploy.template",
        "chalice package --stage dev --merge-template",
        "bootstrap.json",
        "CAPABILITY_NAMED_IAM",
        "index.html Content-Type='text/html; charset=utf-8'",
        "gangway register --guild 123",
        "agent/requirements.lock for x86_64 (manylinux2014_x86_64), aarch64 (manylinux2014_aarch64)",
        "s3://<artifacts>/agent/<sha256>.tar",
        "AgentWheelhouse=s3://<artifacts>/agent/<sha256>",
        "s3://<CustomerTemplateBucketName>/gangway-customer-role.yaml",
        "InteractionsEndpointURL",
        "delete stack gangway-dev",
    ):
        assert step in text
    assert not (tmp_path / STAGE).exists()


def test_site_files_get_content_types_browsers_accept_and_fresh_html(tmp_path: Path) -> None:
    for name in ("index.html", "app.js", "sw.js", "style.css", "manifest.webmanifest", "icon.png", "x.bin"):
        (tmp_path / name).write_bytes(b"x")
    got = {key: (ctype, cache) for key, _, ctype, cache in site_files(tmp_path)}
    assert got["index.html"] == ("text/html; charset=utf-8", "no-cache")
    assert got["sw.js"] == ("text/javascript; charset=utf-8", "no-cache")
    assert got["app.js"] == ("text/javascript; charset=utf-8", "public, max-age=3600")
    assert got["style.css"][0] == "text/css; charset=utf-8"
    assert got["manifest.webmanifest"][0] == "application/manifest+json"
    assert got["icon.png"][0] == "image/png" and got["x.bin"][0] == "application/octet-stream"
    assert set(got) == {p.name for p in tmp_path.iterdir()} and all(site_files(ROOT / "site"))


def test_the_cli_knows_every_make_target() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for cmd in ("build", "deploy", "destroy", "rotate-token", "rotate-link-key", "cost"):
        assert f"-m deploy {cmd} --stage $(STAGE)" in makefile
        with pytest.raises(SystemExit) as exc:
            deploy_main([cmd, "--help"])
        assert exc.value.code == 0


def test_the_cli_checks_policies_and_prints_the_idle_cost(
    build_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy_main(["check", "--stage", STAGE, "--build-dir", str(build_dir)]) == 0
    assert deploy_main(["cost", "--stage", STAGE, "--build-dir", str(build_dir)]) == 0
    out = capsys.readouterr().out
    assert "no problems" in out and "idle total" in out and "20 h of play" in out

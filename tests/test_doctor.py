"""`gangway doctor` against the embedded emulator and the Discord stand-in: every check passes on a
healthy setup, and each broken thing (no default VPC, one zone, a low quota, a missing image parameter,
a refused bot token, another endpoint URL, different commands) is the line that fails, with its fix.

moto has no EC2 quotas, so the Service Quotas client is botocore's Stubber with the service's real
response shapes; everything else is the emulator or the stand-in answering over HTTP. The last test
starts the local stack as a person does (`gangway run`), registers the commands and runs
`gangway doctor --local` in a subprocess: all of it passes there.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.commands import registry
from chalicelib.config import Settings
from chalicelib.discord.rest import DiscordRest
from deploy.doctor import QUOTAS, Check, Status, Target, failed, run, table
from devstack.aws import EMULATOR_ACCOUNT, Emulator, emulator_settings, fake_credentials
from devstack.cli import main as gangway
from devstack.discord_api import DiscordStandIn
from devstack.iam import tool_environment
from devstack.stack import LOCAL_BOT_TOKEN
from tests.stack_runner import ROOT, clean_env, running_stack

APP = "123456789012345678"
ENDPOINT = "http://127.0.0.1:8000/discord/interactions"
ON_DEMAND, SPOT = (code for code, _, _ in QUOTAS)


@pytest.fixture(scope="module")
def discord() -> Iterator[DiscordStandIn]:
    """This module's own stand-in: it knows its bot token, application and endpoint, like Discord."""
    server = DiscordStandIn(
        bot_token=LOCAL_BOT_TOKEN, application_id=APP, interactions_endpoint_url=ENDPOINT
    ).start()
    DiscordRest(server.url, lambda: LOCAL_BOT_TOKEN).put_commands(APP, registry.to_payload())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def healthy(emulator: Emulator, discord: DiscordStandIn) -> Target:
    return Target(
        stack="the test's stack",
        region="us-east-1",
        endpoint_url=emulator.url,
        discord_api_url=discord.url,
        application_id=APP,
        bot_token=LOCAL_BOT_TOKEN,
        interactions_url=ENDPOINT,
        image_parameter=Settings.image_parameter,
        image_owner=EMULATOR_ACCOUNT,  # the emulator's stand-in Debian images are its own account's
    )


def clients(target: Target) -> Any:
    make: Any = boto3.client

    def client(service: str) -> Any:
        return make(service, region_name=target.region, endpoint_url=target.endpoint_url)

    return client


def quotas(on_demand: float | None, spot: float | None, region: str = "us-east-1") -> Any:
    """A Service Quotas client answering with these values; None: no applied value, AWS's default (5)."""
    client = boto3.client("service-quotas", region_name=region)
    stub = Stubber(client)
    for code, value in ((ON_DEMAND, on_demand), (SPOT, spot)):
        params = {"ServiceCode": "ec2", "QuotaCode": code}
        if value is None:
            stub.add_client_error("get_service_quota", "NoSuchResourceException", expected_params=params)
            stub.add_response("get_aws_default_service_quota", _quota(code, 5.0), params)
        else:
            stub.add_response("get_service_quota", _quota(code, value), params)
    stub.activate()
    return client


def _quota(code: str, value: float) -> dict[str, Any]:
    return {
        "Quota": {"ServiceCode": "ec2", "QuotaCode": code, "QuotaName": code, "Value": value, "Unit": "None"}
    }


def line(checks: list[Check], name: str) -> Check:
    return next(c for c in checks if c.name.startswith(name))


def not_ok(checks: list[Check]) -> list[str]:
    return [c.name for c in checks if c.status is not Status.OK]


def test_every_check_passes_on_a_healthy_account_and_application(healthy: Target) -> None:
    checks = run(healthy, clients(healthy), quotas=quotas(64, 64))
    report = table(checks, healthy)
    assert not_ok(checks) == [], report
    assert [c.name for c in checks] == [
        "AWS identity",
        "default VPC",
        "On-Demand vCPUs quota",
        "Spot vCPUs quota",
        "image amd64",
        "image arm64",
        "bot token",
        "interactions endpoint",
        "commands (global)",
    ]
    assert "123456789012" in line(checks, "AWS identity").found and "us-east-1" in report
    assert "m6i.8xlarge needs 32" in line(checks, "On-Demand").found  # the pro plan's largest instance
    assert report.endswith("no check failed: all passed")


def test_no_default_vpc_fails_with_the_command_that_makes_one(healthy: Target) -> None:
    region = "ap-southeast-2"
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=healthy.endpoint_url)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    for subnet in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    ec2.delete_vpc(VpcId=vpc)
    target = dataclasses.replace(healthy, region=region)
    checks = run(target, clients(target), quotas=quotas(64, 64, region))
    vpc_line = line(checks, "default VPC")
    assert vpc_line.status is Status.FAIL and "no default VPC" in vpc_line.found
    assert f"aws ec2 create-default-vpc --region {region}" in vpc_line.fix
    assert "create-default-vpc" in table(checks, target) and failed(checks)


def test_a_default_vpc_in_one_zone_fails_with_how_to_add_a_subnet(healthy: Target) -> None:
    region = "sa-east-1"
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=healthy.endpoint_url)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    for subnet in subnets[1:]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    target = dataclasses.replace(healthy, region=region)
    vpc_line = line(run(target, clients(target), quotas=quotas(64, 64, region)), "default VPC")
    assert vpc_line.status is Status.FAIL and "1 zone(s)" in vpc_line.found
    assert vpc_line.fix.startswith(
        f"add a default subnet in another zone: aws ec2 create-default-subnet --region {region}"
    )


def test_a_quota_too_low_for_the_largest_plan_warns_and_one_too_low_for_any_fails(healthy: Target) -> None:
    checks = run(healthy, clients(healthy), quotas=quotas(8, 1))
    on_demand, spot = line(checks, "On-Demand"), line(checks, "Spot")
    assert on_demand.status is Status.WARN
    assert "8 vCPUs" in on_demand.found and "free, community plan(s) only" in on_demand.found
    assert spot.status is Status.FAIL and "not enough for any plan" in spot.found
    for check, code in ((on_demand, ON_DEMAND), (spot, SPOT)):
        assert (
            f"request-service-quota-increase --service-code ec2 --quota-code {code} --desired-value 32"
            in check.fix
        )
    assert not_ok(checks) == ["On-Demand vCPUs quota", "Spot vCPUs quota"]


def test_a_quota_never_applied_is_read_from_aws_defaults(healthy: Target) -> None:
    checks = run(healthy, clients(healthy), quotas=quotas(None, 64))
    assert line(checks, "On-Demand").found.startswith("5 vCPUs")  # t3.large fits, m6i.2xlarge does not
    assert line(checks, "On-Demand").status is Status.WARN


def test_the_emulator_skips_the_quotas_it_does_not_have_and_says_so(healthy: Target) -> None:
    checks = run(healthy, clients(healthy))
    assert {c.status for c in checks if "quota" in c.name} == {Status.SKIP}
    assert "in AWS this reads L-1216C47A" in line(checks, "On-Demand").found
    assert not failed(checks)


def test_a_missing_image_parameter_fails_for_each_architecture(healthy: Target) -> None:
    target = dataclasses.replace(healthy, image_parameter="/gangway/nowhere/{arch}")
    checks = run(target, clients(target), quotas=quotas(64, 64))
    assert not_ok(checks) == ["image amd64", "image arm64"]
    arm = line(checks, "image arm64")
    assert "the image parameter `/gangway/nowhere/arm64` does not exist in this region" in arm.found
    assert "IMAGE_PARAMETER" in arm.fix and "IMAGE_ID" in arm.fix


def test_an_image_of_another_account_fails_as_a_launch_would_refuse_it(healthy: Target) -> None:
    target = dataclasses.replace(healthy, image_owner="999999999999")
    checks = run(target, clients(target), quotas=quotas(64, 64))
    assert not_ok(checks) == ["image amd64", "image arm64"]
    amd = line(checks, "image amd64")
    assert "not to the image publisher's account 999999999999" in amd.found, amd.found


def test_a_refused_bot_token_fails_and_the_discord_checks_after_it_wait_for_it(
    healthy: Target, discord: DiscordStandIn
) -> None:
    target = dataclasses.replace(healthy, bot_token="reset-in-the-portal")
    checks = run(target, clients(target), quotas=quotas(64, 64))
    token = line(checks, "bot token")
    assert token.status is Status.FAIL and "401" in token.found
    assert "make rotate-token" in token.fix
    assert [c.status for c in checks[-2:]] == [Status.SKIP, Status.SKIP]
    assert discord.calls()[-1]["status"] == 401


def test_an_endpoint_url_of_another_deployment_fails_with_the_url_to_paste(
    healthy: Target, discord: DiscordStandIn
) -> None:
    discord.application(interactions_endpoint_url="https://old.execute-api.example/api/discord/interactions")
    try:
        checks = run(healthy, clients(healthy), quotas=quotas(64, 64))
    finally:
        discord.application(interactions_endpoint_url=ENDPOINT)
    endpoint = line(checks, "interactions endpoint")
    assert not_ok(checks) == ["interactions endpoint"]
    assert "https://old.execute-api.example" in endpoint.found
    assert (
        endpoint.fix
        == f"paste {ENDPOINT} as Interactions Endpoint URL (Developer Portal, General Information)"
    )


def test_a_token_of_another_application_fails(healthy: Target) -> None:
    target = dataclasses.replace(healthy, application_id="876543210987654321")
    endpoint = line(run(target, clients(target), quotas=quotas(64, 64)), "interactions endpoint")
    assert endpoint.status is Status.FAIL and f"belongs to application {APP}" in endpoint.found


def test_commands_that_differ_from_the_model_fail_naming_each(
    healthy: Target, discord: DiscordStandIn
) -> None:
    guild = "300000000000000003"
    payload = registry.to_payload()
    changed = [dict(c) for c in payload if c["name"] != "games"]  # /games missing
    changed[0]["description"] = "an older wording"
    changed.append({"name": "oldcommand", "description": "removed since", "type": 1})
    DiscordRest(discord.url, lambda: LOCAL_BOT_TOKEN).put_commands(APP, changed, guild_id=guild)
    target = dataclasses.replace(healthy, guild=guild, register_hint="make deploy STAGE=dev GUILD=" + guild)
    checks = run(target, clients(target), quotas=quotas(64, 64))
    commands = line(checks, "commands")
    assert commands.name == f"commands (guild {guild})" and commands.status is Status.FAIL
    assert commands.found == (f"missing: /games; not ours: /oldcommand; different: /{changed[0]['name']}")
    assert commands.fix == f"register them again: make deploy STAGE=dev GUILD={guild}"
    assert not_ok(checks) == [commands.name]


def test_a_stage_not_deployed_yet_checks_the_account_and_skips_the_wiring(
    emulator: Emulator, discord: DiscordStandIn
) -> None:
    env = {
        **fake_credentials(),
        **emulator_settings(),  # IMAGE_OWNER: the emulator's images are its own account's
        "AWS_ENDPOINT_URL": emulator.url,
        "DISCORD_API_URL": discord.url,
        "DISCORD_APPLICATION_ID": APP,
        "DISCORD_BOT_TOKEN": LOCAL_BOT_TOKEN,
    }
    target = Target.deployed("neverdeployed", env)
    assert target.stack == "stack gangway-neverdeployed (not deployed yet)"
    checks = run(target, clients(target), quotas=quotas(64, 64))
    assert line(checks, "interactions endpoint").status is Status.SKIP
    assert line(checks, "commands").status is Status.SKIP
    assert not failed(checks)


def test_a_deployed_stage_is_read_from_its_stack_outputs_parameters_and_token_parameter(
    emulator: Emulator, discord: DiscordStandIn
) -> None:
    cfn = boto3.client("cloudformation", region_name="us-east-1", endpoint_url=emulator.url)
    template = {
        "Parameters": {"DiscordApplicationId": {"Type": "String"}},
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "doctor-probe"}}},
        "Outputs": {"InteractionsEndpointURL": {"Value": ENDPOINT}},
    }
    cfn.create_stack(
        StackName="gangway-doctest",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "DiscordApplicationId", "ParameterValue": APP}],
    )
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=emulator.url)
    ssm.put_parameter(Name="/gangway/doctest/discord-bot-token", Value=LOCAL_BOT_TOKEN, Type="SecureString")
    env = {**fake_credentials(), "AWS_ENDPOINT_URL": emulator.url, "DISCORD_API_URL": discord.url}
    target = Target.deployed("doctest", env)
    assert (target.stack, target.application_id, target.bot_token, target.interactions_url) == (
        "stack gangway-doctest",
        APP,
        LOCAL_BOT_TOKEN,
        ENDPOINT,
    )
    assert target.register_hint == "make deploy STAGE=doctest"


@pytest.mark.usefixtures("restore_environ")
def test_gangway_doctor_local_prints_the_table_and_exits_by_the_result(
    healthy: Target, discord: DiscordStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = {
        "api_url": ENDPOINT.removesuffix("/discord/interactions"),
        "discord_api_url": discord.url,
        "aws_endpoint_url": healthy.endpoint_url,
        "application_id": APP,
        "image_parameter": Settings.image_parameter,
        "image_owner": EMULATOR_ACCOUNT,
        "tool_environment": tool_environment("test"),  # as `make run` writes it: the admin's keys
    }
    (tmp_path / "stack.json").write_text(json.dumps(stack))
    assert gangway(["--state-dir", str(tmp_path), "doctor", "--local"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gangway doctor: the local stack, us-east-1\ncheck")
    assert "no check failed (2 skipped)" in out

    (tmp_path / "stack.json").write_text(json.dumps({**stack, "image_parameter": "/gangway/nowhere/{arch}"}))
    assert gangway(["--state-dir", str(tmp_path), "doctor", "--local"]) == 1
    out = capsys.readouterr().out
    assert "image arm64" in out and "-> fix: set IMAGE_PARAMETER" in out
    assert "2 check(s) failed: fix each as its line says, then run doctor again" in out


def test_the_local_stack_passes_every_check_once_its_commands_are_registered(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    state = tmp_path_factory.mktemp("doctor-stack")
    with running_stack(state):
        gw = [sys.executable, "-m", "devstack", "--state-dir", str(state)]
        env = clean_env()
        before = subprocess.run(
            [*gw, "doctor", "--local"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        assert before.returncode == 1, before.stdout + before.stderr
        assert "register them again: gangway register --local" in before.stdout
        subprocess.run([*gw, "register", "--local"], cwd=ROOT, env=env, check=True, capture_output=True)
        after = subprocess.run(
            [*gw, "doctor", "--local"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
    assert after.returncode == 0, after.stdout + after.stderr
    assert "no check failed (2 skipped)" in after.stdout
    assert [ln.split()[0] for ln in after.stdout.splitlines()[2:-1] if "quota" not in ln] == [
        "AWS",
        "default",
        "image",
        "image",
        "bot",
        "interactions",
        "commands",
    ]


def test_make_doctor_runs_the_cli_this_file_tests() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "$(BIN)/gangway doctor --stage $(STAGE) $(if $(GUILD),--guild $(GUILD),)" in makefile
    with pytest.raises(SystemExit) as exc:
        gangway(["doctor", "--help"])
    assert exc.value.code == 0

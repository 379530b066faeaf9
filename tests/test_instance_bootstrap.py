"""Instance bootstrap: the user-data script and the agent config it writes, and each instance's IoT
identity (thing, certificate, own-topics policy, key in SSM) made by StartGame and removed by StopGame
and by compensation, in moto through the broker."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from gangway_agent.config import LogSinkKind, load
from gangway_agent.logsink import build_sink

from chalicelib.instances import LOG_RETENTION_DAYS, AgentInstall, IdentityGateway, log_group
from chalicelib.lifecycle import begin_start
from chalicelib.lifecycle.bootstrap import Bootstrap, agent_toml, render
from chalicelib.lifecycle.tools import MAX_PORTS, port_numbers
from chalicelib.tenancy import Tenant
from chalicelib.wiring import container
from tests.helpers import Harness
from tests.lifecycle_helpers import (
    create_game,
    ec2_of,
    game_row,
    pump_steps,
    start_until_running,
    stop_until_stopped,
)

# As long as a real presigned URL signed with a Lambda's temporary credentials (the session token is most
# of it), and the real wheelhouse's requirements (deploy/wheelhouse.py), so the size test means something.
AGENT = AgentInstall(
    url="https://gangway-artifacts-artifactsbucket-abc.s3.amazonaws.com/agent/" + "a" * 64 + ".tar"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIA0000000000000000%2F20250101%2Fus-east-1%2Fs3"
    "%2Faws4_request&X-Amz-Date=20250101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    "&X-Amz-Security-Token=" + "T" * 1400 + "&X-Amz-Signature=" + "f" * 64,
    sha256="a" * 64,
    requirements="".join(
        f"{name}==1.0.0 --hash=sha256:{'b' * 64}"
        + (f" --hash=sha256:{'c' * 64}" if name == "awscrt" else "")
        + "\n"
        for name in (
            "asyncio-dgram",
            "awscrt",
            "awsiotsdk",
            "boto3",
            "botocore",
            "dnspython",
            "gangway-agent",
            "jmespath",
            "mcstatus",
            "python-a2s",
            "python-dateutil",
            "s3transfer",
            "six",
            "urllib3",
        )
    ),
)
BOOT = Bootstrap(
    tenant_id="123456789012345678",
    game="valheim",
    volume_id="vol-0123456789abcdef0",
    iot_endpoint="abc-ats.iot.eu-west-1.amazonaws.com",
    client_id="gangway-dev-123456789012345678-valheim",
    parameter_prefix="/gangway/dev/123456789012345678/valheim",
    agent=AGENT,
    udp_ports=(2456, 2457),
)


def test_the_agent_config_is_one_the_agent_accepts(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(agent_toml(BOOT))
    config = load(path)
    assert (config.tenant, config.game) == ("123456789012345678", "valheim")
    assert config.mqtt.client_id == "gangway-dev-123456789012345678-valheim"
    assert config.mqtt.transport == "mtls" and config.mqtt.endpoint == BOOT.iot_endpoint
    assert (config.launch.mode, config.launch.unit, config.launch.user) == ("systemd", "gangway-game", "gangway")
    assert config.idle.check_interval_s == 60
    path.write_text(agent_toml(replace(BOOT, idle_check_s=2)))
    assert load(path).idle.check_interval_s == 2


def test_the_script_mounts_by_volume_id_runs_the_agent_under_systemd_and_holds_no_secret() -> None:
    script = render(BOOT)
    assert subprocess.run(["bash", "-n"], input=script.encode(), check=False).returncode == 0
    assert "VOLUME_ID=vol-0123456789abcdef0" in script
    assert "nvme-Amazon_Elastic_Block_Store_${VOLUME_ID/-/}" in script
    assert "blkid" in script and "mkfs.ext4" in script  # formats only when blkid finds nothing
    assert "Restart=on-failure" in script and "systemctl enable --now gangway-agent" in script
    assert "PARAMS=/gangway/dev/123456789012345678/valheim" in script and "WithDecryption=True" in script
    assert "PRIVATE KEY" not in script and len(script.encode()) < 16 * 1024
    assert "${" + "tenant_q}" not in script  # every placeholder filled


def test_the_agent_comes_only_from_the_wheelhouse_with_every_hash_required() -> None:
    """The archive must have the hash it was published under, and pip may take nothing from an index and
    nothing unhashed; no pip upgrade (it would be an unpinned install)."""
    script = render(BOOT)
    assert f"AGENT_SHA256={AGENT.sha256}" in script and f"AGENT_URL='{AGENT.url}'" in script
    assert "sha256sum -c --quiet -" in script
    assert AGENT.requirements.rstrip("\n") + "\nREQ\n" in script
    assert "--no-index --require-hashes" in script and "--upgrade" not in script
    assert "gangway-agent[cloudwatch]" not in script


def test_without_a_volume_id_the_script_takes_the_one_unused_ebs_disk() -> None:
    script = render(replace(BOOT, volume_id=None, disk_wait_s=30))
    assert subprocess.run(["bash", "-n"], input=script.encode(), check=False).returncode == 0
    assert "VOLUME_ID=''" in script and "nvme-Amazon_Elastic_Block_Store_vol*" in script
    assert "$(seq 1 30)" in script


def test_autostart_off_is_written_to_the_launch_section(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(agent_toml(replace(BOOT, autostart=False)))
    assert load(path).launch.autostart is False


@pytest.mark.parametrize(
    "bad",
    [
        {"volume_id": ""},
        {"volume_id": "vol-; rm -rf /"},
        {"volume_id": "snap-0123456789abcdef0"},
        {"disk_wait_s": 0},
        {"identity_wait_s": 0},
        {"idle_check_s": 0},
        {"log_group": "/aws/lambda/other"},
        {"log_group": "/gangway/dev/1/../../x"},
        {"log_group": "/gangway/dev/1/g; rm -rf /"},
        {"agent": replace(AGENT, sha256="not-a-hash")},
        {"agent": replace(AGENT, requirements="gangway-agent[cloudwatch]\n")},  # unpinned
        {"agent": replace(AGENT, requirements="boto3==1.0\n")},  # no hash
        {"agent": replace(AGENT, requirements=AGENT.requirements + "REQ\nrm -rf /\n")},  # ends the heredoc
        {"agent": replace(AGENT, requirements="")},
    ],
)
def test_a_malformed_volume_id_or_wait_is_refused_before_rendering(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        render(replace(BOOT, **bad))


# The instance profile and the IoT policy, as the stack (locally devstack/aws.py) makes them.
PROFILE = f"gangway-{container().settings.stage}-instance"


def _iot() -> Any:
    return container().client("iot")


def _logs() -> Any:
    return container().client("logs")


def _user_data(instance_id: str) -> str:
    attribute = (
        container().client("ec2").describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    )
    user_data = base64.b64decode(attribute["UserData"]["Value"]).decode()
    if not user_data.startswith("#!"):  # moto returns the base64 it was given, encoded once more
        user_data = base64.b64decode(user_data).decode()
    return user_data


def _ssm() -> Any:
    return container().client("ssm")


def _params(guild: str, game: str) -> list[dict[str, Any]]:
    got = _ssm().get_parameters_by_path(
        Path=f"/gangway/{container().settings.stage}/{guild}/{game}/", Recursive=True
    )
    return list(got["Parameters"])


def _thing(guild: str, game: str) -> str:
    return f"gangway-{container().settings.stage}-{guild}-{game}"


def _hosting_tenant(tenant_id: str) -> Tenant:
    """A tenant on gangway's own account, in the stack's region (no store row: the gateway needs none)."""
    return Tenant(
        tenant_id=tenant_id,
        main_role_ids=frozenset(),
        admin_role_ids=frozenset(),
        account_mode="hosting",
        region=container().settings.region,
        created_by="test",
        created_at=0.0,
        version=1,
    )


def test_a_running_instance_has_its_own_identity_and_a_stopped_game_none(
    harness: Harness,
    tenant: str,
) -> None:
    create_game(harness, "valheim")
    # As /openport stores them: the agent's config gets them as port numbers, tcp and udp apart.
    container().lifecycle.games.change(tenant, "valheim", ports=["tcp:27015", "udp:2456-2458"])
    start_until_running(harness, tenant, "valheim")
    game = game_row(tenant, "valheim")
    thing = _thing(tenant, "valheim")
    principals = _iot().list_thing_principals(thingName=thing)["principals"]
    assert len(principals) == 1
    cert_id = principals[0].rsplit("/", 1)[-1]
    assert _iot().describe_certificate(certificateId=cert_id)["certificateDescription"]["status"] == "ACTIVE"
    policies = _iot().list_attached_policies(target=principals[0])["policies"]
    # The stack's instance policy: its variables resolve to these attributes, i.e. this game's topics.
    assert [p["policyName"] for p in policies] == [PROFILE]
    attributes = _iot().describe_thing(thingName=thing)["attributes"]
    assert attributes == {"tenant": tenant, "game": "valheim"}

    params = _params(tenant, "valheim")
    path = f"/gangway/{container().settings.stage}/{tenant}/valheim/{game.resources.instance_id}"
    assert sorted(p["Name"] for p in params) == [f"{path}/certificate", f"{path}/private-key"]
    assert {p["Type"] for p in params} == {"SecureString"}
    tags = _ssm().list_tags_for_resource(ResourceType="Parameter", ResourceId=f"{path}/private-key")[
        "TagList"
    ]
    assert {t["Key"]: t["Value"] for t in tags}["gangway:instance"].endswith(
        f":instance/{game.resources.instance_id}"
    )

    user_data = _user_data(game.resources.instance_id or "")
    associations = (
        container()
        .client("ec2")
        .describe_iam_instance_profile_associations(
            Filters=[{"Name": "instance-id", "Values": [game.resources.instance_id]}]
        )["IamInstanceProfileAssociations"]
    )
    assert [a["IamInstanceProfile"]["Arn"].rsplit("/", 1)[-1] for a in associations] == [PROFILE]
    assert "PRIVATE KEY" not in user_data
    assert f'client_id = "{thing}"' in user_data
    assert "ports = { tcp = [27015], udp = [2456, 2457, 2458] }" in user_data
    group = f"/gangway/{container().settings.stage}/{tenant}/valheim"
    assert f'sink = "cloudwatch"\ngroup = "{group}"' in user_data and f"LOG_GROUP={group}" in user_data
    made = _logs().describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert [(g["logGroupName"], g.get("retentionInDays")) for g in made] == [(group, LOG_RETENTION_DAYS)]

    stop_until_stopped(harness, tenant, "valheim")
    _assert_no_identity(tenant, "valheim", cert_id)


def _assert_no_identity(guild: str, game: str, cert_id: str | None) -> None:
    iot = _iot()
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_thing(thingName=_thing(guild, game))
    if cert_id:
        with pytest.raises(iot.exceptions.ResourceNotFoundException):
            iot.describe_certificate(certificateId=cert_id)
    assert _params(guild, game) == []


def test_a_start_undone_after_the_identity_leaves_none_behind(harness: Harness, tenant: str) -> None:
    create_game(harness, "ark")
    begin_start(container().lifecycle, game_row(tenant, "ark"), reply=None, agent_timeout=2)
    pump_steps(lambda: bool(_iot().list_things()["things"]) and bool(_params(tenant, "ark")), timeout=40)
    cert = _iot().list_thing_principals(thingName=_thing(tenant, "ark"))["principals"][0].rsplit("/", 1)[-1]
    pump_steps(
        lambda: game_row(tenant, "ark").state.value == "STOPPED" and not _params(tenant, "ark"), timeout=40
    )
    _assert_no_identity(tenant, "ark", cert)


def test_issuing_twice_for_one_instance_makes_one_certificate() -> None:
    stage = container().settings.stage  # the stack's instance policy exists for this stage
    gateway = IdentityGateway(
        iot=_iot,
        ssm=_ssm,
        ec2=lambda: container().client("ec2"),
        sts=lambda: container().client("sts"),
        stage=stage,
        tenant=_hosting_tenant("555"),
        game="twice",
    )
    first = gateway.issue("i-0aaa", "arn:aws:ec2:us-east-1:123456789012:instance/i-0aaa")
    again = gateway.issue("i-0aaa", "arn:aws:ec2:us-east-1:123456789012:instance/i-0aaa")
    assert again == first
    assert len(_iot().list_thing_principals(thingName=gateway.thing)["principals"]) == 1
    # A new instance replaces the old identity: nothing of the first one is left.
    other = gateway.issue("i-0bbb", "arn:aws:ec2:us-east-1:123456789012:instance/i-0bbb")
    assert other.certificate_id != first.certificate_id
    assert [p["Name"].split("/")[5] for p in _params("555", "twice")] == ["i-0bbb", "i-0bbb"]
    assert gateway.retire() == []
    _assert_no_identity_raw(gateway, first.certificate_id, other.certificate_id)


def _assert_no_identity_raw(gateway: IdentityGateway, *certs: str) -> None:
    iot = _iot()
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_thing(thingName=gateway.thing)
    for cert in certs:
        with pytest.raises(iot.exceptions.ResourceNotFoundException):
            iot.describe_certificate(certificateId=cert)
    assert _params("555", "twice") == []


def test_the_most_ports_a_game_may_open_fit_ec2s_16_kb_and_more_is_refused() -> None:
    # /openport's limit: MAX_PORTS numbers in all; five-digit ones are the longest.
    half = MAX_PORTS // 2
    busiest = replace(
        BOOT,
        tcp_ports=tuple(range(60000, 60000 + half)),
        udp_ports=tuple(range(61000, 61000 + half)),
        log_group="/gangway/prod/123456789012345678/abcdefghijklmnopqrstuvwxyz012345",
    )
    size = len(render(busiest).encode())
    # With the wheelhouse's presigned URL (a Lambda's session token is most of its ~1.8 KB) and its hashed
    # requirements, 2 KB of EC2's limit must stay free for what comes next.
    assert size < 16 * 1024 - 2048, size
    with pytest.raises(ValueError, match="EC2 allows"):
        render(replace(busiest, launch=("x" * 16 * 1024,)))


def test_the_games_ports_reach_the_agent_as_numbers_tcp_and_udp_apart(tmp_path: Path) -> None:
    tcp, udp = port_numbers(["udp:2456-2458", "tcp:27015", "tcp:7777-7778"])
    path = tmp_path / "agent.toml"
    path.write_text(agent_toml(replace(BOOT, tcp_ports=tcp, udp_ports=udp)))
    ports = load(path).launch.ports
    assert (ports.tcp, ports.udp) == ((7777, 7778, 27015), (2456, 2457, 2458))


def test_a_log_group_name_is_refused_for_anything_but_plain_names() -> None:
    assert log_group("dev", "123", "valheim") == "/gangway/dev/123/valheim"
    for parts in (("dev", "..", "x"), ("dev", "1", "a/b"), ("dev", "1", ""), ("dev", "1", "g:*")):
        with pytest.raises(ValueError):
            log_group(*parts)


def test_the_game_log_sink_in_the_rendered_config_ships_to_cloudwatch(
    harness: Harness,
    tenant: str,
    tmp_path: Path,
) -> None:
    create_game(harness, "valheim")
    game = game_row(tenant, "valheim")
    stage = container().settings.stage
    # The backend's part (the steps function's, through the broker's hosting role), twice: idempotent,
    # the retention set either way.
    from devstack.iam import running_as

    with running_as("steps"):
        logs = container().gateways.logs(game, actor="test")
        group = logs.ensure()
        assert group == logs.ensure() == log_group(stage, tenant, "valheim")
    path = tmp_path / "agent.toml"
    path.write_text(agent_toml(replace(BOOT, tenant_id=tenant, log_group=group)))
    config = load(path)
    assert config.logs.sink is LogSinkKind.CLOUDWATCH and config.logs.group == group
    # The agent's own sink, as its CLI builds it, against the session's moto server.
    sink = build_sink(config.logs, "valheim-1")
    sink.write("stdout", "Game server connected")
    sink.write("stderr", "World saved")
    sink.close()
    events = _logs().get_log_events(logGroupName=group, logStreamName="valheim-1")["events"]
    assert [e["message"] for e in events] == ["stdout Game server connected", "stderr World saved"]
    [made] = _logs().describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert made["retentionInDays"] == LOG_RETENTION_DAYS


@pytest.fixture
def refuse_logs() -> Iterator[None]:
    """CreateLogGroup is refused in the tenant's account (a role stack from before the logs rights)."""

    def hook(client: Any) -> None:
        def deny(model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
            if model.name != "CreateLogGroup":
                return None
            body = {"Error": {"Code": "AccessDeniedException", "Message": "injected: CreateLogGroup"}}
            return AWSResponse("https://logs", 400, {}, None), body  # type: ignore[arg-type]

        client.meta.events.register("before-call.cloudwatch-logs", deny)

    container().broker.hooks.append(hook)
    yield
    container().broker.hooks.remove(hook)


def test_a_start_whose_log_group_is_refused_still_starts_and_logs_to_a_file(
    harness: Harness,
    tenant: str,
    refuse_logs: None,
) -> None:
    create_game(harness, "valheim")
    start_until_running(harness, tenant, "valheim")
    user_data = _user_data(game_row(tenant, "valheim").resources.instance_id or "")
    assert 'sink = "file"' in user_data and "LOG_GROUP=''" in user_data
    group = f"/gangway/{container().settings.stage}/{tenant}/valheim"
    assert _logs().describe_log_groups(logGroupNamePrefix=group)["logGroups"] == []


def test_a_start_with_a_corrupt_stored_port_is_undone_and_says_how_to_fix_it(
    harness: Harness,
    tenant: str,
) -> None:
    create_game(harness, "valheim")
    container().lifecycle.games.change(tenant, "valheim", ports=["udp:99999"])  # never from /openport
    begin_start(container().lifecycle, game_row(tenant, "valheim"), reply=None)
    pump_steps(lambda: game_row(tenant, "valheim").state.value == "STOPPED", timeout=40)
    game = game_row(tenant, "valheim")
    assert game.resources.instance_id is None and game.resources.volume_id is None
    assert ec2_of(tenant, "valheim").leftovers()["instances"] == []

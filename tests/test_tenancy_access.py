"""The credentials broker's cache and audit trail, /audit paging, plans and /plan, and tenant removal."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.stub import Stubber
from pynamodb.models import Model

from chalicelib.access import Grant, GrantStore, LinkKind
from chalicelib.discord import CallbackType
from chalicelib.errors import AccountUnreachable, Forbidden, ValidationError
from chalicelib.games import GameRecord, GameState, GameStore
from chalicelib.tenancy import (
    PLANS,
    AuditLog,
    AuditRecord,
    CredentialsBroker,
    Tenant,
    TenantRecord,
    TenantStore,
    Usage,
)
from chalicelib.wiring import container
from devstack.cli import main as gangway
from devstack.discord_user import Who, snowflake
from tests.helpers import Harness, connect_customer_account

STORE = TenantStore(default_region="us-east-1")


def _customer(tenant_id: str) -> Tenant:
    STORE.ensure(tenant_id, created_by="1")
    return connect_customer_account(tenant_id)


def _broker(clock: list[float]) -> CredentialsBroker:
    c = container()
    return CredentialsBroker(
        sts=lambda: c.client("sts"),
        hosting_session=lambda: None,
        audit=AuditLog(),
        endpoint_url=c.settings.aws_endpoint_url,
        clock=lambda: clock[0],
    )


def test_many_operations_in_one_process_cost_one_assume_role_and_each_is_audited(emulator: Any) -> None:
    tenant = _customer(snowflake())
    broker = _broker([1_000_000_000.0])
    for _ in range(5):
        access = broker.access(tenant, purpose="games", actor="4242")
        access.client("ec2").describe_instances()
    entries = AuditLog().recent(tenant.tenant_id, limit=50)
    assert [e.action for e in entries].count("sts:AssumeRole") == 1
    calls = [e for e in entries if e.action == "ec2:DescribeInstances"]
    assert len(calls) == 5 and all(
        e.actor == "4242" and e.outcome == "ok" and e.purpose == "games" for e in calls
    )


def test_credentials_are_fetched_again_five_minutes_before_they_expire(emulator: Any) -> None:
    tenant = _customer(snowflake())
    clock = [0.0]
    broker = _broker(clock)
    creds = broker.credentials(
        tenant.tenant_id,
        role_arn=tenant.role_arn or "",
        external_id=tenant.external_id or "",
        purpose="p",
        actor="a",
    )
    clock[0] = 10**10  # far past any expiry
    assert (
        broker.credentials(
            tenant.tenant_id,
            role_arn=tenant.role_arn or "",
            external_id=tenant.external_id or "",
            purpose="p",
            actor="a",
        )
        != creds
    )
    assert AuditLog().count(tenant.tenant_id, "sts:AssumeRole") == 2


def test_purposes_get_their_own_sessions(emulator: Any) -> None:
    tenant = _customer(snowflake())
    broker = _broker([1_000_000_000.0])
    broker.access(tenant, purpose="games", actor="a")
    broker.access(tenant, purpose="verify", actor="a")
    assert AuditLog().count(tenant.tenant_id, "sts:AssumeRole") == 2


def test_a_refused_assume_role_is_audited_and_explained(emulator: Any) -> None:
    tenant = _customer(snowflake())
    sts = container().client("sts")
    broker = CredentialsBroker(
        sts=lambda: sts, hosting_session=lambda: None, audit=AuditLog(), endpoint_url=None
    )
    with Stubber(sts) as stub:
        stub.add_client_error("assume_role", service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(AccountUnreachable, match="could not assume"):
            broker.access(tenant, purpose="games", actor="a")
    (entry,) = AuditLog().recent(tenant.tenant_id)
    assert (entry.action, entry.outcome) == ("sts:AssumeRole", "AccessDenied")
    assert "Secret" not in json.dumps(entry.__dict__) and "Token" not in json.dumps(entry.__dict__)


def test_hosting_tenants_get_the_hosting_role_tagged_with_their_tenant_and_are_audited_too(
    emulator: Any,
) -> None:
    """A hosted tenant's access is the hosting role, assumed by the function with the session tag
    `gangway:tenant` (issue 15.5), not the function's own credentials."""
    from devstack.iam import hosting_role_arn, running_as
    from devstack.iam_conditions import session_tags

    tenant_id = snowflake()
    tenant, _ = STORE.ensure(tenant_id, created_by="1")
    with running_as("jobs"):
        access = container().broker.access(tenant, purpose="games", actor="job")
    access.client("ec2").describe_volumes()
    sts = access.client("sts")
    role = hosting_role_arn(container().settings.stage).rsplit("/", 1)[1]
    assert f":assumed-role/{role}/gangway-games-{tenant_id}" in sts.get_caller_identity()["Arn"]
    key = sts._request_signer._credentials.get_frozen_credentials().access_key
    assert session_tags(key) == {"gangway:tenant": tenant_id}
    actions = [e.action for e in AuditLog().recent(tenant_id)]
    assert sorted(actions) == ["ec2:DescribeVolumes", "sts:AssumeRole", "sts:GetCallerIdentity"], actions


def test_audit_shows_newest_first_and_pages_with_buttons(harness: Harness) -> None:
    harness.command("setup")
    guild = harness.user.who.guild_id or ""
    log = AuditLog()
    for i in range(12):
        log.record(guild, actor="system", action=f"ec2:Action{i:02d}")
    _, answer = harness.command("audit")
    embed = answer["data"]["embeds"][0]
    assert embed["description"].splitlines()[0].count("ec2:Action11") == 1
    assert len(embed["description"].splitlines()) == 10
    older = answer["data"]["components"][0]["components"][1]["custom_id"]
    page = harness.component(older)
    assert page["type"] == CallbackType.UPDATE_MESSAGE
    lines = page["data"]["embeds"][0]["description"].splitlines()
    assert ["ec2:Action01" in lines[0], "ec2:Action00" in lines[1]] == [True, True]


def test_audit_refuses_a_forged_page_cursor(harness: Harness) -> None:
    harness.command("setup")
    answer = harness.component("audit:page:../../../etc")
    assert "damaged" in answer["data"]["content"]


def test_audit_is_for_admins_only(harness: Harness) -> None:
    harness.command("setup")
    member = Who(guild_id=harness.user.who.guild_id, user_id=snowflake(), permissions=0)
    _, answer = harness.command("audit", who=member)
    assert "admin** role" in answer["data"]["content"]


def test_plan_limits_name_the_limit() -> None:
    free = PLANS["free"]
    with pytest.raises(Forbidden, match="allows 2 games"):
        free.check_new_game(Usage(games=2, running=0))
    with pytest.raises(Forbidden, match="1 game\\(s\\) running at once"):
        free.check_start(Usage(games=1, running=1))
    with pytest.raises(Forbidden, match=r"up to `t3\.large`"):
        free.check_instance("m6i.xlarge")
    with pytest.raises(Forbidden, match="up to 32 GB"):
        free.check_disk(64)
    with pytest.raises(ValidationError):
        free.check_instance("banana")
    free.check_new_game(Usage(games=1, running=0))
    free.check_instance("t3.small")
    PLANS["pro"].check_disk(500)


def test_plan_command_shows_usage_against_limits_and_the_operator_sets_plans(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    harness.command("setup")
    guild = harness.user.who.guild_id or ""
    GameStore().create(guild, "valheim", description="", created_by="1")
    _, answer = harness.command("plan")
    fields = {f["name"]: f["value"] for f in answer["data"]["embeds"][0]["fields"]}
    assert answer["data"]["embeds"][0]["title"] == "Plan: free" and fields["Games"] == "1 of 2"
    assert gangway(["plan", "--guild", guild, "--set", "pro"]) == 0
    assert f"guild {guild}: plan pro" in capsys.readouterr().out
    container().services.tenants.get(guild)  # the test shares the container; drop its cached copy
    STORE.get(guild)
    with pytest.raises(SystemExit, match="unknown plan"):
        gangway(["plan", "--guild", guild, "--set", "platinum"])
    assert TenantStore(default_region="us-east-1").read(guild).plan == "pro"  # type: ignore[union-attr]


def _rows(tenant_id: str) -> dict[str, int]:
    """Rows of `tenant_id` in every tenant-keyed table the app declares, plus tenants and audit."""
    models: set[type[Model]] = {*container().services.tenant_tables(), TenantRecord, AuditRecord}
    return {m.Meta.table_name: sum(1 for _ in m.query(tenant_id)) for m in models}


def test_removing_a_tenant_leaves_no_rows_of_it_behind(harness: Harness) -> None:
    harness.command("setup")
    guild = harness.user.who.guild_id or ""
    other = snowflake()
    for tenant in (guild, other):
        STORE.ensure(tenant, created_by="1")
        GameStore().create(tenant, "valheim", description="", created_by="1")
        AuditLog().record(tenant, actor="1", action="ec2:DescribeInstances")
        now = int(time.time())
        GrantStore().put(Grant(tenant, "198.51.100.7", LinkKind.MEMBER, "user#1", now, now + 3600))
    harness.command("ipsettings", member_days=30)  # an access-policy row
    status_payload, _ = harness.command("status")
    harness.run_jobs_for(status_payload["token"])
    assert sum(_rows(guild).values()) >= 6
    other_before = _rows(other)

    answer = harness.component("setup:remove")
    assert answer["data"]["components"][0]["components"][0]["custom_id"] == "setup:remove:confirm"
    payload = harness.user.component("setup:remove:confirm")
    _, answer = harness.post(payload)
    assert answer == {"type": CallbackType.DEFERRED_UPDATE_MESSAGE}
    harness.run_jobs_for(payload["token"])
    edit = harness.calls_for(payload["token"])[-1]["json"]
    assert "gangway was removed from this server" in edit["content"]
    assert _rows(guild) == dict.fromkeys(_rows(guild), 0)
    assert _rows(other) == other_before


def test_removal_waits_for_running_games(harness: Harness) -> None:
    harness.command("setup")
    guild = harness.user.who.guild_id or ""
    GameStore().create(guild, "valheim", description="", created_by="1")
    record = GameRecord.get(guild, "valheim")
    record.update(actions=[GameRecord.state.set(GameState.RUNNING.value)])
    answer = harness.component("setup:remove:confirm")
    assert "Stop these games before you remove gangway: `valheim`" in answer["data"]["content"]
    assert STORE.read(guild) is not None

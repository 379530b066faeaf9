"""Removing gangway from a server (`/setup` → Remove) leaves nothing of gangway's in AWS: each game's
security group and log group go, and in the hosting account its snapshots too; all through signed
interactions, the jobs Lambda and the tenant's audited credentials, on the session's moto server."""

from __future__ import annotations

from typing import Any

from chalicelib.instances import Ec2Gateway
from chalicelib.wiring import container
from tests.helpers import Harness
from tests.lifecycle_helpers import create_game, start_until_running, stop_until_stopped


def _left(tenant: str, game: str) -> dict[str, Any]:
    ec2 = container().client("ec2")
    tag = [{"Name": "tag:gangway", "Values": [f"{tenant}/{game}"]}]
    group = f"/gangway/{container().settings.stage}/{tenant}/{game}"
    return {
        "groups": ec2.describe_security_groups(Filters=tag)["SecurityGroups"],
        "snapshots": Ec2Gateway(ec2, tenant_id=tenant, game=game).snapshots(),
        "logs": container().client("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"],
    }


def test_removing_a_hosted_server_deletes_its_games_groups_logs_and_snapshots(
    harness: Harness, tenant: str
) -> None:
    create_game(harness, "valheim")
    start_until_running(harness, tenant, "valheim")
    stop_until_stopped(harness, tenant, "valheim")
    create_game(harness, "rust")  # never started: a group, nothing else
    before = _left(tenant, "valheim")
    assert before["groups"] and before["snapshots"] and before["logs"]

    warning = harness.component("setup:remove")["data"]["content"]
    assert "snapshots (their saved worlds) are deleted too" in warning
    payload = harness.user.component("setup:remove:confirm")
    harness.post(payload)
    harness.run_jobs_for(payload["token"])

    content = harness.calls_for(payload["token"])[-1]["json"]["content"]
    assert "gangway was removed" in content
    assert "1 snapshot and 2 security groups were deleted" in content and "Left behind" not in content
    for game in ("valheim", "rust"):
        assert _left(tenant, game) == {"groups": [], "snapshots": [], "logs": []}

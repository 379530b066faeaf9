"""Fault injection: for each step in turn an AWS call fails for good, and the game ends consistent.

Start faults: the game is STOPPED, nothing is left running or attached, its newest snapshot is intact
and the user is told. Stop faults: the game is STOPPED, the instance is gone, the newest data is never
lost (a failed snapshot keeps the volume; a failed cleanup after a complete snapshot keeps it too) and
the user is told.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from chalicelib.games import GameRecord, GameState
from chalicelib.instances import tags_for
from chalicelib.wiring import container
from tests.helpers import Harness
from tests.lifecycle_helpers import create_game, ec2_of, game_row, pump_steps, start_until_running, stop_reply


@pytest.fixture
def fail_ec2() -> Iterator[set[str]]:
    """The EC2 operations named in the yielded set fail with a non-retryable AWS error."""
    failing: set[str] = set()

    def hook(client: Any) -> None:
        def deny(model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
            if model.name not in failing:
                return None
            body = {"Error": {"Code": "UnauthorizedOperation", "Message": f"injected: {model.name}"}}
            return AWSResponse("https://ec2", 403, {}, None), body  # type: ignore[arg-type]

        client.meta.events.register("before-call.ec2", deny)

    container().broker.hooks.append(hook)
    yield failing
    container().broker.hooks.remove(hook)


def _with_snapshot(guild: str, name: str) -> str:
    """Give the game a complete snapshot, as an earlier stop would have."""
    ec2 = container().client("ec2")
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    snap = ec2.create_snapshot(
        VolumeId=volume,
        TagSpecifications=[
            {"ResourceType": "snapshot", "Tags": tags_for(guild, name, "data")}  # as gangway tags it
        ],
    )["SnapshotId"]
    ec2.delete_volume(VolumeId=volume)
    GameRecord.get(guild, name).update(actions=[GameRecord.snapshot_id.set(snap)])
    return str(snap)


@pytest.mark.parametrize("operation", ["CreateVolume", "RunInstances", "AttachVolume"])
def test_a_failing_start_step_is_undone(
    harness: Harness,
    tenant: str,
    fail_ec2: set[str],
    operation: str,
) -> None:
    create_game(harness, "valheim")
    snapshot = _with_snapshot(tenant, "valheim")
    fail_ec2.add(operation)
    payload, _ = harness.command("start", game="valheim")
    pump_steps(lambda: game_row(tenant, "valheim").state is GameState.STOPPED, timeout=60)
    game = game_row(tenant, "valheim")
    assert (game.resources.snapshot_id, game.resources.instance_id, game.resources.volume_id, game.wait.task_token) == (
        snapshot,
        None,
        None,
        None,
    )
    assert ec2_of(tenant, "valheim").leftovers() == {"instances": [], "volumes": []}
    assert (
        container().client("ec2").describe_snapshots(SnapshotIds=[snapshot])["Snapshots"][0]["State"]
        == "completed"
    )
    told = harness.calls_for(payload["token"])[-1]["json"]["content"]
    assert "could not start" in told and "Nothing is left running" in told


@pytest.mark.parametrize(
    ("operation", "volume_kept", "new_snapshot"),
    [("CreateSnapshot", True, False), ("DescribeSnapshots", True, False), ("DeleteVolume", True, True)],
)
def test_a_failing_stop_step_never_loses_data(  # noqa: PLR0917 - fixtures and parameters
    harness: Harness,
    tenant: str,
    fail_ec2: set[str],
    operation: str,
    volume_kept: bool,
    new_snapshot: bool,
) -> None:
    create_game(harness, "valheim")
    before = _with_snapshot(tenant, "valheim")
    start_until_running(harness, tenant)
    running = game_row(tenant, "valheim")
    fail_ec2.add(operation)
    payload, _ = harness.command("stop", game="valheim")
    pump_steps(lambda: bool(game_row(tenant, "valheim").wait.task_token))
    stop_reply(tenant, "valheim")
    pump_steps(lambda: game_row(tenant, "valheim").state is GameState.STOPPED, timeout=60)
    game = game_row(tenant, "valheim")
    assert game.resources.instance_id is None
    leftovers = ec2_of(tenant, "valheim").leftovers()
    assert leftovers["instances"] == []
    assert (game.resources.volume_id == running.resources.volume_id) is volume_kept and leftovers["volumes"] == [
        running.resources.volume_id
    ]
    assert (game.resources.snapshot_id != before) is new_snapshot
    snaps = container().client("ec2").describe_snapshots(SnapshotIds=[before])["Snapshots"]
    assert snaps and snaps[0]["State"] == "completed"  # the newest good snapshot is never deleted
    told = harness.calls_for(payload["token"])[-1]["json"]["content"]
    # A complete snapshot is the data, safe: the user is told so, never that the snapshot failed.
    assert ("stopped and saved" in told and "snapshot failed" not in told) is new_snapshot, told

"""The EC2 gateway's fast snapshot restore calls, against botocore's Stubber (moto has no FSR API):
what EBS answers, in its real response shapes, becomes a state, a refusal, or nothing to do."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.stub import Stubber

from chalicelib.instances import Ec2Gateway
from chalicelib.instances.ec2 import FastRestoreRefused

SNAP = "snap-0123456789abcdef0"
ZONE = "us-east-1b"
WHEN = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)




def _item(state: str, **extra: Any) -> dict[str, Any]:
    return {
        "SnapshotId": SNAP,
        "AvailabilityZone": ZONE,
        "State": state,
        "StateTransitionReason": "Client.UserInitiated",
        "OwnerId": "123456789012",
        **extra,
    }


def _refused(code: str, message: str) -> dict[str, Any]:
    return {
        "Successful": [],
        "Unsuccessful": [
            {
                "SnapshotId": SNAP,
                "FastSnapshotRestoreStateErrors": [
                    {"AvailabilityZone": ZONE, "Error": {"Code": code, "Message": message}}
                ],
            }
        ],
    }


PARAMS = {"AvailabilityZones": [ZONE], "SourceSnapshotIds": [SNAP]}
FILTERS = {
    "Filters": [
        {"Name": "snapshot-id", "Values": [SNAP]},
        {"Name": "availability-zone", "Values": [ZONE]},
    ]
}


def test_enabling_in_one_zone_returns_the_state_ebs_reports(ec2_stub: tuple[Ec2Gateway, Stubber]) -> None:
    gw, stubber = ec2_stub
    stubber.add_response(
        "enable_fast_snapshot_restores",
        {"Successful": [_item("enabling", EnablingTime=WHEN)], "Unsuccessful": []},
        PARAMS,
    )
    assert gw.enable_fast_restore(SNAP, ZONE) == "enabling"


def test_a_refused_enable_says_why(ec2_stub: tuple[Ec2Gateway, Stubber]) -> None:
    gw, stubber = ec2_stub
    stubber.add_response(
        "enable_fast_snapshot_restores",
        _refused("InvalidRequest", "the limit of 5 enabled snapshots is reached"),
        PARAMS,
    )
    with pytest.raises(FastRestoreRefused, match=r"us-east-1b: InvalidRequest the limit of 5"):
        gw.enable_fast_restore(SNAP, ZONE)


@pytest.mark.parametrize(
    ("listed", "state"),
    [
        ([_item("optimizing", OptimizingTime=WHEN)], "optimizing"),
        ([_item("enabled")], "enabled"),
        ([], "disabled"),
    ],
)
def test_the_state_is_read_for_that_snapshot_and_zone_only(
    ec2_stub: tuple[Ec2Gateway, Stubber], listed: list[dict[str, Any]], state: str
) -> None:
    gw, stubber = ec2_stub
    stubber.add_response("describe_fast_snapshot_restores", {"FastSnapshotRestores": listed}, FILTERS)
    assert gw.fast_restore_state(SNAP, ZONE) == state


def test_disabling_succeeds_when_ebs_accepts(ec2_stub: tuple[Ec2Gateway, Stubber]) -> None:
    gw, stubber = ec2_stub
    stubber.add_response(
        "disable_fast_snapshot_restores",
        {"Successful": [_item("disabling", DisablingTime=WHEN)], "Unsuccessful": []},
        PARAMS,
    )
    gw.disable_fast_restore(SNAP, ZONE)


def test_disabling_what_is_already_off_or_gone_is_fine(ec2_stub: tuple[Ec2Gateway, Stubber]) -> None:
    gw, stubber = ec2_stub
    stubber.add_response(
        "disable_fast_snapshot_restores", _refused("InvalidParameterValue", "not enabled"), PARAMS
    )
    stubber.add_response("describe_fast_snapshot_restores", {"FastSnapshotRestores": []}, FILTERS)
    gw.disable_fast_restore(SNAP, ZONE)
    stubber.add_client_error(
        "disable_fast_snapshot_restores",
        "InvalidSnapshot.NotFound",
        "no such snapshot",
        expected_params=PARAMS,
    )
    gw.disable_fast_restore(SNAP, ZONE)


def test_a_refused_disable_that_leaves_it_on_raises(ec2_stub: tuple[Ec2Gateway, Stubber]) -> None:
    gw, stubber = ec2_stub
    stubber.add_response("disable_fast_snapshot_restores", _refused("InternalError", "try again"), PARAMS)
    stubber.add_response(
        "describe_fast_snapshot_restores", {"FastSnapshotRestores": [_item("enabled")]}, FILTERS
    )
    with pytest.raises(FastRestoreRefused, match="did not disable"):
        gw.disable_fast_restore(SNAP, ZONE)


def test_other_aws_errors_are_not_swallowed(ec2_stub: tuple[Ec2Gateway, Stubber]) -> None:
    gw, stubber = ec2_stub
    stubber.add_client_error(
        "disable_fast_snapshot_restores", "UnauthorizedOperation", "denied", expected_params=PARAMS
    )
    with pytest.raises(Exception, match="UnauthorizedOperation"):
        gw.disable_fast_restore(SNAP, ZONE)

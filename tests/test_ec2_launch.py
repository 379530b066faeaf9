"""The EC2 gateway's launch path against botocore's Stubber: where a launch may go, in which order, how
capacity errors move it on and other errors stop it, and that its idempotency tokens never collide."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from chalicelib.instances import CapacityError, Ec2Gateway, Placement
from chalicelib.instances.ec2 import placements

ZONES = {"AvailabilityZones": [{"ZoneName": z, "State": "available"} for z in ("us-east-1b", "us-east-1a")]}
AVAILABLE = {"Filters": [{"Name": "state", "Values": ["available"]}]}
DEFAULT_SUBNETS = {"Filters": [{"Name": "default-for-az", "Values": ["true"]}]}
IMAGE = "ami-0123456789abcdef0"  # what instances/images.py resolved for the type
IMAGES = {"t3.large": IMAGE}




def _subnet(zone: str) -> dict[str, Any]:
    return {"SubnetId": f"subnet-{zone[-1]}", "AvailabilityZone": zone, "DefaultForAz": True}


def test_launch_zones_are_the_available_ones_with_a_default_subnet(ec2_stub: tuple[Ec2Gateway, Stubber]) -> None:
    gw, stubber = ec2_stub
    stubber.add_response("describe_availability_zones", ZONES, AVAILABLE)
    stubber.add_response("describe_subnets", {"Subnets": [_subnet("us-east-1b")]}, DEFAULT_SUBNETS)
    assert gw.launch_zones() == ["us-east-1b"]


def test_without_default_subnets_every_available_zone_is_tried(ec2_stub: tuple[Ec2Gateway, Stubber]) -> None:
    gw, stubber = ec2_stub
    stubber.add_response("describe_availability_zones", ZONES, AVAILABLE)
    stubber.add_response("describe_subnets", {"Subnets": []}, DEFAULT_SUBNETS)
    assert gw.launch_zones() == ["us-east-1a", "us-east-1b"]


def test_placements_go_through_every_zone_for_each_type_in_order_without_repeats() -> None:
    assert placements(["t3.large", "t3.small", "t3.large"], ["a", "b"]) == [
        Placement("a", "t3.large"),
        Placement("b", "t3.large"),
        Placement("a", "t3.small"),
        Placement("b", "t3.small"),
    ]


def _launched(instance_id: str) -> dict[str, Any]:
    return {"Instances": [{"InstanceId": instance_id}]}


def test_a_capacity_error_moves_on_to_the_next_option_with_its_own_token(
    ec2_stub: tuple[Ec2Gateway, Stubber],
) -> None:
    gw, stubber = ec2_stub
    long_token = "start-" + "1" * 19 + "-" + "g" * 32 + "-12-spot"  # over EC2's 64 characters
    tokens: list[str] = []

    def expect(zone: str) -> dict[str, Any]:
        return {
            "ImageId": IMAGE,
            "InstanceType": "t3.large",
            "MinCount": 1,
            "MaxCount": 1,
            "Placement": {"AvailabilityZone": zone},
            "UserData": "#!/bin/bash\necho hi\n",  # raw: botocore base64-encodes it once itself
            "ClientToken": ANY,
            "TagSpecifications": ANY,
            "MetadataOptions": ANY,
            "InstanceMarketOptions": {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
            },
        }

    stubber.add_client_error(
        "run_instances",
        "InsufficientInstanceCapacity",
        "no t3.large capacity in us-east-1a",
        expected_params=expect("us-east-1a"),
    )
    stubber.add_response("run_instances", _launched("i-0abc"), expect("us-east-1b"))

    def note_token(params: Any, **_: Any) -> None:
        tokens.append(params["ClientToken"])

    gw._ec2.meta.events.register("before-parameter-build.ec2.RunInstances", note_token)
    launch = gw.run(
        [Placement("us-east-1a", "t3.large"), Placement("us-east-1b", "t3.large")],
        spot=True,
        user_data="#!/bin/bash\necho hi\n",
        token=long_token,
        images=IMAGES,
    )
    assert (launch.instance_id, launch.zone, launch.spot) == ("i-0abc", "us-east-1b", True)
    assert len(tokens) == 2 and tokens[0] != tokens[1] and all(len(t) <= 64 for t in tokens)


def test_no_capacity_anywhere_raises_capacity_error_naming_each_try(ec2_stub: tuple[Ec2Gateway, Stubber]) -> None:
    gw, stubber = ec2_stub
    for code in ("InsufficientInstanceCapacity", "Unsupported"):
        stubber.add_client_error("run_instances", code, "no")
    with pytest.raises(
        CapacityError, match=r"t3.large in a: InsufficientInstanceCapacity; t3.large in b: Unsupported"
    ):
        gw.run(placements(["t3.large"], ["a", "b"]), spot=False, user_data="x", token="t", images=IMAGES)


def test_an_error_that_is_not_about_capacity_stops_the_launch(ec2_stub: tuple[Ec2Gateway, Stubber]) -> None:
    gw, stubber = ec2_stub
    stubber.add_client_error("run_instances", "UnauthorizedOperation", "denied")
    with pytest.raises(Exception, match="UnauthorizedOperation"):
        gw.run(placements(["t3.large"], ["a", "b"]), spot=False, user_data="x", token="t", images=IMAGES)

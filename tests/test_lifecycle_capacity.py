"""Capacity first: StartGame launches where AWS has room, then makes the volume in that zone.

EC2 capacity errors are injected per (instance type, zone, market) at the botocore seam (the broker's
client hooks), the way EC2 answers them: `InsufficientInstanceCapacity`. Everything else is moto.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from chalicelib.commands.games_lifecycle import INSTANCE_TYPES
from chalicelib.games import GameRecord, GameState
from chalicelib.instances import tags_for
from chalicelib.wiring import container
from tests.helpers import Harness
from tests.lifecycle_helpers import create_game, ec2_of, game_row, pump_steps, start_until_running

ANY = "*"


@dataclass
class Capacity:
    """Which (type, zone, market) EC2 has no room for; every RunInstances attempt, in order."""

    full: set[tuple[str, str, str]] = field(default_factory=set)
    attempts: list[tuple[str, str, str]] = field(default_factory=list)

    def none_for(self, instance_type: str = ANY, zone: str = ANY, market: str = ANY) -> None:
        self.full.add((instance_type, zone, market))

    def denies(self, attempt: tuple[str, str, str]) -> bool:
        return any(all(w in (ANY, a) for w, a in zip(rule, attempt, strict=True)) for rule in self.full)


@pytest.fixture
def capacity() -> Iterator[Capacity]:
    cap = Capacity()

    def launch(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        body = params.get("body") or {}
        market = "spot" if body.get("InstanceMarketOptions.MarketType") == "spot" else "on-demand"
        attempt = (str(body.get("InstanceType")), str(body.get("Placement.AvailabilityZone")), market)
        cap.attempts.append(attempt)
        if not cap.denies(attempt):
            return None
        error = {
            "Code": "InsufficientInstanceCapacity",
            "Message": f"We currently do not have sufficient {attempt[0]} capacity in {attempt[1]}.",
        }
        return AWSResponse("https://ec2", 500, {}, None), {"Error": error}  # type: ignore[arg-type]

    def hook(client: Any) -> None:
        client.meta.events.register("before-call.ec2.RunInstances", launch)

    container().broker.hooks.append(hook)
    yield cap
    container().broker.hooks.remove(hook)


def _zones() -> list[str]:
    answer = container().client("ec2").describe_availability_zones()
    return sorted(z["ZoneName"] for z in answer["AvailabilityZones"] if z["State"] == "available")


def _instance(tenant: str, name: str) -> dict[str, Any]:
    found = ec2_of(tenant, name).instance(game_row(tenant, name).resources.instance_id or "")
    assert found is not None
    return dict(found)


def _volume(tenant: str, name: str) -> dict[str, Any]:
    volumes = container().client("ec2").describe_volumes(VolumeIds=[game_row(tenant, name).resources.volume_id])
    return dict(volumes["Volumes"][0])


def _told(harness: Harness, payload: dict[str, Any]) -> list[str]:
    return [c["json"]["content"] for c in harness.calls_for(payload["token"])]


def _set(tenant: str, name: str, **values: Any) -> None:
    GameRecord.get(tenant, name).update(actions=[getattr(GameRecord, k).set(v) for k, v in values.items()])


def test_a_full_zone_costs_one_more_try_and_the_volume_follows_the_instance(
    harness: Harness, tenant: str, capacity: Capacity
) -> None:
    create_game(harness, "valheim")
    first, second = _zones()[:2]
    capacity.none_for(zone=first)
    payload = start_until_running(harness, tenant)
    instance, volume = _instance(tenant, "valheim"), _volume(tenant, "valheim")
    assert instance["Placement"]["AvailabilityZone"] == second == game_row(tenant, "valheim").resources.zone
    assert volume["AvailabilityZone"] == second
    assert volume["Attachments"] and volume["Attachments"][0]["InstanceId"] == instance["InstanceId"]
    assert capacity.attempts[:2] == [("t3.medium", first, "on-demand"), ("t3.medium", second, "on-demand")]
    assert "Note:" not in _told(harness, payload)[-1]  # the type and market it asked for: nothing to say


def test_no_room_for_the_type_anywhere_starts_its_first_fallback_type_with_room(
    harness: Harness, tenant: str, capacity: Capacity
) -> None:
    create_game(harness, "factorio")
    harness.component("games:set:factorio:fallback", ["t3.large", "t3.small"])
    assert game_row(tenant, "factorio").settings.fallback_types == ("t3.large", "t3.small")
    capacity.none_for("t3.medium")
    capacity.none_for("t3.large")
    payload = start_until_running(harness, tenant, "factorio")
    assert _instance(tenant, "factorio")["InstanceType"] == "t3.small"
    zones = _zones()
    # The game's own type in every zone, then each fallback type in every zone, in the order chosen.
    assert capacity.attempts[: 2 * len(zones) + 1] == [
        *[("t3.medium", z, "on-demand") for z in zones],
        *[("t3.large", z, "on-demand") for z in zones],
        ("t3.small", zones[0], "on-demand"),
    ]
    assert _told(harness, payload)[-1].endswith(
        "Note: no on-demand room for `t3.medium` in any zone; started a `t3.small`."
    )


def test_no_spot_room_anywhere_tries_every_spot_option_then_starts_on_demand_and_says_so(
    harness: Harness, tenant: str, capacity: Capacity
) -> None:
    create_game(harness, "rust")
    _set(tenant, "rust", spot=True, on_demand_fallback=True, fallback_types=["t3.large"])
    capacity.none_for(market="spot")
    payload = start_until_running(harness, tenant, "rust")
    assert _instance(tenant, "rust").get("InstanceLifecycle") != "spot"
    zones = _zones()
    spot = [a for a in capacity.attempts if a[2] == "spot"]
    assert len(spot) == 2 * len(zones) and capacity.attempts[: len(spot)] == spot  # all Spot options first
    assert capacity.attempts[len(spot)] == ("t3.medium", zones[0], "on-demand")
    assert (
        "no Spot room for `t3.medium` or `t3.large` in any zone; started on-demand"
        in _told(harness, payload)[-1]
    )


def test_spot_with_room_in_another_zone_stays_spot(harness: Harness, tenant: str, capacity: Capacity) -> None:
    create_game(harness, "ark")
    _set(tenant, "ark", spot=True, on_demand_fallback=True)
    capacity.none_for(zone=_zones()[0], market="spot")
    start_until_running(harness, tenant, "ark")
    instance = _instance(tenant, "ark")
    assert instance.get("InstanceLifecycle") == "spot"
    assert instance["Placement"]["AvailabilityZone"] == _zones()[1]


def test_spot_only_without_room_is_undone_leaves_nothing_and_says_why(
    harness: Harness, tenant: str, capacity: Capacity
) -> None:
    create_game(harness, "terraria")
    _set(tenant, "terraria", spot=True, on_demand_fallback=False, fallback_types=["t3.small"])
    capacity.none_for(market="spot")
    payload, _ = harness.command("start", game="terraria")
    pump_steps(lambda: game_row(tenant, "terraria").state is GameState.STOPPED)
    game = game_row(tenant, "terraria")
    assert (game.resources.instance_id, game.resources.volume_id, game.wait.task_token) == (None, None, None)
    assert ec2_of(tenant, "terraria").leftovers() == {"instances": [], "volumes": []}
    assert all(a[2] == "spot" for a in capacity.attempts)  # never on-demand: the game does not allow it
    told = _told(harness, payload)[-1]
    assert (
        "could not start: AWS had no capacity" in told
        and "no Spot room for `t3.medium` or `t3.small`" in told
    )
    assert "Spot only" in told and "Try `/start` again" in told


def test_fallback_types_over_the_plan_are_refused_and_skipped(
    harness: Harness, tenant: str, capacity: Capacity
) -> None:
    create_game(harness, "satisfactory")
    answer = harness.component("games:set:satisfactory:fallback", ["t3.large", "m6i.2xlarge"])
    assert "allows instances up to `t3.large`" in answer["data"]["content"]  # the free plan
    assert game_row(tenant, "satisfactory").settings.fallback_types == ()
    # One saved before the plan shrank is skipped at launch, not launched.
    _set(tenant, "satisfactory", fallback_types=["m6i.2xlarge", "t3.small"])
    capacity.none_for("t3.medium")
    start_until_running(harness, tenant, "satisfactory")
    assert {a[0] for a in capacity.attempts} == {"t3.medium", "t3.small"}
    assert _instance(tenant, "satisfactory")["InstanceType"] == "t3.small"


@pytest.mark.parametrize(
    "values",
    # More values than the select has options (every type but the game's own), among others.
    [["c6i.9xlarge"], ["t3.large", "nope"], ["t3.large"] * len(INSTANCE_TYPES), ["t3.medium' OR 1=1"]],
)
def test_hostile_fallback_selections_change_nothing(harness: Harness, tenant: str, values: list[str]) -> None:
    create_game(harness, "hostile")
    answer = harness.component("games:set:hostile:fallback", values)
    assert "isn't one gangway offers" in answer["data"]["content"]
    assert game_row(tenant, "hostile").settings.fallback_types == ()


def test_clearing_the_fallback_select_saves_no_fallback_types(harness: Harness, tenant: str) -> None:
    create_game(harness, "mc")
    harness.component("games:set:mc:fallback", ["t3.small"])
    answer = harness.component("games:set:mc:fallback", [])
    assert game_row(tenant, "mc").settings.fallback_types == () and "(else" not in answer["data"]["content"]
    fallback = answer["data"]["components"][-1]["components"][0]
    assert (fallback["min_values"], fallback["custom_id"]) == (0, "games:set:mc:fallback")
    assert "t3.medium" not in [o["value"] for o in fallback["options"]]  # its own type is no fallback


def test_a_volume_kept_by_a_failed_stop_pins_the_launch_to_its_zone_and_is_reused(
    harness: Harness, tenant: str, capacity: Capacity
) -> None:
    create_game(harness, "vrising")
    zone = _zones()[2]
    ec2 = container().client("ec2")
    kept = ec2.create_volume(
        AvailabilityZone=zone,
        Size=12,
        TagSpecifications=[
            {"ResourceType": "volume", "Tags": tags_for(tenant, "vrising", "data")}  # as gangway tags it
        ],
    )["VolumeId"]
    _set(tenant, "vrising", volume_id=kept, zone=zone)
    start_until_running(harness, tenant, "vrising")
    game = game_row(tenant, "vrising")
    assert game.resources.volume_id == kept and _instance(tenant, "vrising")["Placement"]["AvailabilityZone"] == zone
    assert {a[1] for a in capacity.attempts} == {zone}
    user_data = ec2.describe_instance_attribute(InstanceId=game.resources.instance_id, Attribute="userData")
    assert kept in base64.b64decode(user_data["UserData"]["Value"]).decode()


def test_no_room_in_the_kept_volumes_zone_fails_the_start_and_keeps_the_volume(
    harness: Harness, tenant: str, capacity: Capacity
) -> None:
    create_game(harness, "palworld")
    zone = _zones()[1]
    ec2 = container().client("ec2")
    kept = ec2.create_volume(AvailabilityZone=zone, Size=12)["VolumeId"]
    _set(tenant, "palworld", volume_id=kept, zone=zone)
    capacity.none_for(zone=zone)
    payload, _ = harness.command("start", game="palworld")
    pump_steps(lambda: game_row(tenant, "palworld").state is GameState.STOPPED)
    assert game_row(tenant, "palworld").resources.volume_id == kept  # the only copy of its newest data
    assert ec2.describe_volumes(VolumeIds=[kept])["Volumes"][0]["State"] == "available"
    assert f"in {zone} (where its unsaved disk is)" in _told(harness, payload)[-1]


def _image_of(arch: str) -> str:
    name = container().settings.image_parameter.replace("{arch}", arch)
    return str(container().client("ssm").get_parameter(Name=name)["Parameter"]["Value"])


def test_a_graviton_type_launches_with_the_arm64_image(harness: Harness, tenant: str) -> None:
    create_game(harness, "terraria")
    harness.component("games:set:terraria:type", ["t4g.medium"])
    start_until_running(harness, tenant, "terraria")
    instance = _instance(tenant, "terraria")
    assert (instance["InstanceType"], instance["ImageId"]) == ("t4g.medium", _image_of("arm64"))
    assert instance["Architecture"] == "arm64"


def test_a_fallback_of_the_other_architecture_boots_its_own_image(
    harness: Harness, tenant: str, capacity: Capacity
) -> None:
    create_game(harness, "satisfactory")
    harness.component("games:set:satisfactory:fallback", ["m7g.large"])
    capacity.none_for("t3.medium")
    start_until_running(harness, tenant, "satisfactory")
    instance = _instance(tenant, "satisfactory")
    assert (instance["InstanceType"], instance["ImageId"]) == ("m7g.large", _image_of("arm64"))

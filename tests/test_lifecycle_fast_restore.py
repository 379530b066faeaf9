"""Preload mode `fsr`: fast snapshot restore is on for the game's snapshot in the instance's zone only
while its volume is made, and never left on, whatever fails.

moto has no FSR API, so EBS's part is played by a fake at the botocore seam (the broker's client
hooks) that keeps FSR state per (snapshot, zone) and answers the three operations in EC2's real
response shapes; everything else is moto. The fake logs every call, CreateVolume included, in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from chalicelib.games import GameRecord, GameState
from chalicelib.lifecycle.preload import FSR_HOURLY_USD
from chalicelib.wiring import container
from tests.helpers import Harness
from tests.lifecycle_helpers import create_game, ec2_of, game_row, pump_steps, start_until_running
from tests.test_lifecycle_faults import _with_snapshot
from tests.test_lifecycle_faults import fail_ec2 as fail_ec2  # noqa: PLC0414 - re-exported fixture


@dataclass
class FakeFsr:
    """EBS fast snapshot restore: `enabling` → `optimizing` → `enabled` over describes; `disabled` after."""

    states: dict[tuple[str, str], str] = field(default_factory=dict)
    log: list[tuple[str, str, str]] = field(default_factory=list)
    refuse: bool = False
    deny_disable: bool = False

    def _ok(self, body: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        return AWSResponse("https://ec2", 200, {}, None), {  # type: ignore[arg-type]
            **body,
            "ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": "fake-fsr"},
        }

    def _item(self, snap: str, zone: str, state: str) -> dict[str, Any]:
        return {
            "SnapshotId": snap,
            "AvailabilityZone": zone,
            "State": state,
            "StateTransitionReason": "Client.UserInitiated",
            "OwnerId": "123456789012",
            "EnablingTime": datetime.now(UTC),
        }

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        body = params.get("body") or {}
        if model.name == "CreateVolume":
            self.log.append(("CreateVolume", str(body.get("SnapshotId")), str(body.get("AvailabilityZone"))))
            return None  # moto makes it
        if model.name == "EnableFastSnapshotRestores":
            key = (str(body["SourceSnapshotId.1"]), str(body["AvailabilityZone.1"]))
            self.log.append(("Enable", *key))
            if self.refuse:
                error = {"Code": "InvalidRequest", "Message": "the limit of 5 enabled snapshots is reached"}
                unsuccessful = [
                    {
                        "SnapshotId": key[0],
                        "FastSnapshotRestoreStateErrors": [{"AvailabilityZone": key[1], "Error": error}],
                    }
                ]
                return self._ok({"Successful": [], "Unsuccessful": unsuccessful})
            self.states[key] = "enabling"
            return self._ok({"Successful": [self._item(*key, "enabling")], "Unsuccessful": []})
        if model.name == "DescribeFastSnapshotRestores":
            filters = {
                body[k]: body[k.replace(".Name", ".Value.1")]
                for k in body
                if k.startswith("Filter.") and k.endswith(".Name")
            }
            key = (str(filters["snapshot-id"]), str(filters["availability-zone"]))
            self.log.append(("Describe", *key))
            state = self.states.get(key, "disabled")
            following = {"enabling": "optimizing", "optimizing": "enabled"}
            if state in following:
                self.states[key] = following[state]
            listed = [] if state == "disabled" else [self._item(*key, state)]
            return self._ok({"FastSnapshotRestores": listed})
        if model.name == "DisableFastSnapshotRestores":
            key = (str(body["SourceSnapshotId.1"]), str(body["AvailabilityZone.1"]))
            self.log.append(("Disable", *key))
            if self.deny_disable:
                error = {"Code": "UnauthorizedOperation", "Message": "injected: DisableFastSnapshotRestores"}
                return AWSResponse("https://ec2", 403, {}, None), {"Error": error}  # type: ignore[arg-type]
            self.states[key] = "disabled"
            return self._ok({"Successful": [self._item(*key, "disabling")], "Unsuccessful": []})
        return None

    def calls(self) -> list[str]:
        """The calls in order, repeated describes folded into one."""
        out: list[str] = []
        for name, *_ in self.log:
            if not out or out[-1] != name or name != "Describe":
                out.append(name)
        return out

    def left_on(self) -> list[tuple[str, str]]:
        return [k for k, s in self.states.items() if s != "disabled"]


@pytest.fixture
def fsr() -> Iterator[FakeFsr]:
    fake = FakeFsr()

    def hook(client: Any) -> None:
        client.meta.events.register("before-call.ec2", fake)

    container().broker.hooks.append(hook)
    yield fake
    container().broker.hooks.remove(hook)


def _fsr_game(harness: Harness, tenant: str, name: str) -> str:
    create_game(harness, name)
    snapshot = _with_snapshot(tenant, name)
    GameRecord.get(tenant, name).update(actions=[GameRecord.preload.set("fsr")])
    return snapshot


def test_fsr_is_on_only_while_the_volume_is_made_in_the_instances_zone(
    harness: Harness, tenant: str, fsr: FakeFsr
) -> None:
    snapshot = _fsr_game(harness, tenant, "valheim")
    payload = start_until_running(harness, tenant)
    game = game_row(tenant, "valheim")
    assert fsr.calls() == ["Enable", "Describe", "CreateVolume", "Disable"]
    assert {(s, z) for _, s, z in fsr.log} == {(snapshot, game.resources.zone)}  # one snapshot, one zone only
    assert sum(1 for name, *_ in fsr.log if name == "Describe") >= 3  # waited through enabling/optimizing
    assert fsr.left_on() == []
    volume = container().client("ec2").describe_volumes(VolumeIds=[game.resources.volume_id])["Volumes"][0]
    assert volume["SnapshotId"] == snapshot and volume["AvailabilityZone"] == game.resources.zone
    edits = [c["json"]["content"] for c in harness.calls_for(payload["token"])]
    assert any(f"about ${FSR_HOURLY_USD:.2f} an hour while on, at least one hour" in e for e in edits)
    assert any("with fast snapshot restore" in e for e in edits)


@pytest.mark.parametrize("operation", ["CreateVolume", "AttachVolume", "DescribeInstances"])
def test_a_failure_after_enabling_still_turns_fsr_off_and_leaves_nothing(
    harness: Harness, tenant: str, fsr: FakeFsr, fail_ec2: set[str], operation: str
) -> None:
    snapshot = _fsr_game(harness, tenant, "ark")
    fail_ec2.add(operation)
    payload, _ = harness.command("start", game="ark")
    pump_steps(lambda: game_row(tenant, "ark").state is GameState.STOPPED, timeout=60)
    assert "Enable" in fsr.calls() and fsr.calls()[-1] == "Disable"
    assert fsr.left_on() == []
    game = game_row(tenant, "ark")
    assert (game.resources.instance_id, game.resources.volume_id, game.resources.snapshot_id) == (None, None, snapshot)
    assert ec2_of(tenant, "ark").leftovers() == {"instances": [], "volumes": []}
    told = [c["json"]["content"] for c in harness.calls_for(payload["token"])][-1]
    assert "could not start" in told and "fast snapshot restore could not be turned off" not in told


def test_fsr_that_ebs_refuses_is_skipped_and_the_game_still_starts(
    harness: Harness, tenant: str, fsr: FakeFsr
) -> None:
    _fsr_game(harness, tenant, "rust")
    fsr.refuse = True
    payload = start_until_running(harness, tenant, "rust")
    assert fsr.calls() == ["Enable", "CreateVolume"] and fsr.left_on() == []
    edits = [c["json"]["content"] for c in harness.calls_for(payload["token"])]
    assert any(
        "the limit of 5 enabled snapshots" in e and "warms up as the game reads it" in e for e in edits
    )


def test_a_first_start_has_no_snapshot_so_no_fsr(harness: Harness, tenant: str, fsr: FakeFsr) -> None:
    create_game(harness, "fresh")
    GameRecord.get(tenant, "fresh").update(actions=[GameRecord.preload.set("fsr")])
    start_until_running(harness, tenant, "fresh")
    assert fsr.calls() == ["CreateVolume"]


def test_fsr_that_cannot_be_turned_off_is_said_with_its_cost(
    harness: Harness, tenant: str, fsr: FakeFsr
) -> None:
    snapshot = _fsr_game(harness, tenant, "mc")
    fsr.deny_disable = True
    payload, _ = harness.command("start", game="mc")
    pump_steps(lambda: game_row(tenant, "mc").state is GameState.STOPPED, timeout=90)
    zone = fsr.log[0][2]
    assert fsr.left_on() == [(snapshot, zone)]
    assert ec2_of(tenant, "mc").leftovers() == {"instances": [], "volumes": []}
    told = [c["json"]["content"] for c in harness.calls_for(payload["token"])][-1]
    assert f"fast snapshot restore could not be turned off for snapshot `{snapshot}` in {zone}" in told
    assert f"about ${FSR_HOURLY_USD:.2f} an hour until it is" in told


def test_newgame_offers_fsr_with_its_cost_and_read_and_saves_them(harness: Harness, tenant: str) -> None:
    create_game(harness, "choices")
    answer = harness.component("games:set:choices:preload", ["fsr"])
    assert "preloading: fast snapshot restore" in answer["data"]["content"]
    assert game_row(tenant, "choices").settings.preload == "fsr"
    preload = next(
        row["components"][0]
        for row in answer["data"]["components"]
        if row["components"][0]["custom_id"] == "games:set:choices:preload"
    )
    hints = {o["value"]: o.get("description", "") for o in preload["options"]}
    assert set(hints) == {"off", "rate", "fsr", "read"}
    assert f"~${FSR_HOURLY_USD:.2f} a start" in hints["fsr"] and "credit" in hints["fsr"]
    assert "before the game starts" in hints["read"]
    assert all(len(h) <= 100 for h in hints.values())  # Discord's limit for an option's description
    harness.component("games:set:choices:preload", ["read"])
    assert game_row(tenant, "choices").settings.preload == "read"
    answer = harness.component("games:set:choices:preload", ["fsr;drop"])
    assert (
        "isn't one gangway offers" in answer["data"]["content"] and game_row(tenant, "choices").settings.preload == "read"
    )

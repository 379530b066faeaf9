"""EC2 and EBS for one tenant's game, through the credentials broker's audited clients.

A thin typed gateway (lesson L10): it turns EC2's vocabulary into the few operations the lifecycle
needs, tags everything it creates for gangway (the customer role can only touch tagged resources),
and turns capacity errors into `CapacityError` so the workflow can try the next option.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from chalicelib.errors import Conflict, InfraError
from chalicelib.instances.aws_errors import error_code

__all__ = [
    "CAPACITY_ERRORS",
    "CapacityError",
    "Ec2Gateway",
    "FastRestoreRefused",
    "Launch",
    "Placement",
    "placements",
    "tags_for",
]

# EC2 error codes that mean "not here, not now": try another zone, type or market.
CAPACITY_ERRORS: Final = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "InsufficientFreeAddressesInSubnet",
        "Unsupported",
    }
)


class CapacityError(InfraError):
    """EC2 has no capacity for this launch option right now."""


class FastRestoreRefused(InfraError):
    """EBS would not turn fast snapshot restore on (or off) for this snapshot in this zone."""


def tags_for(tenant_id: str, game: str, role: str) -> list[dict[str, str]]:
    """The tags on everything gangway creates: who it belongs to, and what it is."""
    return [
        {"Key": "gangway", "Value": f"{tenant_id}/{game}"},
        {"Key": "gangway:tenant", "Value": tenant_id},
        {"Key": "gangway:game", "Value": game},
        {"Key": "gangway:role", "Value": role},
    ]


def _client_token(token: str) -> str:
    """EC2 takes at most 64 characters; a longer token keeps a digest of the rest, so two long tokens
    that differ only at the end (the option number) never collide."""
    if len(token) <= 64:
        return token
    return f"{token[:55]}-{hashlib.sha256(token.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Placement:
    """Where a launch may go: an availability zone and its instance type."""

    zone: str
    instance_type: str


def placements(instance_types: Sequence[str], zones: Sequence[str]) -> list[Placement]:
    """Every zone for the first type, then every zone for the next: the game's own type is preferred
    over any fallback type, and a zone out of room costs one more try, not the start."""
    return [Placement(zone, t) for t in dict.fromkeys(instance_types) for zone in zones]


@dataclass(frozen=True)
class Launch:
    """What was started."""

    instance_id: str
    zone: str
    instance_type: str
    spot: bool


class Ec2Gateway:
    """EC2/EBS operations for one tenant; `client` is an audited boto3 EC2 client."""

    def __init__(self, client: Any, *, tenant_id: str, game: str) -> None:
        self._ec2 = client
        self._tenant = tenant_id
        self._game = game

    def _tags(self, kind: str, role: str) -> list[dict[str, Any]]:
        return [{"ResourceType": kind, "Tags": tags_for(self._tenant, self._game, role)}]

    def zones(self) -> list[str]:
        answer = self._ec2.describe_availability_zones(Filters=[{"Name": "state", "Values": ["available"]}])
        return sorted(z["ZoneName"] for z in answer["AvailabilityZones"])

    def launch_zones(self) -> list[str]:
        """The available zones a launch can use: those with a default subnet (a launch names no subnet,
        so EC2 takes the zone's default one, and a zone without one fails outright); every available
        zone when the account has no default subnets at all."""
        zones = self.zones()
        answer = self._ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
        with_subnet = {str(net["AvailabilityZone"]) for net in answer["Subnets"]}
        return [z for z in zones if z in with_subnet] or zones

    def create_volume(
        self, *, zone: str, size_gb: int, snapshot_id: str | None, token: str, init_rate: int | None = None
    ) -> str:
        """A gp3 data volume, empty or from `snapshot_id`; `token` makes a retried call idempotent."""
        params: dict[str, Any] = {
            "AvailabilityZone": zone,
            "VolumeType": "gp3",
            "Size": size_gb,
            "ClientToken": _client_token(token),
            "TagSpecifications": self._tags("volume", "data"),
        }
        if snapshot_id:
            params["SnapshotId"] = snapshot_id
        if init_rate:
            params["VolumeInitializationRate"] = init_rate
        return str(self._ec2.create_volume(**params)["VolumeId"])

    def volume_size(self, volume_id: str) -> int | None:
        """The volume's size in GB (what EC2 reports, the target of a modification once it applies)."""
        volumes = self._ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
        return int(volumes[0]["Size"]) if volumes else None

    def grow_volume(self, volume_id: str, size_gb: int) -> None:
        """ModifyVolume to `size_gb` (online: the instance keeps running; the agent grows the filesystem).

        Raises:
            Conflict: EBS is still modifying this volume, or allows no new modification yet (once per 6 h).
        """
        try:
            self._ec2.modify_volume(VolumeId=volume_id, Size=size_gb)
        except Exception as exc:
            code = error_code(exc)
            if code == "IncorrectModificationState":
                raise Conflict(
                    "This game's disk is already being modified or optimised. Try again in a few hours."
                ) from exc
            if code == "VolumeModificationRateExceeded":
                raise Conflict(
                    "This game's disk was modified recently; AWS allows one change every 6 hours. "
                    "Try again later."
                ) from exc
            raise

    def volume_state(self, volume_id: str) -> str:
        volumes = self._ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
        return str(volumes[0]["State"]) if volumes else "deleted"

    def run(
        self,
        options: Sequence[Placement],
        *,
        spot: bool,
        user_data: str,
        token: str,
        images: Mapping[str, str],
        security_group_ids: Sequence[str] = (),
    ) -> Launch:
        """Launch in the first option with capacity; one-time Spot requests only, never persistent.

        `images` gives each option's instance type its machine image (instances/images.py resolves them
        per architecture: a fallback type may be Graviton where the game's own is x86).

        Raises:
            CapacityError: no option had capacity.
        """
        errors = []
        for n, option in enumerate(options):
            params: dict[str, Any] = {
                "ImageId": images[option.instance_type],
                "InstanceType": option.instance_type,
                "MinCount": 1,
                "MaxCount": 1,
                "Placement": {"AvailabilityZone": option.zone},
                # botocore base64-encodes RunInstances' UserData itself (handlers.base64_encode_user_data):
                # encoding it here too would hand cloud-init base64 text instead of the script.
                "UserData": user_data,
                "ClientToken": _client_token(f"{token}-{n}"),
                "TagSpecifications": self._tags("instance", "server"),
                # Hop limit 1: a token answer cannot cross one more hop (a container or a forwarder on the
                # instance), only the host's own processes get one; the firewall narrows those to the agent.
                "MetadataOptions": {
                    "HttpTokens": "required",
                    "HttpEndpoint": "enabled",
                    "HttpPutResponseHopLimit": 1,
                },
            }
            if security_group_ids:  # the game's own group (instances/security.py), else the VPC's default
                params["SecurityGroupIds"] = list(security_group_ids)
            if spot:
                params["InstanceMarketOptions"] = {
                    "MarketType": "spot",
                    "SpotOptions": {
                        "SpotInstanceType": "one-time",
                        "InstanceInterruptionBehavior": "terminate",
                    },
                }
            try:
                instance = self._ec2.run_instances(**params)["Instances"][0]
            except Exception as exc:
                if error_code(exc) in CAPACITY_ERRORS:
                    errors.append(f"{option.instance_type} in {option.zone}: {error_code(exc)}")
                    continue
                raise
            return Launch(str(instance["InstanceId"]), option.zone, option.instance_type, spot)
        market = "Spot" if spot else "on-demand"
        raise CapacityError(f"no {market} capacity: " + "; ".join(errors))

    def instance(self, instance_id: str) -> Mapping[str, Any] | None:
        reservations = self._ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        for reservation in reservations:
            for instance in reservation["Instances"]:
                return dict(instance)
        return None

    def attach(self, volume_id: str, instance_id: str) -> None:
        self._ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/sdf")

    def snapshot(self, volume_id: str, *, description: str, manual: bool = False) -> str:
        answer = self._ec2.create_snapshot(
            VolumeId=volume_id,
            Description=description[:255],
            TagSpecifications=self._tags("snapshot", "manual-backup" if manual else "data"),
        )
        return str(answer["SnapshotId"])

    def snapshot_state(self, snapshot_id: str) -> str:
        snaps = self._ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
        return str(snaps[0]["State"]) if snaps else "missing"

    def snapshots(self) -> list[Mapping[str, Any]]:
        """This game's snapshots, newest first (by tag: never another game's or another tenant's)."""
        answer = self._ec2.describe_snapshots(
            OwnerIds=["self"],
            Filters=[{"Name": "tag:gangway", "Values": [f"{self._tenant}/{self._game}"]}],
        )
        return sorted(answer["Snapshots"], key=lambda s: s["StartTime"], reverse=True)

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._ec2.delete_snapshot(SnapshotId=snapshot_id)

    def detach_and_delete_volume(self, volume_id: str) -> None:
        """Delete the volume (detaching first if needed); a volume already gone is fine."""
        try:
            state = self.volume_state(volume_id)
            if state == "in-use":
                self._ec2.detach_volume(VolumeId=volume_id, Force=True)
            self._ec2.delete_volume(VolumeId=volume_id)
        except Exception as exc:
            if error_code(exc) not in {"InvalidVolume.NotFound"}:
                raise

    def terminate(self, instance_id: str) -> None:
        """Terminate the instance; one already gone is fine."""
        try:
            self._ec2.terminate_instances(InstanceIds=[instance_id])
        except Exception as exc:
            if error_code(exc) not in {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"}:
                raise

    def leftovers(self) -> dict[str, list[str]]:
        """Instances (not terminated) and volumes of this game: for checks that nothing is orphaned."""
        tag = [{"Name": "tag:gangway", "Values": [f"{self._tenant}/{self._game}"]}]
        instances = [
            i["InstanceId"]
            for r in self._ec2.describe_instances(Filters=tag)["Reservations"]
            for i in r["Instances"]
            if i["State"]["Name"] not in ("terminated", "shutting-down")
        ]
        volumes = [v["VolumeId"] for v in self._ec2.describe_volumes(Filters=tag)["Volumes"]]
        return {"instances": instances, "volumes": volumes}

    # -- fast snapshot restore (EBS): a volume created while it is on is fully initialised at once ------

    def enable_fast_restore(self, snapshot_id: str, zone: str) -> str:
        """Turn fast snapshot restore on for `snapshot_id` in `zone`; returns its state (`enabling`…).

        It is billed per snapshot and zone for every hour it is on (at least one), so the caller must
        turn it off again (`disable_fast_restore`) once its volume exists.

        Raises:
            FastRestoreRefused: EBS refused (a limit on enabled snapshots, the snapshot's state).
        """
        answer = self._ec2.enable_fast_snapshot_restores(
            AvailabilityZones=[zone], SourceSnapshotIds=[snapshot_id]
        )
        for item in answer.get("Successful", []):
            if item.get("SnapshotId") == snapshot_id and item.get("AvailabilityZone") == zone:
                return str(item.get("State", "enabling"))
        raise FastRestoreRefused(_refusal(answer, "enable"))

    def fast_restore_state(self, snapshot_id: str, zone: str) -> str:
        """`enabling`, `optimizing`, `enabled`, `disabling` or `disabled` (also when EBS lists nothing)."""
        answer = self._ec2.describe_fast_snapshot_restores(
            Filters=[
                {"Name": "snapshot-id", "Values": [snapshot_id]},
                {"Name": "availability-zone", "Values": [zone]},
            ]
        )
        for item in answer.get("FastSnapshotRestores", []):
            if item.get("SnapshotId") == snapshot_id and item.get("AvailabilityZone") == zone:
                return str(item.get("State", "disabled"))
        return "disabled"

    def disable_fast_restore(self, snapshot_id: str, zone: str) -> None:
        """Turn fast snapshot restore off; already off (or the snapshot gone) is fine.

        Raises:
            FastRestoreRefused: EBS refused and it is still on (it keeps costing until it is off).
        """
        try:
            answer = self._ec2.disable_fast_snapshot_restores(
                AvailabilityZones=[zone], SourceSnapshotIds=[snapshot_id]
            )
        except Exception as exc:
            if error_code(exc) in {"InvalidSnapshot.NotFound"}:
                return
            raise
        if any(
            item.get("SnapshotId") == snapshot_id and item.get("AvailabilityZone") == zone
            for item in answer.get("Successful", [])
        ):
            return
        if self.fast_restore_state(snapshot_id, zone) in {"disabled", "disabling"}:
            return
        raise FastRestoreRefused(_refusal(answer, "disable"))


def _refusal(answer: Mapping[str, Any], action: str) -> str:
    """EBS's reasons from an (Enable|Disable)FastSnapshotRestores answer's `Unsuccessful` list."""
    reasons = [
        f"{e.get('AvailabilityZone', '?')}: {e.get('Error', {}).get('Code', '')} "
        f"{e.get('Error', {}).get('Message', '')}".strip()
        for item in answer.get("Unsuccessful", [])
        for e in item.get("FastSnapshotRestoreStateErrors", [])
    ]
    return f"EBS did not {action} fast snapshot restore: " + ("; ".join(reasons) or "no reason given")

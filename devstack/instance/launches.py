"""The emulator's EC2 instances of one game, made real: each one the emulator runs is booted here as a
Debian 12 container (devstack/instance/boot.py), once its data volume is attached, with that instance's
id, type, image and user data (as DescribeInstanceAttribute gives them) and the instance role's keys;
when the emulator's instance stops or terminates, the container gets EC2's power button and its
power-off is recorded. EBS for these disks: a powered-off instance's disk image is kept for each
snapshot of its volume, and a volume made from one boots with a copy. Each pass also brings the
stand-in broker's ACL to what IoT Core would allow (devstack/instance/iot_core.py).
"""

from __future__ import annotations

import base64
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from devstack.instance.boot import BootedInstance
from devstack.instance.firstboot import MQTT_TLS_PORT
from devstack.instance.imds import InstanceMetadata
from devstack.instance.iot import TlsBroker
from devstack.instance.iot_core import grants
from devstack.instance.rootfs import RootFs

__all__ = ["Launches", "Powered"]

log = logging.getLogger("gangway.instance")

_GONE: Final = frozenset({"stopping", "stopped", "shutting-down", "terminated"})
# Where the start workflow attaches the game's data volume (instances/ec2.py); Xen shows it as /dev/xvdf.
DATA_DEVICE: Final = "/dev/sdf"


@dataclass
class Powered:
    """One booted instance: its container and, once the emulator's instance went, how it powered off."""

    vm: BootedInstance
    volume_id: str
    off_at: float | None = None  # when it was off and taken down
    clean: bool | None = None  # powered off by itself after the power button (not killed)


@dataclass
class Launches:
    """Watches the emulator's instances tagged with `tenant` and `game` (`start()`, `stop()`)."""

    rootfs: RootFs
    ec2: Any
    iot: Any
    policy: str  # the stack's instance policy (instances/identity.py policy_name)
    broker: TlsBroker
    tenant: str
    game: str
    aws_url: str
    log_dir: Path
    # What the instance's units see (AWS_ENDPOINT_URL, GANGWAY_CA_URL) and what its DNS answers.
    environment: Mapping[str, str] = field(default_factory=dict)
    hosts: Mapping[str, str] = field(default_factory=dict)
    # The instance role's keys for an instance id (devstack.iam.instance_credentials), None: stand-ins.
    credentials: Callable[[str], dict[str, str] | None] = lambda _id: None
    # Run on each booted root before it boots (e.g. devstack/instance/aptrepo.py's install_into: the
    # instance's apt source is a local repository, as it has no internet here).
    prepare_root: Callable[[Path], None] | None = None
    # More ports on each instance's loopback → this machine's (e.g. a served apt repository).
    forward_ports: Mapping[int, int] = field(default_factory=dict)
    tick_s: float = 1.0
    instances: dict[str, Powered] = field(default_factory=dict)
    # Snapshot id → the disk image it holds: kept when the instance whose volume it is powers off, and
    # a volume made from it starts as a copy (EBS's snapshots and restores, for this game's disks).
    snapshots: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _allowed: dict[str, str] | None = None

    def start(self) -> Launches:
        self._thread = threading.Thread(target=self._loop, name="launches", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching and take every container down (powered off first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        for booted in self.instances.values():
            booted.vm.stop()

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; problems: {self.problems}")
            time.sleep(0.5)

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self._pass()
            except Exception as exc:  # the emulator stopping; said in `problems`, tried again next pass
                log.exception("launches: pass failed")
                self.problems.append(f"{type(exc).__name__}: {exc}")

    def _pass(self) -> None:
        allowed = grants(self.iot, self.policy)
        if allowed != self._allowed:
            self.broker.authorize(allowed)
            self._allowed = allowed
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": "tag:gangway:tenant", "Values": [self.tenant]},
                {"Name": "tag:gangway:game", "Values": [self.game]},
            ]
        )
        for page in pages:
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    self._follow(instance)

    def _follow(self, instance: Mapping[str, Any]) -> None:
        instance_id, state = str(instance["InstanceId"]), str(instance["State"]["Name"])
        booted = self.instances.get(instance_id)
        new = booted is None and instance_id not in self.failed and not self._stop.is_set()
        if new and state == "running":
            volume = self._data_volume(instance_id)
            if volume is None:  # booted with its data disk (in EC2 attached just after the launch)
                return
            try:
                self.instances[instance_id] = Powered(self._boot(instance, volume), str(volume["VolumeId"]))
            except Exception as exc:  # once: an instance that does not boot is not tried again
                self.failed.add(instance_id)
                self.problems.append(f"{instance_id} did not boot: {exc}")
        elif booted is not None and state in _GONE and booted.off_at is None:
            booted.clean = booted.vm.poweroff(timeout=90)
            self._keep_snapshots(booted)
            booted.vm.stop()  # the namespace, disk and mounts: nothing left behind
            booted.off_at = time.time()

    def _data_volume(self, instance_id: str) -> Mapping[str, Any] | None:
        volumes = self.ec2.describe_volumes(
            Filters=[
                {"Name": "attachment.instance-id", "Values": [instance_id]},
                {"Name": "attachment.device", "Values": [DATA_DEVICE]},
            ]
        )["Volumes"]
        return volumes[0] if volumes else None

    def _keep_snapshots(self, booted: Powered) -> None:
        """The disk as it is once the instance is off, for each snapshot of its volume: the game was
        stopped and its files flushed before the stop workflow took them, so nothing after differs."""
        taken = self.ec2.describe_snapshots(
            OwnerIds=["self"], Filters=[{"Name": "volume-id", "Values": [booted.volume_id]}]
        )["Snapshots"]
        for snap in taken:
            if snap["SnapshotId"] not in self.snapshots:
                image = self.log_dir / f"{snap['SnapshotId']}.img"
                subprocess.run(
                    ["cp", "--sparse=always", str(booted.vm.disk_file), str(image)], check=True, timeout=120
                )
                self.snapshots[str(snap["SnapshotId"])] = image

    def _boot(self, instance: Mapping[str, Any], volume: Mapping[str, Any]) -> BootedInstance:
        instance_id = str(instance["InstanceId"])
        answer = self.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        user_data = base64.b64decode(answer.get("UserData", {}).get("Value", "")).decode()
        zone = str(instance.get("Placement", {}).get("AvailabilityZone", ""))
        metadata = InstanceMetadata(
            instance_id,
            zone[:-1] if zone else self.ec2.meta.region_name,
            user_data,
            instance_type=str(instance.get("InstanceType", "t3.medium")),
            image_id=str(instance.get("ImageId", "")),
        )
        keys = self.credentials(instance_id)
        if keys is not None:
            metadata.credentials = dict(keys)
        aws_port = int(self.aws_url.rsplit(":", 1)[1])
        vm = BootedInstance(
            self.rootfs,
            metadata,
            forward_ports={aws_port: aws_port, MQTT_TLS_PORT: self.broker.tls_port, **self.forward_ports},
            environment={"AWS_ENDPOINT_URL": self.aws_url, **self.environment},
            hosts=self.hosts,
            log_path=self.log_dir / f"{instance_id}.log",
            disk_image=self.snapshots.get(str(volume.get("SnapshotId") or "")),
            disk_mb=int(volume.get("Size") or 1) * 1024,  # the volume's GiB (a sparse file)
            prepare_root=self.prepare_root,
        )
        return vm.start()

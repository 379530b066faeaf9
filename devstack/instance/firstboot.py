"""A gangway game instance's first boot on this machine, wired as StartGame wires one in AWS: the real
user data (lifecycle/bootstrap.py) served by the metadata stand-in, the agent's wheelhouse behind a
presigned URL of the emulator's S3, the instance's IoT identity in the emulator's SSM under the
instance's id, and IoT Core played by an mTLS Mosquitto (devstack/instance/iot.py). Used by the booted
tests and by `make bench` (bench/first_boot.py)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from chalicelib.instances import AgentInstall
from chalicelib.lifecycle.bootstrap import Bootstrap, render
from devstack.instance.boot import BootedInstance
from devstack.instance.imds import InstanceMetadata
from devstack.instance.iot import Pki, TlsBroker
from devstack.instance.rootfs import RootFs

__all__ = ["MQTT_TLS_PORT", "GameInstance", "Idle", "phases", "prepare"]

# The port agent.toml names for IoT Core (lifecycle/bootstrap.py); forwarded to the stand-in broker's.
MQTT_TLS_PORT: Final = 8883
# "gangway phase: <name> <epoch seconds>": the user data marks where each step of the first boot starts.
_PHASE: Final = re.compile(r"^gangway phase: (\S+) (\d+\.\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class Idle:
    """The agent's idle shutdown as the user data sets it (seconds; Bootstrap's defaults): a test makes
    it short to see an idle game shut down within the module's one boot."""

    warn_s: int = 1200
    stop_s: int = 1800
    grace_s: int = 600
    check_s: int = 60


@dataclass(frozen=True)
class GameInstance:
    """A prepared (not yet started) booted instance and the user data it will run."""

    vm: BootedInstance
    boot: Bootstrap


def _presigned(s3: Any, bucket: str, key: str, body: bytes) -> str:
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    url: str = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)
    return url


def prepare(
    rootfs: RootFs,
    *,
    instance_id: str,
    tenant: str,
    game: str,
    stage: str,
    region: str,
    aws_url: str,
    s3: Any,
    ssm: Any,
    bucket: str,
    wheelhouse: tuple[bytes, str],
    pki: Pki,
    broker: TlsBroker,
    tcp_ports: tuple[int, ...] = (),
    disk_files: Path | None = None,
    disk_image: Path | None = None,
    log_path: Path | None = None,
    credentials: dict[str, str] | None = None,
    idle: Idle = Idle(),
) -> GameInstance:
    """Everything in place for the instance's first boot; `vm.start()` boots it.

    `s3` and `ssm` play what StartGame does (the admin's clients under enforcement); `credentials` are
    the instance role's keys the metadata service hands out (devstack.iam.instance_credentials when the
    emulator enforces IAM; None: stand-in keys an unenforced emulator takes)."""
    archive, requirements = wheelhouse
    sha = hashlib.sha256(archive).hexdigest()
    agent = AgentInstall(_presigned(s3, bucket, f"booted/{sha}.tar", archive), sha, requirements)
    # Amazon's CA is a public file; this bucket is not, so a presigned URL serves the test CA.
    ca_url = _presigned(s3, bucket, "booted/AmazonRootCA1.pem", pki.ca)
    boot = Bootstrap(
        tenant_id=tenant,
        game=game,
        iot_endpoint="127.0.0.1",
        client_id=f"gangway-{stage}-{tenant}-{game}",
        parameter_prefix=f"/gangway/{stage}/{tenant}/{game}",
        agent=agent,
        tcp_ports=tcp_ports,
        disk_wait_s=30,
        identity_wait_s=60,
        idle_warn_s=idle.warn_s,
        idle_stop_s=idle.stop_s,
        startup_grace_s=idle.grace_s,
        idle_check_s=idle.check_s,
    )
    cert, key = pki.client(f"{tenant}/{game}")
    for name, value in (("certificate", cert), ("private-key", key)):
        ssm.put_parameter(
            Name=f"{boot.parameter_prefix}/{instance_id}/{name}",
            Value=value,
            Type="SecureString",
            Overwrite=True,
        )
    aws_port = int(aws_url.rsplit(":", 1)[1])
    metadata = InstanceMetadata(instance_id, region, render(boot))
    if credentials is not None:
        metadata.credentials = dict(credentials)
    vm = BootedInstance(
        rootfs,
        metadata,
        forward_ports={aws_port: aws_port, MQTT_TLS_PORT: broker.tls_port},
        # What DNS and Amazon's CA site are on an instance: here the emulator, and this test CA.
        environment={"AWS_ENDPOINT_URL": aws_url, "GANGWAY_CA_URL": ca_url},
        disk_files=disk_files,
        disk_image=disk_image,
        log_path=log_path,
    )
    return GameInstance(vm, boot)


def phases(bootstrap_log: str) -> list[tuple[str, float]]:
    """The user data's phase marks, in order: (name, epoch seconds it began)."""
    return [(name, float(at)) for name, at in _PHASE.findall(bootstrap_log)]

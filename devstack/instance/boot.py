"""One booted Debian 12 instance: the cached root file system under an overlay, a loop-backed data disk
(the EBS volume, seen as /dev/xvdf as on a Xen instance), its own network namespace with the metadata
stand-in, and systemd as PID 1 (`systemd-nspawn --boot`). At first boot a `cloud-final.service` stand-in
fetches the user data from the metadata service and runs it, as cloud-init does. `stop()` (or the
container powering itself off) leaves nothing behind: no mount, loop device, namespace, veth or process.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from devstack.instance.imds import IMDS_PORT, InstanceMetadata, MetadataServer
from devstack.instance.netns import IMDS_ADDRESS, Forwarder, Netns
from devstack.instance.rootfs import RootFs

__all__ = ["CLOUD_FINAL", "USER_DATA_DONE", "BootedInstance"]

_COUNTER = itertools.count()
USER_DATA_DONE: Final = "/var/lib/cloud/instance/boot-finished"

# cloud-init's last stage, as far as gangway's user data needs it: fetch it (IMDSv2) and run it once.
_RUNNER: Final = f"""#!/bin/bash
set -eu
[ -e {USER_DATA_DONE} ] && exit 0
mkdir -p /var/lib/cloud/instance
token=$(curl -sfS --retry 10 --retry-connrefused -X PUT http://{IMDS_ADDRESS}/latest/api/token \\
  -H "X-aws-ec2-metadata-token-ttl-seconds: 60")
curl -sfS --retry 10 -H "X-aws-ec2-metadata-token: $token" http://{IMDS_ADDRESS}/latest/user-data \\
  -o /var/lib/cloud/instance/user-data.txt
chmod 700 /var/lib/cloud/instance/user-data.txt
rc=0
/var/lib/cloud/instance/user-data.txt || rc=$?
echo "cloud-final: user data exit $rc"
date +%s > {USER_DATA_DONE}
exit $rc
"""
CLOUD_FINAL: Final = """[Unit]
Description=Cloud-init stand-in: run the instance's user data at first boot
Wants=network-online.target
After=network-online.target multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/lib/gangway-cloud-final
RemainAfterExit=yes
TimeoutStartSec=0
StandardOutput=journal+console
[Install]
WantedBy=cloud-init.target
"""
# The AWS endpoints of this stand-in world (the local emulator through the namespace's loopback): what
# DNS would resolve on an instance, given to every unit; the code that runs in AWS reads nothing else.
_ENV_CONF: Final = "[Manager]\nDefaultEnvironment={env}\n"


def _run(cmd: Sequence[str], *, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(cmd), capture_output=True, text=True, check=False, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}: {done.stderr.strip() or done.stdout.strip()}")
    return done


class BootedInstance:
    """Boot with `start()`, run commands inside with `exec()`, end with `stop()` (or as a context)."""

    def __init__(
        self,
        rootfs: RootFs,
        metadata: InstanceMetadata,
        *,
        forward_ports: Mapping[int, int] | None = None,
        environment: dict[str, str] | None = None,
        disk_mb: int = 256,
        disk_files: Path | None = None,
        log_path: Path | None = None,
        hosts: Mapping[str, str] | None = None,
        disk_image: Path | None = None,
        prepare_root: Callable[[Path], None] | None = None,
    ) -> None:
        n = next(_COUNTER)
        self.name = f"gw{os.getpid()}x{n}"  # ≤15 characters: it names the host's veth too
        self.rootfs = rootfs
        self.metadata = metadata
        # Port on the instance's loopback → port on this machine's (the local stack's services).
        self._forward_ports = dict(forward_ports or {})
        self._environment = dict(environment or {})
        self._disk_mb = disk_mb
        # A data disk restored from a snapshot: ext4 holding this folder's files; None: a blank volume.
        self._disk_files = disk_files
        # A data disk restored from a snapshot kept as a disk image (devstack/instance/launches.py).
        self._disk_image = disk_image
        # Host name → address: what DNS answers inside (IoT Core's endpoint is the stand-in broker's).
        self._hosts = dict(hosts or {})
        # What this world gives the root file system before it boots (a local apt source: no internet).
        self._prepare_root = prepare_root
        self.work = Path(tempfile.mkdtemp(prefix=f"gangway-{self.name}-", dir="/var/tmp"))
        self.root = self.work / "root"
        self.disk_file = self.work / "disk.img"
        self.log_path = log_path or self.work / "console.log"
        self.net = Netns(f"gangway-{self.name}", f"{self.name}h")
        self.loop = ""
        self.imds: MetadataServer | None = None
        self._forwarders: list[Forwarder] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._mounted = False

    def __enter__(self) -> BootedInstance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- boot ------------------------------------------------------------------------------------------
    def start(self, *, timeout: float = 60) -> BootedInstance:
        """Boot and wait until systemd inside has reached multi-user.target (the user data may still run)."""
        try:
            self._prepare()
            log = self.log_path.open("ab")
            self._proc = subprocess.Popen(
                [
                    "systemd-nspawn",
                    "--quiet",
                    "--register=no",
                    "--keep-unit",
                    "--boot",
                    "--console=pipe",
                    f"--directory={self.root}",
                    f"--machine={self.name}",
                    f"--hostname={self.metadata.instance_id}",
                    f"--network-namespace-path=/run/netns/{self.net.name}",
                    f"--bind={self.loop}:/dev/xvdf",
                    # What EC2's cloud image does at boot that a container's PID 1 does not ask for.
                    "--capability=CAP_NET_ADMIN",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            self._wait_booted(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare(self) -> None:
        for sub in ("upper", "work", "root"):
            (self.work / sub).mkdir()
        _run(
            [
                "mount", "-t", "overlay", "overlay", "-o",
                f"lowerdir={self.rootfs.path},upperdir={self.work / 'upper'},workdir={self.work / 'work'}",
                str(self.root),
            ]
        )  # fmt: skip
        self._mounted = True
        self._install_cloud_final()
        if self._prepare_root is not None:
            self._prepare_root(self.root)
        if self._disk_image is not None:
            _run(["cp", "--sparse=always", str(self._disk_image), str(self.disk_file)])
        else:
            with self.disk_file.open("wb") as fh:
                fh.truncate(self._disk_mb * 1024 * 1024)  # sparse, blank: a new game's first volume
        if self._disk_files is not None:
            _run(["mkfs.ext4", "-q", "-L", "gangway-data", "-d", str(self._disk_files), str(self.disk_file)])
        self.loop = _run(["losetup", "--find", "--show", str(self.disk_file)]).stdout.strip()
        self.net.create()
        self.imds = MetadataServer(self.net.listen(IMDS_ADDRESS, IMDS_PORT), self.metadata).start()
        for inside, here in self._forward_ports.items():
            self._forwarders.append(Forwarder(self.net.listen("127.0.0.1", inside), ("127.0.0.1", here)))

    def _install_cloud_final(self) -> None:
        runner = self.root / "usr/local/lib/gangway-cloud-final"
        runner.parent.mkdir(parents=True, exist_ok=True)
        runner.write_text(_RUNNER)
        runner.chmod(0o755)
        systemd = self.root / "etc/systemd/system"
        (systemd / "cloud-final.service").write_text(CLOUD_FINAL)
        wants = systemd / "multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "cloud-final.service").symlink_to("/etc/systemd/system/cloud-final.service")
        if self._environment:
            conf = self.root / "etc/systemd/system.conf.d"
            conf.mkdir(parents=True, exist_ok=True)
            # systemd expands % specifiers here: a presigned URL's %2F must stay as it is.
            env = " ".join(f'"{k}={v}"'.replace("%", "%%") for k, v in sorted(self._environment.items()))
            (conf / "gangway-endpoints.conf").write_text(_ENV_CONF.format(env=env))
        # No machine id in the cache: this boot makes its own, as a fresh instance does.
        (self.root / "etc/machine-id").write_text("")
        (self.root / "etc/hostname").write_text(self.metadata.instance_id + "\n")
        if self._hosts:
            hosts = self.root / "etc/hosts"
            known = hosts.read_text() if hosts.exists() else ""
            hosts.write_text(known + "".join(f"{ip} {name}\n" for name, ip in sorted(self._hosts.items())))

    def _wait_booted(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"the instance stopped while booting; see {self.log_path}")
            if self.leader() is not None:
                state = self.exec(["systemctl", "is-active", "multi-user.target"], check=False, timeout=10)
                if state.stdout.strip() == "active":
                    return
            time.sleep(0.5)
        raise RuntimeError(f"the instance did not finish booting in {timeout:.0f}s; see {self.log_path}")

    # -- inside --------------------------------------------------------------------------------------
    def leader(self) -> int | None:
        """The container's PID 1 as this machine numbers it (nspawn's child), once it exists."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        kids = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children")
        with contextlib.suppress(OSError):
            for pid in kids.read_text().split():
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
        return None

    def exec(
        self,
        cmd: Sequence[str],
        *,
        user: str | None = None,
        check: bool = True,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`cmd` inside the instance (all its namespaces), as root or as `user` (with that user's groups)."""
        pid = self.leader()
        if pid is None:
            raise RuntimeError("the instance is not running")
        inner = ["runuser", "-u", user, "--", *cmd] if user else list(cmd)
        done = subprocess.run(
            ["nsenter", f"--target={pid}", "--all", "--", "/usr/bin/env", "-i",
             "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *inner],
            capture_output=True, text=True, check=False, timeout=timeout, input=input,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} in the instance: exit {done.returncode}: {done.stderr.strip()}"
            )
        return done

    def wait_user_data(self, timeout: float = 300) -> str:
        """Wait for the first-boot run of the user data; its log (the bootstrap log) whatever the outcome."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exec(["test", "-e", USER_DATA_DONE], check=False).returncode == 0:
                break
            if self.leader() is None:
                break
            time.sleep(1)
        else:
            raise RuntimeError(f"the user data did not finish in {timeout:.0f}s; see {self.log_path}")
        return (self.root / "var/log/gangway-bootstrap.log").read_text(errors="replace")

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_stopped(self, timeout: float) -> bool:
        """True once the container has powered off (nspawn exits when its PID 1 does)."""
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    # -- stop --------------------------------------------------------------------------------------------
    def poweroff(self, timeout: float) -> bool:
        """What EC2 does to an instance it stops or terminates (an ACPI power button): SIGRTMIN+4 to its
        systemd, which shuts down cleanly; True once it has powered off within `timeout`."""
        pid = self.leader()
        if self._proc is None or self._proc.poll() is not None:
            return True
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGRTMIN + 4)  # systemd: poweroff
        return self.wait_stopped(timeout)

    def stop(self, *, timeout: float = 30) -> None:
        """Power off (SIGRTMIN+4 to its systemd), kill after `timeout`, then take everything down."""
        proc = self._proc
        if proc is not None and not self.poweroff(timeout):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self._proc = None
        for forwarder in self._forwarders:
            forwarder.close()
        self._forwarders.clear()
        if self.imds is not None:
            self.imds.close()
            self.imds = None
        self.net.delete()
        if self._mounted:
            _run(["umount", str(self.root)], check=False)
            self._mounted = False
        if self.loop:
            _run(["losetup", "--detach", self.loop], check=False)
            self.loop = ""
        shutil.rmtree(self.work, ignore_errors=True)

"""`gangway instance boot`: a booted Debian 12 instance for a person to look at (and what it ran)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Final

from devstack.instance.boot import BootedInstance
from devstack.instance.imds import InstanceMetadata
from devstack.instance.rootfs import build_rootfs

__all__ = ["HELLO", "boot"]

# The user data when none is given: shows the first boot ran it, as root, with the metadata service.
HELLO: Final = """#!/bin/bash
mkdir -p /var/log && exec > /var/log/gangway-bootstrap.log 2>&1
echo "user data ran as $(id -un) on $(hostname) at $(date -u)"
"""


def boot(user_data: Path | None, *, instance_id: str, region: str, forward: dict[int, int]) -> int:
    """Build or reuse the root file system, boot, run the user data, print how to look inside; stop on
    Ctrl-C (or when the instance powers itself off), leaving nothing behind."""
    script = user_data.read_text() if user_data else HELLO
    print("root file system: building or reusing (the first build takes a few minutes)…", flush=True)
    rootfs = build_rootfs()
    print(f"root file system: {rootfs.path}", flush=True)
    vm = BootedInstance(rootfs, InstanceMetadata(instance_id, region, script), forward_ports=forward)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        vm.start()
        leader = vm.leader()
        print(f"booted: {vm.name}, address {vm.net.guest_ip} (this machine: {vm.net.host_ip})")
        print(f"  a shell inside: nsenter --target={leader} --all /bin/bash")
        print(f"  console: {vm.log_path}")
        log = vm.wait_user_data()
        print("user data finished; its log:\n" + log, flush=True)
        print("Ctrl-C powers it off and removes everything it made", flush=True)
        while vm.running() and not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"the instance failed: {exc}", file=sys.stderr)
        return 1
    finally:
        vm.stop()
        print("stopped; nothing left behind", flush=True)
    return 0

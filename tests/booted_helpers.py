"""What the booted-instance tests share: the skip-or-fail rule for booting here, and the agent's real
wheelhouse (deploy/wheelhouse.py, as `make deploy` builds it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from deploy.wheelhouse import Wheelhouse

__all__ = ["TOOLS", "require_booting", "wheelhouse"]

TOOLS: Final = (
    "debootstrap", "systemd-nspawn", "nsenter", "losetup", "ip", "mosquitto", "mkfs.ext4", "debugfs"
)


def wheelhouse() -> Wheelhouse:
    """The wheelhouse the deployment publishes (skipped where it cannot be built for Debian 12)."""
    from deploy.wheelhouse import build

    if (sys.version_info[:2], os.uname().machine) != ((3, 11), "x86_64"):
        pytest.skip(
            "the wheelhouse holds CPython 3.11 wheels (Debian 12's) and this machine is not x86_64 3.11"
        )
    try:
        return build(say=lambda _: None)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot build the agent's wheelhouse here (no package index?): {exc}")


def require_booting() -> None:
    """Skip (not root, or a tool missing) with the reason; under CI=true a missing tool fails."""
    if os.geteuid() != 0:
        pytest.skip("booting an instance needs root (systemd-nspawn, loop devices, network namespaces)")
    missing = [t for t in TOOLS if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]
    if missing:
        message = f"not installed: {', '.join(missing)} (make system-deps installs them as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)

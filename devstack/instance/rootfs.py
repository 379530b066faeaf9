"""The cached Debian 12 root file system the booted instances start from.

Built once with `debootstrap --variant=minbase bookworm` from the archive this machine's apt uses, plus
the init system and what the user data would otherwise install at first boot (it installs only what is
missing, so a cloud image that has them skips the archive too). It lives outside the clone
(`/var/cache/gangway/rootfs-bookworm-<hash of the package list>`): a few minutes to build, reused by
every boot after. Built in a temporary folder beside it and renamed into place, so a half-built tree is
never taken for the cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["CACHE_DIR", "PACKAGES", "RootFs", "archive_url", "build_rootfs", "cache_path"]

CACHE_DIR: Final = Path(os.environ.get("GANGWAY_ROOTFS_CACHE", "/var/cache/gangway"))
SUITE: Final = "bookworm"
# The init system a booted container needs, then what the user data installs (lifecycle/templates/
# user-data.sh, step 1) and the tools its disk step uses: a Debian cloud image has most of these.
PACKAGES: Final = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3-venv",
    "nftables",
    "openssh-server",
    "conntrack",
    "curl",
    "ca-certificates",
    "e2fsprogs",
    "iproute2",
)
_DEFAULT_ARCHIVE: Final = "http://deb.debian.org/debian"
_URIS: Final = re.compile(r"^URIs:\s*(\S+)", re.MULTILINE)
_DEB_LINE: Final = re.compile(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", re.MULTILINE)


@dataclass(frozen=True)
class RootFs:
    """A built root file system: where it is and what it holds."""

    path: Path
    packages: tuple[str, ...]


def archive_url(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive this machine's apt reaches (its first non-security source), else Debian's."""
    files = [
        *sorted(apt_dir.glob("sources.list.d/*.sources")),
        apt_dir / "sources.list",
        *sorted(apt_dir.glob("sources.list.d/*.list")),
    ]
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text(errors="replace")
        urls: list[str] = [*_URIS.findall(text), *_DEB_LINE.findall(text)]
        for url in urls:
            if "security" not in url:
                return url.rstrip("/")
    return _DEFAULT_ARCHIVE


def cache_path(packages: tuple[str, ...] = PACKAGES, cache: Path = CACHE_DIR) -> Path:
    digest = hashlib.sha256("\n".join((SUITE, *sorted(packages))).encode()).hexdigest()[:12]
    return cache / f"rootfs-{SUITE}-{digest}"


def _run(cmd: list[str], log: Path) -> None:
    with log.open("ab") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} … failed (exit {done.returncode}); see {log}")


def build_rootfs(packages: tuple[str, ...] = PACKAGES, cache: Path = CACHE_DIR) -> RootFs:
    """The cached root file system for `packages`, built first if missing (needs root and debootstrap).

    Raises:
        RuntimeError: not root, debootstrap missing, or the build failed (the log says where).
    """
    target = cache_path(packages, cache)
    if (target / "etc" / "os-release").exists():
        return RootFs(target, packages)
    if os.geteuid() != 0:
        raise RuntimeError("building the instance's root file system needs root")
    for tool in ("debootstrap", "systemd-nspawn"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed: run `make system-deps` as root")
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{target.name}.building-", dir=cache))
    log = cache / f"{target.name}.log"
    try:
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                SUITE,
                str(work),
                archive_url(),
            ],
            log,
        )
        # No machine id: each boot makes its own, as a fresh cloud image does.
        (work / "etc" / "machine-id").write_text("")
        _run(["chroot", str(work), "apt-get", "clean"], log)
        work.rename(target)  # atomic: a concurrent build that finished first wins, this one is dropped
    except OSError:
        if not (target / "etc" / "os-release").exists():
            raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return RootFs(target, packages)

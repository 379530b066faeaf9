"""The data volume: usage for status, growing it after an EBS resize, and preloading it.

A volume made from a snapshot fetches each block from S3 on first touch; reading every block
once ("preload") moves that cost to before players arrive. Growing runs ``growpart`` (only when
the filesystem sits on a partition) then ``resize2fs`` or ``xfs_growfs``.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .errors import CommandFailed, ErrorCode, RequestFailed
from .seams import Runner

_LSBLK: Final = ("lsblk", "--json", "--bytes", "--output", "NAME,PATH,PKNAME,TYPE,MOUNTPOINT,FSTYPE,SIZE")
_PART_NUMBER: Final = re.compile(r"(\d+)$")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Usage:
    total_bytes: int
    used_bytes: int
    free_bytes: int


def usage(path: Path) -> Usage | None:
    """Filesystem usage of ``path``, or None when it is not there (yet)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    return Usage(total, total - st.f_bfree * st.f_frsize, free)


def _flatten(devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for dev in devices:
        out.append(dev)
        out.extend(_flatten(dev.get("children") or []))
    return out


def _find(runner: Runner, mountpoint: Path, device: Path | None) -> dict[str, Any]:
    data = json.loads(runner.run(_LSBLK, timeout=10).stdout)
    for dev in _flatten(data.get("blockdevices", [])):
        by_path = device is not None and dev.get("path") == str(device)
        if by_path or dev.get("mountpoint") == str(mountpoint):
            return dev
    raise RequestFailed(f"no block device mounted at {mountpoint}", ErrorCode.UNAVAILABLE)


def extend(runner: Runner, mountpoint: Path, device: Path | None = None) -> dict[str, Any]:
    """Grow the partition (if any) and the filesystem to fill the volume. Raises RequestFailed."""
    dev = _find(runner, mountpoint, device)
    before = int(dev.get("size") or 0)
    path = str(dev["path"])
    partition: int | None = None
    if dev.get("type") == "part":
        match = _PART_NUMBER.search(str(dev["name"]))
        if not match or not dev.get("pkname"):
            raise RequestFailed(f"cannot tell the disk and partition number of {path}")
        partition = int(match.group(1))
        grown = runner.run(["growpart", f"/dev/{dev['pkname']}", str(partition)], timeout=30, check=False)
        # growpart exits 1 with "NOCHANGE" when the partition already fills the disk.
        if grown.returncode != 0 and "NOCHANGE" not in grown.stdout:
            raise CommandFailed(grown.argv, grown.returncode, grown.stderr or grown.stdout)
    fstype = dev.get("fstype")
    if fstype in ("ext2", "ext3", "ext4"):
        runner.run(["resize2fs", path], timeout=300)
    elif fstype == "xfs":
        runner.run(["xfs_growfs", str(dev.get("mountpoint") or mountpoint)], timeout=300)
    else:
        raise RequestFailed(f"cannot grow a {fstype or 'unknown'} filesystem", ErrorCode.UNAVAILABLE)
    after = int(_find(runner, mountpoint, device).get("size") or 0)
    return {"device": path, "partition": partition, "filesystem": fstype,
            "size_before_bytes": before, "size_after_bytes": after}


def data_device(runner: Runner, mountpoint: Path, device: Path | None) -> Path:
    """The configured data device, else the one mounted at the data mountpoint."""
    if device is not None:
        return device
    return Path(str(_find(runner, mountpoint, None)["path"]))


def preload(
    path: Path, *, block_size: int, progress: Progress, every_s: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[int, float]:
    """Read every block of ``path`` once; returns (bytes read, seconds). Raises RequestFailed."""
    start = clock()
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise RequestFailed(f"cannot open {path}: {exc.strerror}") from exc
    try:
        total = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, 0, os.SEEK_SET)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        done, last = 0, clock()
        progress(0, total)
        while chunk := os.read(fd, block_size):
            done += len(chunk)
            if clock() - last >= every_s:
                progress(done, total)
                last = clock()
        progress(done, total)
    except OSError as exc:
        raise RequestFailed(f"reading {path} failed at byte {done}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return done, clock() - start

"""The package names in Debian bookworm's main archive, for the catalogue's schema test.

Read from the archive's own `Packages.xz` index (the mirror debootstrap uses: devstack/instance/
rootfs.py), cached in the project's cache dir outside the clone and fetched again at most once a day.
A fetch that fails falls back to an older cached copy (not under CI=true: `strict`); with none, the
caller decides (a failure under CI=true, a skip elsewhere).
"""

from __future__ import annotations

import lzma
import os
import re
import time
import urllib.request
from pathlib import Path
from typing import Final

from devstack.instance.rootfs import CACHE_DIR, SUITE, archive_url

__all__ = ["IndexUnavailable", "package_names"]

MAX_AGE_S: Final = 24 * 3600
_PACKAGE: Final = re.compile(rb"^Package: (\S+)$", re.MULTILINE)


class IndexUnavailable(RuntimeError):
    """The index could not be fetched and no cached copy exists."""


def _path(arch: str, cache: Path) -> Path:
    return cache / f"debian-{SUITE}-main-{arch}-Packages.xz"


def _fetch(arch: str, target: Path) -> None:
    url = f"{archive_url()}/dists/{SUITE}/main/binary-{arch}/Packages.xz"
    with urllib.request.urlopen(url, timeout=60) as got:
        data = got.read()
    lzma.decompress(data)  # a truncated download is not a cache
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)


def package_names(arch: str = "amd64", cache: Path = CACHE_DIR, *, strict: bool = False) -> frozenset[str]:
    """Every binary package name of bookworm main for `arch`.

    Raises:
        IndexUnavailable: no fresh fetch and no cached copy (or, `strict`, a due fetch failed at all).
    """
    path = _path(arch, cache)
    stale = not path.exists() or time.time() - path.stat().st_mtime > MAX_AGE_S
    if stale:
        try:
            _fetch(arch, path)
        except (OSError, lzma.LZMAError) as exc:
            if strict or not path.exists():
                raise IndexUnavailable(f"bookworm's {arch} index could not be fetched: {exc}") from exc
    return frozenset(m.decode() for m in _PACKAGE.findall(lzma.decompress(path.read_bytes())))

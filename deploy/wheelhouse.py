"""The agent's wheelhouse: the agent's own wheel and every dependency, pinned by hash, for the instances.

Game instances install the agent with `pip install --no-index --require-hashes` from this wheelhouse,
never from a package index: no name on the public index is ours, so whoever registered it would get root
on every game server, and an unpinned install runs whatever the index serves that day. `make deploy`
uploads it to the artifacts bucket and the local stack to its emulator, under the archive's sha256.

One archive holds the wheels of both architectures (x86_64 and aarch64, CPython 3.11: Debian 12's
python3). The user data is rendered before the instance type is chosen (capacity may fall back to
another type), so one URL that serves any of them keeps the user data small; pip picks the wheel for
the machine it runs on, and every wheel's hash is in the requirements the user data carries.

Built once per content into a cache outside the clone (`~/.cache/gangway/wheelhouse/<key>`, keyed by the
lock file and the agent's sources), so tests and repeated deploys do not download again.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from deploy.template import ROOT

__all__ = [
    "AGENT_DIR",
    "KEY_PREFIX",
    "LOCK",
    "PLATFORMS",
    "PYTHON_VERSION",
    "Wheelhouse",
    "build",
    "cache_dir",
    "publish",
    "requirements_for",
]

AGENT_DIR: Final = ROOT / "agent"
LOCK: Final = AGENT_DIR / "requirements.lock"
# Instance architectures → the pip platform tag of their wheels (awscrt is the one compiled dependency).
PLATFORMS: Final = {"x86_64": "manylinux2014_x86_64", "aarch64": "manylinux2014_aarch64"}
PYTHON_VERSION: Final = "3.11"  # Debian 12's python3, which the instances run the agent with
KEY_PREFIX: Final = "agent/"
ARCHIVE: Final = "wheelhouse.tar"
REQUIREMENTS: Final = "requirements.txt"
# A fixed timestamp for the agent's wheel and the archive's members, so the same sources give the same
# bytes and the same key (a deploy with nothing changed uploads nothing).
_EPOCH: Final = 315532800  # 1980-01-01, the earliest a zip file can say
_WHEEL: Final = re.compile(r"(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl")

Runner = Callable[..., Any]


@dataclass(frozen=True)
class Wheelhouse:
    """A built wheelhouse: the archive of wheels and the requirements (with hashes) that install it."""

    archive: Path
    requirements: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.archive.read_bytes()).hexdigest()

    @property
    def wheels(self) -> list[str]:
        with tarfile.open(self.archive) as tar:
            return sorted(tar.getnames())


def cache_dir() -> Path:
    """Where wheelhouses are kept between runs: outside the clone, so `make clean` and new clones share it."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gangway" / "wheelhouse"


def _content_key() -> str:
    """A hash of what the wheelhouse is built from: the lock file and the agent's packaging and sources."""
    digest = hashlib.sha256(LOCK.read_bytes())
    for path in sorted([AGENT_DIR / "pyproject.toml", *(AGENT_DIR / "src").rglob("*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(AGENT_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:24]


def requirements_for(wheels: list[Path]) -> str:
    """One `name==version --hash=sha256:…` line per distribution, every wheel's hash on it (pip accepts any).

    Raises:
        ValueError: a file that is not a wheel.
    """
    by_dist: dict[tuple[str, str], list[str]] = {}
    for wheel in wheels:
        m = _WHEEL.fullmatch(wheel.name)
        if m is None:
            raise ValueError(f"{wheel.name} is not a wheel")
        name = re.sub(r"[-_.]+", "-", m["name"]).lower()
        by_dist.setdefault((name, m["version"]), []).append(hashlib.sha256(wheel.read_bytes()).hexdigest())
    return "".join(
        f"{name}=={version} " + " ".join(f"--hash=sha256:{h}" for h in sorted(hashes)) + "\n"
        for (name, version), hashes in sorted(by_dist.items())
    )


def _archive(wheels: list[Path], into: Path) -> None:
    """A tar of the wheels, flat, with fixed owners and times (the same wheels give the same bytes)."""
    with tarfile.open(into, "w", format=tarfile.PAX_FORMAT) as tar:
        for wheel in sorted(wheels, key=lambda p: p.name):
            info = tarfile.TarInfo(wheel.name)
            info.size, info.mtime, info.mode = wheel.stat().st_size, _EPOCH, 0o644
            tar.addfile(info, io.BytesIO(wheel.read_bytes()))


def build(
    cache: Path | None = None, *, run: Runner = subprocess.run, say: Callable[[str], None] = print
) -> Wheelhouse:
    """The wheelhouse for the lock file and agent sources as they are: from the cache, else built there.

    Building runs pip: the agent's wheel from a copy of `agent/` (nothing is written into the clone),
    then `pip download --require-hashes` of the lock file once per platform (a few MB each).
    """
    dest = (cache or cache_dir()) / _content_key()
    if (dest / ARCHIVE).is_file() and (dest / REQUIREMENTS).is_file():
        return Wheelhouse(dest / ARCHIVE, (dest / REQUIREMENTS).read_text())
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".building-") as tmp:
        work, wheels = Path(tmp), Path(tmp) / "wheels"
        src = work / "agent"
        shutil.copytree(
            AGENT_DIR, src, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.egg-info", "build")
        )
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(_EPOCH)}
        say(f"wheelhouse: building the agent's wheel and downloading {LOCK.relative_to(ROOT)} into {dest}")
        run(
            [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
            check=True,
            env=env,
            cwd=work,
        )
        for platform in PLATFORMS.values():
            run(
                [
                    *pip,
                    "download",
                    "-q",
                    "--require-hashes",
                    "--no-deps",
                    "--only-binary",
                    ":all:",
                    "--platform",
                    platform,
                    "--python-version",
                    PYTHON_VERSION,
                    "--implementation",
                    "cp",
                    "-r",
                    str(LOCK),
                    "-d",
                    str(wheels),
                ],
                check=True,
                env=env,
                cwd=work,
            )
        files = sorted(wheels.glob("*.whl"))
        staged = work / "out"
        staged.mkdir()
        _archive(files, staged / ARCHIVE)
        (staged / REQUIREMENTS).write_text(requirements_for(files))
        if not dest.exists():
            staged.rename(dest)
    return Wheelhouse(dest / ARCHIVE, (dest / REQUIREMENTS).read_text())


def publish(s3: Any, bucket: str, wheelhouse: Wheelhouse, *, say: Callable[[str], None] = print) -> str:
    """Upload the archive and its requirements under the archive's sha256 (once); returns the location
    the functions get as AGENT_WHEELHOUSE: `s3://<bucket>/agent/<sha256>`."""
    prefix = f"{KEY_PREFIX}{wheelhouse.sha256}"
    for key, body, ctype in (
        (f"{prefix}.tar", wheelhouse.archive.read_bytes(), "application/x-tar"),
        (f"{prefix}.requirements.txt", wheelhouse.requirements.encode(), "text/plain; charset=utf-8"),
    ):
        try:
            s3.head_object(Bucket=bucket, Key=key)
            continue
        except s3.exceptions.ClientError:
            pass
        say(f"uploading s3://{bucket}/{key} ({len(body) // 1024} KiB)")
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=ctype)
    return f"s3://{bucket}/{prefix}"

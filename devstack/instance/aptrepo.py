"""A local apt repository for a booted instance, so a game installed "from Debian's archive" reaches it
without the instance having the internet.

The instance's network is a namespace the harness made, with no route out. This machine reaches Debian's
mirror (as debootstrap did for the root file system, devstack/instance/rootfs.py), so here, once: apt
works out which packages the cached root file system lacks for the wanted ones (`apt-get --simulate`
against the root file system's dpkg status and this machine's package lists), downloads those .debs
(`apt-get download`, exact versions) into `/var/cache/gangway/apt-bookworm-<hash>/`, and writes a flat
repository index (`Packages`, the fields dpkg-scanpackages writes). `install_into()` copies it into a
booted instance's root (`/var/local/gangway-apt`) and makes it the instance's only apt source
(`deb [trusted=yes] file:/var/local/gangway-apt ./`): the agent's `apt-get update` and `apt-get install`
then run unchanged, as on an instance whose mirror is Debian's.

apt uses a `file:` repository's .debs where they are and keeps no copy in its archives cache; to behave
as with a mirror (the .debs downloaded into the cache, which the agent keeps on the data disk), `serve()`
serves the repository over HTTP on this machine and `use_served()` makes an instance's only source
`http://127.0.0.1:REPO_PORT` (its loopback port forwarded to the server's, as the instance harness
forwards the emulator's).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from devstack.instance.rootfs import CACHE_DIR, SUITE, RootFs

__all__ = ["REPO_IN_INSTANCE", "REPO_PORT", "LocalRepo", "build_repo", "install_into", "serve", "use_served"]

REPO_IN_INSTANCE: Final = "/var/local/gangway-apt"
REPO_PORT: Final = 8089  # where an instance reaches a served repository, on its loopback
# `apt-get --simulate install` prints one "Inst <name> (<version> <origin> [<arch>])" line per package.
_INST: Final = re.compile(r"^Inst (\S+) (?:\[[^]]*\] )?\((\S+) ", re.MULTILINE)


class LocalRepo:
    """A folder of .debs with its `Packages` index."""

    def __init__(self, path: Path, packages: tuple[str, ...]) -> None:
        self.path = path
        self.packages = packages

    def debs(self) -> list[Path]:
        return sorted(self.path.glob("*.deb"))


def _run(cmd: list[str], *, cwd: Path | None = None, timeout: float = 600) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}: {done.stderr.strip()[-500:] or done.stdout.strip()[-500:]}")
    return done.stdout


def _index(folder: Path) -> str:
    """The `Packages` file for the .debs in `folder` (each one's control fields, Filename, Size, SHA256)."""
    stanzas = []
    for deb in sorted(folder.glob("*.deb")):
        control = _run(["dpkg-deb", "--field", str(deb)]).rstrip("\n")
        data = deb.read_bytes()
        stanzas.append(f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    return "\n".join(stanzas)


def build_repo(packages: tuple[str, ...], rootfs: RootFs, cache: Path = CACHE_DIR) -> LocalRepo:
    """The cached repository holding `packages` and what `rootfs` lacks for them (built first if missing).

    Raises:
        RuntimeError: apt cannot resolve or download them (no package lists, no mirror); the message says.
    """
    key = hashlib.sha256("\n".join((SUITE, rootfs.path.name, *sorted(packages))).encode()).hexdigest()[:12]
    target = cache / f"apt-{SUITE}-{key}"
    if (target / "Packages").exists():
        return LocalRepo(target, packages)
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (this machine's apt builds the local repository)")
    status = rootfs.path / "var/lib/dpkg/status"
    plan = _run(["apt-get", "--simulate", "--no-install-recommends", f"-o=Dir::State::status={status}",
                 "install", *packages])
    wanted = [f"{name}={version}" for name, version in _INST.findall(plan)]
    if not wanted:
        raise RuntimeError(f"apt found nothing to install for {packages}: is `apt-get update` done here?")
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{target.name}.building-", dir=cache))
    try:
        work.chmod(0o755)  # apt's _apt user downloads into it
        _run(["apt-get", "download", "-q", *wanted], cwd=work)
        (work / "Packages").write_text(_index(work))
        work.rename(target)
    except OSError:
        if not (target / "Packages").exists():
            raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return LocalRepo(target, packages)


def install_into(repo: LocalRepo, root: Path) -> None:
    """Copy the repository into a booted instance's root and make it the instance's only apt source."""
    inside = root / REPO_IN_INSTANCE.lstrip("/")
    shutil.copytree(repo.path, inside, dirs_exist_ok=True)
    for path in (inside, *inside.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    apt = root / "etc/apt"
    (apt / "sources.list").write_text(f"deb [trusted=yes] file:{REPO_IN_INSTANCE} ./\n")
    for extra in (apt / "sources.list.d").glob("*"):
        extra.unlink()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet: the test's output is its own
        pass


@contextlib.contextmanager
def serve(repo: LocalRepo) -> Iterator[int]:
    """Serve the repository over HTTP on this machine's loopback while the block runs; its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(repo.path)))
    thread = threading.Thread(target=server.serve_forever, name="apt-repo", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def use_served(root: Path, port: int = REPO_PORT) -> None:
    """Make the served repository (at the instance's loopback `port`) a booted root's only apt source."""
    apt = root / "etc/apt"
    (apt / "sources.list").write_text(f"deb [trusted=yes] http://127.0.0.1:{port} ./\n")
    for extra in (apt / "sources.list.d").glob("*"):
        extra.unlink()

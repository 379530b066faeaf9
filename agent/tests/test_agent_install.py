"""The install step: a real HTTP download checked by its SHA-256 and unpacked safely, the data disk's marker,
apt's and SteamCMD's progress read from the lines those programs print, and failures in words."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import stat
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from agent_fakes import FakeClock, config_dict

from gangway_agent import config
from gangway_agent.agent import game_launch
from gangway_agent.config import ArchiveKind, InstallConfig, InstallMethod
from gangway_agent.install import Installer, InstallFailed, Phase, apt_percent, podman_argv, steam_percent


class Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback serving a folder."""
    root = tmp_path / "web"
    root.mkdir()

    def handler(*args: object) -> Files:
        return Files(*args, directory=str(root))  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


class Reports:
    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []

    def __call__(self, body: Mapping[str, object]) -> None:
        self.bodies.append(dict(body))

    def phases(self) -> list[str]:
        return [str(b["phase"]) for b in self.bodies]


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _download(tmp: Path, url: str, data: bytes, archive: ArchiveKind, version: str = "1") -> InstallConfig:
    return InstallConfig(InstallMethod.DOWNLOAD, version, tmp / "game", url=url,
                         sha256=hashlib.sha256(data).hexdigest(), archive=archive)


def test_download_unpacks_once_then_skips_by_the_marker(tmp_path: Path, web: tuple[str, Path]) -> None:
    base, root = web
    blob = _zip({"server/run.sh": b"#!/bin/sh\necho hi\n", "server/data.bin": os.urandom(3 * 1024 * 1024)})
    (root / "server.zip").write_bytes(blob)
    reports, clock = Reports(), FakeClock()
    cfg = _download(tmp_path, f"{base}/server.zip", blob, ArchiveKind.ZIP)
    inst = Installer(cfg, data_dir=tmp_path, clock=clock, report=reports)
    assert inst.needed() and inst.installed_version() is None
    result = inst.run()
    assert result.installed and result.version == "1"
    assert (tmp_path / "game/server/run.sh").read_bytes().startswith(b"#!/bin/sh")
    assert reports.phases()[0] == "download" and reports.phases()[-2:] == ["install", "done"]
    # Progress is rate-limited: four 1 MiB chunks by a clock that does not move are one download event.
    assert reports.phases().count("download") == 1
    assert all(set(b) == {"phase", "percent", "version", "message"} for b in reports.bodies)
    assert not list((tmp_path / "game").glob(".*gangway-part"))
    assert inst.installed_version() == "1" and not inst.needed()
    again = Reports()
    second = Installer(cfg, data_dir=tmp_path, clock=clock, report=again).run()
    assert not second.installed and again.phases() == ["skipped"]
    forced = Reports()
    assert Installer(cfg, data_dir=tmp_path, clock=clock, report=forced).run(force=True).installed
    assert forced.phases()[-1] == "done"
    bumped = _download(tmp_path, f"{base}/server.zip", blob, ArchiveKind.ZIP, version="2")
    assert Installer(bumped, data_dir=tmp_path, clock=clock, report=Reports()).needed()


def test_a_hash_that_differs_installs_nothing(tmp_path: Path, web: tuple[str, Path]) -> None:
    base, root = web
    blob = _zip({"run.sh": b"x"})
    (root / "server.zip").write_bytes(blob + b"tampered")
    reports = Reports()
    inst = Installer(_download(tmp_path, f"{base}/server.zip", blob, ArchiveKind.ZIP), data_dir=tmp_path,
                     clock=FakeClock(), report=reports)
    with pytest.raises(InstallFailed, match="SHA-256 differs"):
        inst.run()
    assert reports.bodies[-1]["phase"] == "failed" and "SHA-256 differs" in str(reports.bodies[-1]["message"])
    assert list((tmp_path / "game").iterdir()) == [] and inst.installed_version() is None


def test_a_missing_file_fails_in_words(tmp_path: Path, web: tuple[str, Path]) -> None:
    base, _root = web
    reports = Reports()
    inst = Installer(_download(tmp_path, f"{base}/nope.zip", b"", ArchiveKind.ZIP), data_dir=tmp_path,
                     clock=FakeClock(), report=reports)
    with pytest.raises(InstallFailed, match=r"could not download .*nope.zip: File not found"):
        inst.run()
    assert reports.phases()[-1] == "failed"


def test_zip_escaping_its_folder_is_refused_before_anything_is_unpacked(
        tmp_path: Path, web: tuple[str, Path]) -> None:
    base, root = web
    blob = _zip({"ok.txt": b"fine", "../../escaped.txt": b"evil"})
    (root / "evil.zip").write_bytes(blob)
    inst = Installer(_download(tmp_path, f"{base}/evil.zip", blob, ArchiveKind.ZIP), data_dir=tmp_path,
                     clock=FakeClock(), report=Reports())
    with pytest.raises(InstallFailed, match="outside its folder"):
        inst.run()
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "game" / "ok.txt").exists()


def _tar(members: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for m in members:
            payload = data.get(m.name)
            if payload is not None:
                m.size = len(payload)
            tf.addfile(m, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def test_tar_with_a_link_out_is_refused_and_a_good_tar_unpacks(tmp_path: Path, web: tuple[str, Path]) -> None:
    base, root = web
    link = tarfile.TarInfo("world")
    link.type, link.linkname = tarfile.SYMTYPE, "../../../etc"
    evil = _tar([link], {})
    (root / "evil.tgz").write_bytes(evil)
    inst = Installer(_download(tmp_path, f"{base}/evil.tgz", evil, ArchiveKind.TAR), data_dir=tmp_path,
                     clock=FakeClock(), report=Reports())
    with pytest.raises(InstallFailed, match="outside its folder"):
        inst.run()
    assert not (tmp_path / "game" / "world").exists()
    good = _tar([tarfile.TarInfo("bin/server"), tarfile.TarInfo("README")],
                {"bin/server": b"#!", "README": b"r"})
    (root / "good.tgz").write_bytes(good)
    done = Installer(_download(tmp_path, f"{base}/good.tgz", good, ArchiveKind.TAR), data_dir=tmp_path,
                     clock=FakeClock(), report=Reports()).run()
    assert done.installed and (tmp_path / "game/bin/server").read_bytes() == b"#!"


def test_a_plain_download_is_kept_executable(tmp_path: Path, web: tuple[str, Path]) -> None:
    base, root = web
    (root / "server.bin").write_bytes(b"\x7fELF...")
    inst = Installer(_download(tmp_path, f"{base}/server.bin", b"\x7fELF...", ArchiveKind.NONE),
                     data_dir=tmp_path, clock=FakeClock(), report=Reports())
    assert inst.run().installed
    assert (tmp_path / "game/server.bin").stat().st_mode & stat.S_IXUSR


# -- apt and SteamCMD: their own output lines --------------------------------------------------------------

APT_STATUS = [  # apt-get -o APT::Status-Fd=N install, as apt 2.6 (Debian 12) writes it
    "dlstatus:1:0:Retrieving file 1 of 3",
    "dlstatus:3:66.6667:Retrieving file 3 of 3",
    "pmstatus:dpkg-exec:0:Running dpkg",
    "pmstatus:minetest-data:16.6667:Installing minetest-data (amd64)",
    "pmstatus:minetest-server:83.3333:Configuring minetest-server (amd64)",
    "pmstatus:minetest-server:100:Installed minetest-server (amd64)",
]


def test_apt_status_lines() -> None:
    seen = [apt_percent(line) for line in APT_STATUS]
    assert seen[1] == (Phase.DOWNLOAD, 66.6667) and seen[4] == (Phase.INSTALL, 83.3333)
    assert apt_percent("Reading package lists...") is None
    assert apt_percent("pmerror:foo:20:dpkg error") is None


def test_steamcmd_lines() -> None:
    assert steam_percent(" Update state (0x61) downloading, progress: 45.12 (123 / 456)") == (
        Phase.DOWNLOAD, 45.12)
    assert steam_percent(" Update state (0x81) verifying update, progress: 99.01 (1 / 2)") == (
        Phase.INSTALL, 99.01)
    assert steam_percent("Loading Steam API...OK") is None


def _program(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)


# A stand-in apt-get that speaks apt's status protocol on the descriptor named by -o=APT::Status-Fd=N.
FAKE_APT = """import os, sys
args = sys.argv[1:]
open(os.environ["CALLS"], "a").write(" ".join(args) + "\\n")
if args[0] == "update":
    sys.exit(0)
fd = int(next(a for a in args if a.startswith("-o=APT::Status-Fd=")).split("=")[-1])
status = os.fdopen(fd, "w")
for line in %r:
    status.write(line + "\\n")
status.flush()
if "broken-package" in args:
    print("E: Unable to locate package broken-package")
    sys.exit(100)
"""


def test_apt_runs_noninteractive_with_its_cache_on_the_data_disk(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    _program(bin_dir, "apt-get", FAKE_APT % (APT_STATUS,))
    calls = tmp_path / "calls"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls)}
    reports, clock = Reports(), FakeClock()
    cfg = InstallConfig(InstallMethod.APT, "1", tmp_path / "game", packages=("minetest-server",))
    assert Installer(cfg, data_dir=tmp_path, clock=clock, report=reports, env=env).run().installed
    update, install = calls.read_text().splitlines()
    assert update.startswith("update")
    assert "install -y -q --no-install-recommends" in install and install.endswith("minetest-server")
    assert f"-o=Dir::Cache::Archives={tmp_path}/.gangway/apt-archives" in install
    assert reports.phases() == ["download", "install", "done"]  # one event per phase on a still clock
    # The marker alone is not enough for apt: dpkg does not know minetest-server here, so it is needed again.
    assert Installer(cfg, data_dir=tmp_path, clock=clock, report=Reports(), env=env).needed()
    present = InstallConfig(InstallMethod.APT, "1", tmp_path / "game", packages=("dpkg",))
    with_dpkg = Installer(present, data_dir=tmp_path, clock=clock, report=Reports(),
                          env={"PATH": "/usr/bin:/bin"})
    assert not with_dpkg.needed()  # the marker says 1 and dpkg says installed


def test_a_new_root_disk_installs_again_from_the_kept_packages_without_a_download_phase(
    tmp_path: Path,
) -> None:
    """The marker says this version is installed, but the instance is new (a start from a snapshot) and
    its dpkg does not know the packages: apt installs them again from the data disk's cache, and the
    progress never says it downloads (apt has everything: it prints only its dpkg status)."""
    bin_dir = tmp_path / "bin"
    _program(bin_dir, "apt-get", FAKE_APT % (APT_STATUS,))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls")}
    cfg = InstallConfig(InstallMethod.APT, "1", tmp_path / "game", packages=("minetest-server",))
    assert Installer(cfg, data_dir=tmp_path, clock=FakeClock(), report=Reports(), env=env).run().installed
    _program(bin_dir, "apt-get", FAKE_APT % ([line for line in APT_STATUS if line.startswith("pmstatus")],))
    reports = Reports()
    again = Installer(cfg, data_dir=tmp_path, clock=FakeClock(), report=reports, env=env)
    assert again.needed() and again.run().installed
    assert reports.phases() == ["install", "done"], reports.bodies
    assert "kept on the data disk" in str(reports.bodies[0]["message"])
    forced = Reports()  # /updategame's forced run is a new install: it says it downloads
    Installer(cfg, data_dir=tmp_path, clock=FakeClock(), report=forced, env=env).run(force=True)
    assert forced.phases()[0] == "download"


def test_apt_failure_reports_apts_words(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    _program(bin_dir, "apt-get", FAKE_APT % ([],))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls")}
    reports = Reports()
    cfg = InstallConfig(InstallMethod.APT, "1", tmp_path / "game", packages=("broken-package",))
    with pytest.raises(InstallFailed, match=r"apt-get install failed .*Unable to locate package broken-pac"):
        Installer(cfg, data_dir=tmp_path, clock=FakeClock(), report=reports, env=env).run()
    assert reports.phases()[-1] == "failed" and not (tmp_path / ".gangway/install.json").exists()


def test_a_missing_program_is_said_in_words(tmp_path: Path) -> None:
    cfg = InstallConfig(InstallMethod.STEAMCMD, "1", tmp_path / "game", app_id=896660)
    with pytest.raises(InstallFailed, match="SteamCMD is not available on this instance"):
        Installer(cfg, data_dir=tmp_path, clock=FakeClock(), report=Reports(),
                  env={"PATH": str(tmp_path)}).run()


def test_steamcmd_progress_and_its_silent_failure(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    lines = [" Update state (0x61) downloading, progress: 10.00 (1 / 10)",
             " Update state (0x61) downloading, progress: 90.00 (9 / 10)",
             "Success! App '896660' fully installed."]
    script = f"import sys\nprint(' '.join(sys.argv[1:]))\nfor x in {lines!r}: print(x)\n"
    _program(bin_dir, "steamcmd", script)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    cfg = InstallConfig(InstallMethod.STEAMCMD, "1", tmp_path / "game", app_id=896660)
    reports, clock = Reports(), FakeClock()
    Installer(cfg, data_dir=tmp_path, clock=clock, report=reports, env=env).run()
    assert reports.bodies[0] == {"phase": "download", "percent": None, "version": "1", "message": ""}
    _program(bin_dir, "steamcmd", "print('Error! App state is 0x202 after update job.')\n")
    with pytest.raises(InstallFailed, match="finished without installing app 896660"):
        Installer(cfg, data_dir=tmp_path, clock=clock, report=Reports(), env=env).run(force=True)


def test_podman_runs_the_image_with_the_install_dir_as_data(tmp_path: Path) -> None:
    cfg = InstallConfig(InstallMethod.PODMAN, "1", Path("/srv/gangway/game"),
                        image="docker.io/itzg/minecraft-server:java21")
    argv = podman_argv(cfg, Path("/srv/gangway"), "gangway-game", ["--nogui"], {"EULA": "TRUE"})
    assert argv[:3] == ["podman", "--root", "/srv/gangway/.gangway/containers"]
    assert "--volume=/srv/gangway/game:/data" in argv and "--interactive" in argv
    assert argv[-3:] == ["--env=EULA=TRUE", "docker.io/itzg/minecraft-server:java21", "--nogui"]


def test_a_podman_install_makes_the_launch_run_the_image(tmp_path: Path) -> None:
    data = config_dict(tmp_path)
    data["launch"].update({"command": [], "env": {"EULA": "TRUE"}})
    data["install"] = {"method": "podman", "image": "docker.io/itzg/minecraft-server:java21"}
    launch = game_launch(config.parse(data))
    assert launch.command[:3] == ("podman", "--root", f"{tmp_path}/.gangway/containers")
    assert launch.command[-2:] == ("--env=EULA=TRUE", "docker.io/itzg/minecraft-server:java21")
    assert f"--volume={tmp_path}:/data" in launch.command and dict(launch.env) == {}


def test_progress_is_sent_at_phase_changes_and_every_few_seconds_between() -> None:
    from gangway_agent.install import _Progress

    reports, clock = Reports(), FakeClock()
    progress = _Progress(reports, clock, "7")
    for percent in (1.0, 2.0, 3.0):
        progress(Phase.DOWNLOAD, percent)
        clock.advance(1)
    progress(Phase.DOWNLOAD, 4.0)  # 3 s after the first: due again
    progress(Phase.INSTALL, 0.0)  # a new phase: at once
    progress(Phase.INSTALL, 50.0)
    assert [(b["phase"], b["percent"]) for b in reports.bodies] == [
        ("download", 1.0), ("download", 4.0), ("install", 0.0)]
    assert {b["version"] for b in reports.bodies} == {"7"}

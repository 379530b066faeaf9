"""SFTP with the OS OpenSSH and the PAM one-time-password check, for real (root, loopback, high port)."""

from __future__ import annotations

import io
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_fakes import FakeClock, free_port, wait_port

from gangway_agent import otp_check
from gangway_agent.config import SftpConfig
from gangway_agent.seams import SubprocessRunner, SystemClock
from gangway_agent.sftp import SftpService


def test_otp_is_single_use_and_expires(tmp_path: Path) -> None:
    store = tmp_path / "otp"
    password, expires = otp_check.issue(store, "gamer", 60, now=1000.0)
    assert expires == 1060.0
    assert not otp_check.check(store, "gamer", "wrong", now=1001.0)
    assert not otp_check.check(store, "someone-else", password, now=1001.0)
    assert otp_check.check(store, "gamer", password, now=1001.0)
    assert not otp_check.check(store, "gamer", password, now=1002.0)
    late, _ = otp_check.issue(store, "gamer", 60, now=1000.0)
    assert not otp_check.check(store, "gamer", late, now=1061.0)
    assert list(store.iterdir()) == []  # used and expired records are gone
    assert (store.stat().st_mode & 0o777) == 0o700


def test_pam_exec_entry_point(tmp_path: Path) -> None:
    """The checker as pam_exec runs it: password + NUL on stdin, user in PAM_USER, verdict as exit code."""
    store = tmp_path / "otp"
    password, _ = otp_check.issue(store, "gamer", 60)
    argv = [sys.executable, "-I", "-m", "gangway_agent.otp_check", str(store)]

    def run(user: str, secret: str) -> int:
        env = {"PAM_USER": user, "PATH": os.environ.get("PATH", "")}
        return subprocess.run(argv, input=secret.encode() + b"\0", env=env, timeout=30).returncode

    assert run("gamer", "nope") == 1
    assert run("other", password) == 1
    assert run("gamer", password) == 0
    assert run("gamer", password) == 1


@pytest.fixture
def sftp(tmp_path: Path) -> Iterator[SftpService]:
    tag = secrets.token_hex(3)
    chroot = Path(f"/srv/gwtest-{tag}")
    cfg = SftpConfig(
        port=free_port(), listen="127.0.0.1", chroot=chroot, start_dir="/game", user=f"gwt{tag}",
        advertise_host="127.0.0.1", otp_ttl_s=120, service_name=f"sshd-gwt{tag}", link_dir=tmp_path / "sbin",
    )
    svc = SftpService(cfg, state_dir=tmp_path / "state", runner=SubprocessRunner(), clock=SystemClock())
    try:
        yield svc
    finally:
        svc.uninstall()
        shutil.rmtree(chroot, ignore_errors=True)
        assert not svc.pam_file.exists() and not svc.link.is_symlink()


@pytest.mark.requires("sshd", "ssh-keygen", "useradd")
def test_one_time_password_logs_in_once_and_the_chroot_holds(sftp: SftpService) -> None:
    import paramiko

    creds = sftp.open(ttl_s=None, host=None)
    port = int(creds.uri.rsplit(":", 1)[1].rstrip("/"))
    assert creds.uri == f"sftp://{creds.username}@127.0.0.1:{port}/"
    keygen = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{sftp.host_key}.pub"],
                            capture_output=True, text=True, check=True).stdout
    assert creds.host_key_sha256 == keygen.split()[1]
    wait_port(port)

    def connect(password: str) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect("127.0.0.1", port=port, username=creds.username, password=password,
                       look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10)
        return client

    with pytest.raises(paramiko.AuthenticationException):
        connect("not-the-password")
    client = connect(creds.password)
    try:
        files = client.open_sftp()
        assert files.listdir(".") == []
        files.putfo(io.BytesIO(b"world data" * 1000), "world.db")
        assert files.listdir(".") == ["world.db"]
        assert files.listdir("/") == ["game"]
        with pytest.raises(OSError):
            files.listdir("/etc")  # chrooted: there is no /etc
        _, stdout, _ = client.exec_command("id")
        assert b"sftp connections only" in stdout.read()
    finally:
        client.close()
    uploaded = sftp._cfg.chroot / "game" / "world.db"
    assert uploaded.read_bytes() == b"world data" * 1000
    assert uploaded.stat().st_uid != 0
    with pytest.raises(paramiko.AuthenticationException):
        connect(creds.password)  # single use
    # the sshd is our own: its PidFile, its port, and a second login needs a fresh password
    fresh = sftp.open(ttl_s=60, host="2001:db8::1")
    assert fresh.uri == f"sftp://{creds.username}@[2001:db8::1]:{port}/"
    connect(fresh.password).close()


def test_open_needs_a_host_to_advertise(tmp_path: Path) -> None:
    from gangway_agent.errors import RequestFailed

    svc = SftpService(SftpConfig(advertise_host=None), state_dir=tmp_path, runner=SubprocessRunner(),
                      clock=FakeClock())
    with pytest.raises(RequestFailed, match="no host to advertise"):
        svc.open(None, None)
    assert "ForceCommand internal-sftp -d /game" in svc.render_config()
    assert "pam_exec.so expose_authtok quiet" in svc.render_pam()

"""SFTP with the OS OpenSSH: a second sshd of our own, chrooted, password = one-time password.

Nothing of the host's own sshd is touched. sshd names its PAM service after the program name, so
a symlink ``<link_dir>/<service>`` → sshd selects ``/etc/pam.d/<service>``, whose only ``auth`` line
runs the OTP checker (feasibility.md §8). The config forces ``internal-sftp`` and chroots the one
SFTP user to the game's files; password logins are the only method.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import os
import pwd
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import otp_check
from .config import SftpConfig
from .errors import ErrorCode, RequestFailed
from .seams import Clock, Runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SftpCredentials:
    uri: str
    username: str
    password: str
    host_key_sha256: str
    expires_at: float


def fingerprint(pub_line: str) -> str:
    """OpenSSH's ``SHA256:`` fingerprint of a public key line (as ``ssh-keygen -lf`` prints it)."""
    blob = base64.b64decode(pub_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class SftpService:
    """Installs, runs and hands out logins for the gangway sshd."""

    def __init__(
        self, cfg: SftpConfig, *, state_dir: Path, runner: Runner, clock: Clock,
        host_lookup: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._cfg = cfg
        self._dir = state_dir / "sftp"
        self._runner = runner
        self._clock = clock
        self._host_lookup = host_lookup
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def otp_dir(self) -> Path:
        return self._dir / "otp"

    @property
    def host_key(self) -> Path:
        return self._dir / "ssh_host_ed25519_key"

    @property
    def sshd_config(self) -> Path:
        return self._dir / "sshd_config"

    @property
    def link(self) -> Path:
        return self._cfg.link_dir / self._cfg.service_name

    @property
    def pam_file(self) -> Path:
        return self._cfg.pam_dir / self._cfg.service_name

    def render_config(self) -> str:
        c = self._cfg
        return "\n".join([
            f"Port {c.port}",
            f"ListenAddress {c.listen}",
            f"HostKey {self.host_key}",
            f"PidFile {self._dir / 'sshd.pid'}",
            "UsePAM yes",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication no",
            "AuthenticationMethods password",
            "PermitRootLogin no",
            f"AllowUsers {c.user}",
            "MaxAuthTries 3",
            "LoginGraceTime 30",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PermitTTY no",
            "Subsystem sftp internal-sftp",
            f"ChrootDirectory {c.chroot}",
            f"ForceCommand internal-sftp -d {c.start_dir}",
            "",
        ])

    def render_pam(self) -> str:
        check = f"{sys.executable} -I -m gangway_agent.otp_check {self.otp_dir}"
        return "\n".join([
            "# Written by gangway-agent: only one-time passwords the agent issued log in.",
            f"auth     required pam_exec.so expose_authtok quiet {check}",
            "account  required pam_permit.so",
            "session  required pam_permit.so",
            "password required pam_deny.so",
            "",
        ])

    def install(self) -> None:
        """Create the user, chroot, host key, config, PAM service and sshd symlink (idempotent)."""
        c = self._cfg
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.otp_dir.mkdir(mode=0o700, exist_ok=True)
        try:
            pwd.getpwnam(c.user)
        except KeyError:
            self._runner.run(["useradd", "--system", "--no-create-home", "--home-dir", "/",
                              "--shell", "/usr/sbin/nologin", c.user])
        # sshd refuses a chroot unless every component is root-owned and not group/world-writable.
        c.chroot.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chown(c.chroot, 0, 0)
        os.chmod(c.chroot, 0o755)
        start = c.chroot / c.start_dir.lstrip("/")
        if not start.exists():
            start.mkdir(parents=True)
            user = pwd.getpwnam(c.user)
            os.chown(start, user.pw_uid, user.pw_gid)
        if not self.host_key.exists():
            self._runner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gangway",
                              "-f", str(self.host_key)])
        self.sshd_config.write_text(self.render_config())
        self.pam_file.write_text(self.render_pam())
        c.link_dir.mkdir(parents=True, exist_ok=True)
        if not self.link.is_symlink():
            self.link.symlink_to(c.sshd)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir; no systemd here
        self._runner.run([str(self.link), "-t", "-f", str(self.sshd_config)])

    def ensure_running(self) -> None:
        """Install if needed and (re)start sshd when it is not running."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            self.install()
            log_path = self._dir / "sshd.log"
            with log_path.open("ab") as log_fh:
                self._proc = subprocess.Popen(
                    [str(self.link), "-D", "-e", "-f", str(self.sshd_config)],
                    stdin=subprocess.DEVNULL, stdout=log_fh, stderr=log_fh, start_new_session=True,
                )
            log.info("sftp sshd started on port %d, pid %d", self._cfg.port, self._proc.pid)

    def open(self, ttl_s: float | None, host: str | None) -> SftpCredentials:
        """Start sshd if needed and issue a one-time login. Raises RequestFailed."""
        host = host or self._cfg.advertise_host or self._host_lookup()
        if not host:
            raise RequestFailed("no host to advertise: pass body.host or set sftp.advertise_host",
                                ErrorCode.UNAVAILABLE)
        self.ensure_running()
        ttl = ttl_s if ttl_s is not None else self._cfg.otp_ttl_s
        password, expires = otp_check.issue(self.otp_dir, self._cfg.user, ttl, now=self._clock.now())
        key_line = self.host_key.with_suffix(".pub").read_text()
        try:
            shown = f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
        except ValueError:
            shown = host
        return SftpCredentials(
            uri=f"sftp://{self._cfg.user}@{shown}:{self._cfg.port}/",
            username=self._cfg.user, password=password, host_key_sha256=fingerprint(key_line),
            expires_at=expires,
        )

    def keep_alive(self) -> None:
        """Restart sshd if it was started and has died since."""
        if self._proc is not None and self._proc.poll() is not None:
            log.warning("sftp sshd exited with %s; restarting", self._proc.returncode)
            self.ensure_running()

    def stop(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def uninstall(self) -> None:
        """Stop sshd and remove the PAM service, the symlink and the user (tests, decommission)."""
        self.stop()
        self.pam_file.unlink(missing_ok=True)
        if self.link.is_symlink():
            self.link.unlink()
        try:
            pwd.getpwnam(self._cfg.user)
        except KeyError:
            return
        self._runner.run(["userdel", self._cfg.user], check=False)

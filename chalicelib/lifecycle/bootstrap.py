"""The instance's first-boot script (EC2 user data), rendered from `templates/user-data.sh`.

It installs the agent into its own venv from the wheelhouse `make deploy` uploaded (instances/wheelhouse.py):
it downloads the archive from a presigned URL, checks the archive's sha256, and runs
`pip install --no-index --require-hashes` with the requirements written here, every wheel pinned by its
sha256 (the agent's own included), so nothing comes from a package index or unpinned. It then mounts
the game's data volume (by its EBS id if known, else the one EBS disk attached that is not in use, i.e.
not the root disk; formatting it only when blank), fetches the instance's IoT certificate
and key from SSM Parameter Store (instances/identity.py says why not from here), writes
/etc/gangway/agent.toml and runs the agent under systemd, restarted on failure. With a log group, the
game's output and the agent's journal (the boot's output too, so a failed start is readable) go to
CloudWatch Logs.

Nothing secret is in the output: user data can be read by anyone allowed to describe the instance.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Final

from chalicelib.catalogue import Resolved
from chalicelib.instances import AgentInstall

__all__ = ["TEMPLATE", "Bootstrap", "agent_toml", "render"]

TEMPLATE: Final = Path(__file__).resolve().parent / "templates" / "user-data.sh"
MOUNTPOINT: Final = "/srv/gangway"
# The account the game runs as and its files belong to (made at first boot; the agent's SFTP user too).
GAME_USER: Final = "gangway"
# The game's systemd unit on the instance (`journalctl -u gangway-game` shows its output).
GAME_UNIT: Final = "gangway-game"
_VOLUME_ID: Final = re.compile(r"vol-[0-9a-f]{8,17}")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_REQUIREMENT: Final = re.compile(r"[a-z0-9][a-z0-9.-]*==[A-Za-z0-9.+!-]+( --hash=sha256:[0-9a-f]{64})+")
_LOG_GROUP: Final = re.compile(r"/gangway(/[A-Za-z0-9_.-]{1,100}){3}")
# The template's comment lines ("# …", not "#!"): for its readers; the rendered script goes without them.
_COMMENT: Final = re.compile(r"^[ \t]*# .*\n", re.MULTILINE)
# EC2 refuses user data over 16 KB (before base64).
MAX_USER_DATA: Final = 16 * 1024

# The agent's venv lives on the data disk (templates/user-data.sh, 2.), which fstab mounts before
# local-fs.target at a reboot. Not RequiresMountsFor: that binds the agent to the mount unit, and a
# package's daemon-reload (apt installing a catalogue game) restarted the agent in the middle of its work.
SYSTEMD_UNIT: Final = """[Unit]
Description=gangway agent (game supervisor, IoT link, firewall, SFTP)
Wants=network-online.target
After=network-online.target local-fs.target

[Service]
EnvironmentFile=/etc/gangway/aws.env
ExecStart=/opt/gangway/venv/bin/gangway-agent --config /etc/gangway/agent.toml
Restart=on-failure
RestartSec=5
TimeoutStopSec=120
KillMode=mixed
# The agent is root (nftables, sshd, the game's user); what it never needs is taken away.
NoNewPrivileges=yes
ProtectSystem=true
ReadWritePaths=/usr/local/sbin
ProtectHome=yes
PrivateTmp=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectClock=yes
RestrictSUIDSGID=yes
LockPersonality=yes

[Install]
WantedBy=multi-user.target"""


@dataclass(frozen=True)
class Bootstrap:
    """Everything the script needs to know, none of it secret."""

    tenant_id: str
    game: str
    iot_endpoint: str
    client_id: str
    parameter_prefix: str
    # The agent's wheelhouse: a presigned URL of its archive, the archive's sha256, the hashed requirements.
    agent: AgentInstall
    # None: the instance is launched before its volume exists; it takes the one data disk attached.
    volume_id: str | None = None
    autostart: bool = True
    # How long the script waits for the data disk to be attached, and for the IoT identity, before it fails.
    disk_wait_s: int = 900
    identity_wait_s: int = 900
    # The game's CloudWatch log group (instances/game_logs.py): the game's output and the agent's journal
    # go there; None keeps the game's output in a file on the instance.
    log_group: str | None = None
    tcp_ports: tuple[int, ...] = ()
    udp_ports: tuple[int, ...] = ()
    idle_warn_s: int = 1200
    idle_stop_s: int = 1800
    startup_grace_s: int = 600
    # How often the agent counts players (seconds): the idle thresholds are only as sharp as this.
    idle_check_s: int = 60
    # The game's own start script lives on its data volume, so it survives stops with the world.
    launch: tuple[str, ...] = field(default=(f"{MOUNTPOINT}/game/start.sh",))
    # A catalogue game with its form values: the agent installs, runs, queries and awaits it as the
    # entry says (issue 17). None: a custom game, run from its start script.
    catalogue: Resolved | None = None


def _q(value: str) -> str:
    """A TOML basic string (JSON's escapes are a subset TOML reads the same)."""
    return json.dumps(value)


def _list(values: tuple[str, ...] | tuple[int, ...]) -> str:
    return "[" + ", ".join(_q(v) if isinstance(v, str) else str(v) for v in values) + "]"


def _table(pairs: tuple[tuple[str, str], ...]) -> str:
    return "{ " + ", ".join(f"{_q(k)} = {_q(v)}" for k, v in pairs) + " }" if pairs else "{}"


def _catalogue_launch(game: Resolved | None) -> list[str]:
    """The `[launch]` keys a catalogue entry sets beside the usual ones."""
    if game is None:
        return []
    launch = game.entry.launch
    return [
        f"env = {_table(game.env)}",
        f"stop_signal = {_q(launch.stop_signal)}",
        f"stop_grace_s = {launch.stop_grace_s}",
        *([f"console_save = {_q(launch.console_save)}"] if launch.console_save else []),
        *([f"console_stop = {_q(launch.console_stop)}"] if launch.console_stop else []),
    ]


def _catalogue_sections(game: Resolved | None) -> list[str]:
    """`[install]`, `[query]` and `[ready]` of a catalogue game (the issue 17 seam); none for a custom one."""
    if game is None:
        return []
    install, query, ready = game.entry.install, game.entry.query, game.entry.ready
    lines = ["", "[install]", f"method = {_q(install.method)}", f"version = {_q(game.install_version)}"]
    lines += [f"packages = {_list(install.packages)}"] if install.packages else []
    lines += [f"image = {_q(install.image)}"] if install.image else []
    lines += [f"app_id = {install.app_id}"] if install.app_id is not None else []
    lines += [f"url = {_q(install.url)}"] if install.url else []
    lines += [f"sha256 = {_q(install.sha256)}"] if install.sha256 else []
    lines += [f"archive = {_q(install.archive)}"] if install.archive else []
    lines += [f"dir = {_q(install.dir)}"] if install.dir else []
    lines += [f"mount = {_q(install.mount)}"] if install.mount else []
    if query is not None:
        lines += ["", "[query]", f"protocol = {_q(query.protocol)}", f"host = {_q(query.host)}"]
        lines += [f"port = {query.port}", f"interval_s = {query.interval_s}"]
    lines += ["", "[ready]", f"signal = {_q(ready.signal)}", f"timeout_s = {ready.timeout_s}"]
    lines += [f"port = {ready.port}", f"proto = {_q(ready.proto)}"] if ready.port is not None else []
    lines += [f"pattern = {_q(ready.pattern)}"] if ready.pattern else []
    return lines


def agent_toml(b: Bootstrap) -> str:
    """/etc/gangway/agent.toml (the format of agent/examples/agent.toml)."""
    command = b.catalogue.command if b.catalogue is not None else b.launch
    return "\n".join(
        [
            f"tenant = {_q(b.tenant_id)}",
            f"game = {_q(b.game)}",
            'state_dir = "/var/lib/gangway"',
            "heartbeat_interval_s = 60",
            'shutdown_command = ["systemctl", "poweroff"]',
            "",
            "[mqtt]",
            f"endpoint = {_q(b.iot_endpoint)}",
            "port = 8883",
            'transport = "mtls"',
            f"client_id = {_q(b.client_id)}",
            'cert = "/etc/gangway/device.pem.crt"',
            'key = "/etc/gangway/private.pem.key"',
            'ca = "/etc/gangway/AmazonRootCA1.pem"',
            "",
            "[launch]",
            f"command = {_list(command)}",
            f"cwd = {_q(MOUNTPOINT + '/game')}",
            f"user = {_q(GAME_USER)}",
            # Its own unit and cgroup, its output in the journal (agent/src/gangway_agent/gameunit.py).
            'mode = "systemd"',
            f"unit = {_q(GAME_UNIT)}",
            f"autostart = {str(b.autostart).lower()}",
            f"ports = {{ tcp = {_list(b.tcp_ports)}, udp = {_list(b.udp_ports)} }}",
            *_catalogue_launch(b.catalogue),
            "",
            "[idle]",
            f"warn_after_s = {b.idle_warn_s}",
            f"stop_after_s = {b.idle_stop_s}",
            f"startup_grace_s = {b.startup_grace_s}",
            f"check_interval_s = {b.idle_check_s}",
            "",
            "[sftp]",
            "port = 2222",
            f"chroot = {_q(MOUNTPOINT)}",
            'start_dir = "/game"',
            f"user = {_q(GAME_USER)}",
            "",
            "[logs]",
            *(['sink = "cloudwatch"', f"group = {_q(b.log_group)}"] if b.log_group else ['sink = "file"']),
            "",
            "[data]",
            f"mountpoint = {_q(MOUNTPOINT)}",
            *_catalogue_sections(b.catalogue),
        ]
    )


def _sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise ValueError(f"{value!r} is not a sha256 (64 hex digits)")
    return value


def _requirements(text: str) -> str:
    """The requirements as the heredoc will hold them: only pinned, hashed lines (no line can end it)."""
    lines = text.strip().splitlines()
    bad = [line for line in lines if not _REQUIREMENT.fullmatch(line)]
    if not lines or bad:
        raise ValueError(f"agent requirements must each be name==version --hash=sha256:…, not {bad[:1]}")
    return "\n".join(lines)


def render(b: Bootstrap) -> str:
    """The user-data script for one launch.

    Raises:
        ValueError: a malformed volume id, log group, agent hash or requirement, a wait or idle check
            under a second,
            or over EC2's 16 KB.
    """
    if b.volume_id is not None and not _VOLUME_ID.fullmatch(b.volume_id):
        raise ValueError(f"{b.volume_id!r} is not an EBS volume id (vol-…)")
    for wait in ("disk_wait_s", "identity_wait_s", "idle_check_s"):
        if getattr(b, wait) < 1:
            raise ValueError(f"{wait} must be at least 1, not {getattr(b, wait)}")
    if b.log_group is not None and not _LOG_GROUP.fullmatch(b.log_group):
        raise ValueError(f"{b.log_group!r} is not a gangway log group (/gangway/…)")
    script = Template(_COMMENT.sub("", TEMPLATE.read_text())).substitute(
        tenant_q=shlex.quote(b.tenant_id),
        game_q=shlex.quote(b.game),
        volume_id_q=shlex.quote(b.volume_id or ""),
        disk_wait_s=b.disk_wait_s,
        identity_wait_s=b.identity_wait_s,
        log_group_q=shlex.quote(b.log_group or ""),
        parameter_prefix_q=shlex.quote(b.parameter_prefix),
        agent_url_q=shlex.quote(b.agent.url),
        agent_sha256=_sha256(b.agent.sha256),
        agent_requirements=_requirements(b.agent.requirements),
        mountpoint=MOUNTPOINT,
        game_user=GAME_USER,
        agent_toml=agent_toml(b),
        systemd_unit=SYSTEMD_UNIT,
    )
    if len(script.encode()) > MAX_USER_DATA:
        raise ValueError(f"user data is {len(script.encode())} bytes; EC2 allows {MAX_USER_DATA}")
    return script

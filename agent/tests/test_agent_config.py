"""The config file: both formats load, every malformed file is refused with a clear message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agent_fakes import config_dict

from gangway_agent import cli, config
from gangway_agent.config import LaunchMode, LogSinkKind, Transport
from gangway_agent.errors import ConfigError

TOML = """
tenant = "t1"
game = "valheim"
state_dir = "/var/lib/gangway"

[mqtt]
endpoint = "abc-ats.iot.eu-west-1.amazonaws.com"
cert = "/etc/gangway/cert.pem"
key = "/etc/gangway/key.pem"
ca = "/etc/gangway/AmazonRootCA1.pem"

[launch]
command = ["./valheim_server.x86_64", "-port", "2456"]
cwd = "/srv/gangway/game"
env = { SteamAppId = "892970" }
stop_signal = "INT"
save_command = ["/srv/gangway/save.sh"]
ports = { tcp = [], udp = [2456, 2457] }

[idle]
startup_grace_s = 900
"""


def test_toml_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(TOML)
    cfg = config.load(path)
    assert cfg.cmd_topic == "gangway/t1/valheim/cmd"
    assert cfg.evt_topic == "gangway/t1/valheim/evt"
    assert cfg.mqtt.transport is Transport.MTLS and cfg.mqtt.port == 8883
    assert cfg.mqtt.client_id == "gangway-t1-valheim"
    assert cfg.launch.stop_signal is signal.SIGINT
    assert cfg.launch.ports.udp == (2456, 2457)
    assert (cfg.idle.warn_after_s, cfg.idle.stop_after_s, cfg.idle.startup_grace_s) == (1200, 1800, 900)
    assert cfg.sftp.port == 2222 and cfg.firewall.table == "gangway"
    assert cfg.logs.sink is LogSinkKind.FILE
    assert cfg.launch.mode is LaunchMode.PROCESS and cfg.idle.check_interval_s == 60  # the defaults


def test_json(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(config_dict(tmp_path)))
    cfg = config.load(path)
    assert cfg.mqtt.transport is Transport.PLAIN and cfg.mqtt.port == 1883


def _broken(tmp_path: Path, change: dict[str, Any]) -> dict[str, Any]:
    data = config_dict(tmp_path)
    for dotted, value in change.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return data


@pytest.mark.parametrize(("change", "message"), [
    ({"tenant": None}, "missing required key tenant"),
    ({"game": "has space"}, "game must match"),
    ({"mqtt.port": 70000}, "mqtt.port must be a port number"),
    ({"mqtt.transport": "websocket"}, "mqtt.transport must be one of"),
    ({"mqtt.transport": "mtls"}, "mqtt.cert, mqtt.key, mqtt.ca missing"),
    ({"launch.command": []}, "launch.command must be a non-empty list"),
    ({"launch.command": "run.sh"}, "launch.command must be a non-empty list"),
    ({"launch.stop_signal": "SIGNOPE"}, "unknown signal"),
    ({"launch.ports": {"tcp": ["27015"]}}, "launch.ports.tcp must be a list of port numbers"),
    ({"launch.env": {"A": 1}}, "launch.env must be a table of strings"),
    ({"idle": {"warn_after_s": 600, "stop_after_s": 300}}, "stop_after_s must be greater"),
    ({"idle": {"warn_after_s": "soon"}}, "idle.warn_after_s must be a number"),
    ({"sftp": {"enabled": "yes"}}, "sftp.enabled must be true or false"),
    ({"launch": "nope"}, "launch. must be a table"),
    ({"launch.mode": "docker"}, "launch.mode must be one of: process, systemd"),
    ({"launch.unit": "game unit"}, "launch.unit must match"),
    ({"idle": {"check_interval_s": 0}}, "idle.check_interval_s must be a number >= 0.1"),
])
def test_malformed_values(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        config.parse(_broken(tmp_path, change))


def test_unparsable_files(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("tenant = ")
    (tmp_path / "a.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid toml"):
        config.load(tmp_path / "a.toml")
    with pytest.raises(ConfigError, match="not valid json"):
        config.load(tmp_path / "a.json")
    with pytest.raises(ConfigError, match="cannot read config"):
        config.load(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="config must be a table"):
        config.parse([1, 2])


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"tenant": "t1"}')
    assert cli.main(["--config", str(bad)]) == 2
    assert "config error: missing required key game" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps(config_dict(tmp_path)))
    assert cli.main(["--config", str(good), "--check"]) == 0
    assert "config OK: t1/alpha" in capsys.readouterr().out


def test_console_script_fails_cleanly_and_imports_little(tmp_path: Path) -> None:
    """The real process: a clear message and exit 2; importing the CLI loads neither boto3 nor awscrt."""
    (tmp_path / "bad.toml").write_text("[mqtt]\n")
    argv = [sys.executable, "-m", "gangway_agent.cli", "-c", str(tmp_path / "bad.toml")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=dict(os.environ))
    assert proc.returncode == 2
    assert "config error: missing required key tenant" in proc.stderr
    probe = "import sys, gangway_agent.cli; print(sorted(m for m in ('boto3', 'awscrt') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["agent.toml", "local.json"])
def test_shipped_examples_are_valid(name: str) -> None:
    cfg = config.load(Path(__file__).resolve().parents[1] / "examples" / name)
    assert cfg.tenant and cfg.game

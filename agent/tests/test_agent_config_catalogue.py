"""The catalogue's keys in agent.toml: `[install]`, `[ready]`, `launch.console_save`/`console_stop`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agent_fakes import config_dict

from gangway_agent import config
from gangway_agent.config import ArchiveKind, InstallMethod, Proto, ReadySignal
from gangway_agent.errors import ConfigError

SHA = "ab" * 32


def _with(tmp: Path, **sections: Any) -> dict[str, Any]:
    data = config_dict(tmp)
    for key, value in sections.items():
        if key == "launch":
            data["launch"].update(value)
        else:
            data[key] = value
    return data


def test_absent_means_todays_behaviour(tmp_path: Path) -> None:
    cfg = config.parse(config_dict(tmp_path))
    assert cfg.install is None
    assert cfg.ready.signal is ReadySignal.NONE
    assert cfg.launch.console_save is None and cfg.launch.console_stop is None


def test_each_install_method(tmp_path: Path) -> None:
    apt = config.parse(_with(tmp_path, install={"method": "apt", "packages": ["minetest-server"]})).install
    assert apt is not None and apt.method is InstallMethod.APT and apt.packages == ("minetest-server",)
    assert apt.version == "1" and apt.dir == tmp_path  # dir defaults to launch.cwd
    pod = config.parse(_with(tmp_path, install={
        "method": "podman", "image": "docker.io/itzg/minecraft-server:java21", "version": "3",
        "dir": "/srv/gangway/game"})).install
    assert pod is not None and pod.image == "docker.io/itzg/minecraft-server:java21"
    assert pod.version == "3" and pod.dir == Path("/srv/gangway/game")
    bare = config.parse(_with(tmp_path, install={"method": "podman", "image": "docker.io/library/x:1"},
                              launch={"command": []}))
    assert bare.launch.command == ()  # the image's own entrypoint, no arguments
    steam = config.parse(_with(tmp_path, install={"method": "steamcmd", "app_id": 896660})).install
    assert steam is not None and steam.app_id == 896660
    dl = config.parse(_with(tmp_path, install={
        "method": "download", "url": "https://example.org/s.zip", "sha256": SHA.upper(),
        "archive": "zip"})).install
    assert dl is not None and dl.sha256 == SHA and dl.archive is ArchiveKind.ZIP


def test_ready_and_console(tmp_path: Path) -> None:
    ready = {"signal": "port", "port": 27960, "proto": "udp", "timeout_s": 60}
    cfg = config.parse(_with(tmp_path, ready=ready,
                             launch={"console_save": "save-all", "console_stop": "stop"}))
    assert (cfg.ready.signal, cfg.ready.port, cfg.ready.proto, cfg.ready.timeout_s) == (
        ReadySignal.PORT, 27960, Proto.UDP, 60)
    assert (cfg.launch.console_save, cfg.launch.console_stop) == ("save-all", "stop")
    log = config.parse(_with(tmp_path, ready={"signal": "log", "pattern": r"Server (ready|started)"})).ready
    assert log.pattern is not None and log.pattern.search("Server started on 30000")
    query = {"protocol": "quake3"}
    by_query = config.parse(_with(tmp_path, ready={"signal": "query"}, query=query))
    assert by_query.ready.signal is ReadySignal.QUERY


@pytest.mark.parametrize(("sections", "message"), [
    ({"install": {"packages": ["x"]}}, "missing required key install.method"),
    ({"install": {"method": "snap"}}, "install.method must be one of: apt, podman, steamcmd, download"),
    ({"install": {"method": "apt"}}, "missing required key install.packages"),
    ({"install": {"method": "apt", "packages": []}}, "install.packages must be a list of 1-100"),
    ({"install": {"method": "apt", "packages": ["Bad Name"]}}, "install.packages must be a list"),
    ({"install": {"method": "apt", "packages": ["a1"], "image": "x"}}, "install.image does not apply"),
    ({"install": {"method": "apt", "packages": ["a1"], "colour": 1}}, "install: unknown key(s) colour"),
    ({"install": {"method": "apt", "packages": ["a1"], "version": "1 2"}}, "install.version must match"),
    ({"install": {"method": "apt", "packages": ["a1"], "dir": "game"}}, "install.dir must be an absolute"),
    ({"install": {"method": "podman", "image": "no spaces allowed"}}, "install.image must be an image"),
    ({"install": {"method": "steamcmd", "app_id": "896660"}}, "install.app_id must be a Steam app id"),
    ({"install": {"method": "steamcmd", "app_id": True}}, "install.app_id must be a Steam app id"),
    ({"install": {"method": "download", "url": "ftp://x/y", "sha256": SHA}}, "install.url must be an http"),
    ({"install": {"method": "download", "url": "https://x/y", "sha256": "abc"}}, "install.sha256 must be 64"),
    ({"install": {"method": "download", "url": "https://x/y"}}, "missing required key install.sha256"),
    ({"install": {"method": "download", "url": "https://x/y", "sha256": SHA, "archive": "rar"}},
     "install.archive must be one of: zip, tar, none"),
    ({"install": "apt"}, "install. must be a table"),
    ({"ready": {"signal": "ping"}}, "ready.signal must be one of: query, port, log, none"),
    ({"ready": {"signal": "port"}}, "ready.port is missing"),
    ({"ready": {"signal": "port", "port": 0}}, "ready.port must be a port number"),
    ({"ready": {"signal": "port", "port": 80, "proto": "sctp"}}, "ready.proto must be one of: tcp, udp"),
    ({"ready": {"signal": "log"}}, "missing required key ready.pattern"),
    ({"ready": {"signal": "log", "pattern": "("}}, "ready.pattern is not a valid regular expression"),
    ({"ready": {"signal": "none", "timeout_s": 0}}, "ready.timeout_s must be a number >= 1"),
    ({"ready": {"signal": "none", "wait": 1}}, "ready: unknown key(s) wait"),
    ({"ready": {"signal": "query"}}, 'ready.signal = "query" needs a [query] table'),
    ({"launch": {"console_stop": "stop\nrm -rf /"}}, "launch.console_stop must be one line"),
    ({"launch": {"console_save": ""}}, "launch.console_save must be one line"),
    ({"launch": {"console_save": 1}}, "launch.console_save must be one line"),
    ({"launch": {"command": []}, "install": {"method": "apt", "packages": ["a1"]}},
     "launch.command must be a non-empty list"),
])
def test_refused_with_the_key_named(tmp_path: Path, sections: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.parse(_with(tmp_path, **sections))
    assert message in str(err.value)


def test_shipped_example_has_the_catalogue_keys() -> None:
    cfg = config.load(Path(__file__).resolve().parents[1] / "examples" / "catalogue.toml")
    assert cfg.install is not None and cfg.install.method is InstallMethod.APT
    assert cfg.ready.signal is ReadySignal.PORT

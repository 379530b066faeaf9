"""``[query]`` in the agent's config (the catalogue seam of issue 17): checked once, absent = today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agent_fakes import config_dict

from gangway_agent import config
from gangway_agent.config import QueryConfig, QueryProtocol
from gangway_agent.errors import ConfigError

TOML = """
tenant = "t1"
game = "arena"

[mqtt]
endpoint = "127.0.0.1"
transport = "plain"

[launch]
command = ["/usr/games/openarena-server", "+map", "oa_dm1"]
cwd = "/srv/gangway/game"

[query]
protocol = "quake3"
host = "127.0.0.1"
port = 27960
interval_s = 30
"""


def test_the_seam_example_parses(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(TOML)
    cfg = config.load(tmp_path / "agent.toml")
    assert cfg.query == QueryConfig(QueryProtocol.QUAKE3, "127.0.0.1", 27960, 30.0)


def _with_query(tmp_path: Path, query: Any) -> config.Config:
    data = config_dict(tmp_path)
    if query is not None:
        data["query"] = query
    return config.parse(data)


@pytest.mark.parametrize("query", [None, {}, {"protocol": "none", "port": 1}])
def test_absent_empty_or_none_counts_players_as_today(tmp_path: Path, query: Any) -> None:
    assert _with_query(tmp_path, query).query is None


@pytest.mark.parametrize(("protocol", "port"), [
    ("minecraft-java", 25565), ("minecraft-bedrock", 19132), ("a2s", 27015), ("quake3", 27960),
])
def test_defaults_are_the_protocols_usual_port_on_loopback(tmp_path: Path, protocol: str, port: int) -> None:
    q = _with_query(tmp_path, {"protocol": protocol}).query
    assert q == QueryConfig(QueryProtocol(protocol), "127.0.0.1", port, 30.0)


def test_a_host_name_is_accepted(tmp_path: Path) -> None:
    q = _with_query(tmp_path, {"protocol": "a2s", "host": "localhost", "port": 2457, "interval_s": 5}).query
    assert q is not None and (q.host, q.port, q.interval_s) == ("localhost", 2457, 5.0)


@pytest.mark.parametrize(("query", "message"), [
    ({"port": 27960}, "missing required key query.protocol"),
    ({"protocol": "gamespy"}, "query.protocol must be one of: minecraft-java, minecraft-bedrock, a2s"),
    ({"protocol": "quake3", "port": 0}, "query.port must be a port number"),
    ({"protocol": "quake3", "port": "27960"}, "query.port must be a port number"),
    ({"protocol": "quake3", "host": ""}, "query.host must be a non-empty string"),
    ({"protocol": "quake3", "host": "::1"}, "query.host must be an IPv4 address or a host name"),
    ({"protocol": "quake3", "host": "999.1.1.1"}, "query.host must be an IPv4 address or a host name"),
    ({"protocol": "quake3", "host": "a b"}, "query.host must be an IPv4 address or a host name"),
    ({"protocol": "quake3", "interval_s": 0.5}, "query.interval_s must be a number >= 1"),
    ({"protocol": "quake3", "interval_s": True}, "query.interval_s must be a number >= 1"),
    ("quake3", "query. must be a table"),
])
def test_malformed_query_is_refused_with_the_key(tmp_path: Path, query: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        _with_query(tmp_path, query)


def test_the_query_libraries_load_only_when_a_probe_runs() -> None:
    """``gangway-agent --check`` and an agent without [query] never import them (dnspython alone is 1 MiB)."""
    probe = ("import sys, gangway_agent.cli, gangway_agent.query; "
             "print(sorted(m for m in ('mcstatus', 'a2s', 'dns', 'asyncio_dgram') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30,
                         check=True)
    assert out.stdout.strip() == "[]"

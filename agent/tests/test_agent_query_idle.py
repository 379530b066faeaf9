"""Idle by real players: with ``[query]``, the game's own answer decides, not traffic. A connection
that is no player in the query (a port scanner, a launcher polling the server) keeps no game up; a
player does; a query that stops answering is unknown, and traffic counts again until it answers.

The game is a real process holding real TCP connections (seen through the kernel's socket tables);
the query is a loopback server speaking ioquake3's getstatus; time is a test clock.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_broker import BackendClient, Broker
from agent_fakes import FakeClock, MemoryLink, config_dict, free_port, wait_port
from query_servers import Quake3Server

from gangway_agent import config
from gangway_agent.activity import SocketTables, Watched
from gangway_agent.agent import Agent, Services
from gangway_agent.config import Ports
from gangway_agent.idle import IdleState
from gangway_agent.logsink import NullSink
from gangway_agent.protocol import EventType, encode, parse_outgoing
from gangway_agent.query import GameQuery
from gangway_agent.seams import SubprocessRunner

MIN = 60.0
Game = tuple[Agent, MemoryLink, FakeClock, int, Quake3Server]


@pytest.fixture
def game(tmp_path: Path) -> Iterator[Game]:
    clock, port = FakeClock(), free_port()
    with Quake3Server([]) as q3:
        data = config_dict(tmp_path, game_port=port)
        data["idle"] = {"warn_after_s": 1200, "stop_after_s": 1800, "startup_grace_s": 300,
                        "check_interval_s": 60}
        data["query"] = {"protocol": "quake3", "host": "127.0.0.1", "port": q3.port, "interval_s": 60}
        cfg = config.parse(data)
        assert cfg.query is not None
        link = MemoryLink()
        agent = Agent(cfg, Services(link=link, clock=clock, runner=SubprocessRunner(), sink=NullSink(),
                                    activity=SocketTables(Watched.of(cfg.launch.ports)),
                                    query=GameQuery(cfg.query)))
        agent.start()
        agent.game.start()
        wait_port(port)
        try:
            yield agent, link, clock, port, q3
        finally:
            agent.close()


def _run_minutes(game: Game, minutes: int) -> list[dict[str, Any]]:
    """Move the clock a minute at a time; the player and idle events the agent sent meanwhile."""
    agent, link, clock, _port, _q3 = game
    wanted = {EventType.PLAYERS.value, EventType.IDLE_WARNING.value, EventType.IDLE_SHUTDOWN.value,
              EventType.IDLE_CLEARED.value}
    for _ in range(minutes):
        clock.advance(MIN)
        agent.tick()
    return [m for m in link.drain() if m["type"] in wanted]


def test_traffic_that_is_no_player_does_not_keep_the_game_up(game: Game) -> None:
    _agent, _link, _clock, port, q3 = game
    with socket.create_connection(("127.0.0.1", port)):
        time.sleep(0.1)
        assert SocketTables(Watched.of(Ports(tcp=(port,)))).players() == 1  # traffic sees it...
        events = _run_minutes(game, 36)
    assert q3.requests >= 36
    # ...but the query says nobody plays: warned at 25 minutes (5 of grace + 20), stopped at 35.
    assert [(e["type"], e["body"]) for e in events] == [
        ("players", {"count": 0, "previous": None, "names": []}),
        ("idle.warning", {"idle_s": 1200, "shutdown_in_s": 600}),
        ("idle.shutdown", {"idle_s": 1800}),
    ]


def test_a_player_in_the_query_keeps_it_up_and_is_named(game: Game) -> None:
    agent, link, _clock, _port, q3 = game
    q3.players = [(4, 52, "^1ana")]
    events = _run_minutes(game, 120)
    assert [(e["type"], e["body"]) for e in events] == [
        ("players", {"count": 1, "previous": None, "names": ["ana"]}),
    ]
    assert agent.idle.state is IdleState.ACTIVE and agent.game.status().running
    q3.players = [(4, 52, "^1ana"), (0, 70, "bo")]
    events = _run_minutes(game, 1)
    assert [e["body"] for e in events] == [{"count": 2, "previous": 1, "names": ["ana", "bo"]}]
    q3.players = [(0, 70, "bo"), (1, 40, "cy")]  # one left, one came: same count, new names
    events = _run_minutes(game, 1)
    assert [e["body"] for e in events] == [{"count": 2, "previous": 2, "names": ["bo", "cy"]}]
    # The status reply keeps a plain count.
    agent.handle(encode("s1", "status", {}))
    reply = link.next_of("status.reply")
    assert reply["body"]["players"] == 2


def test_a_player_returning_after_the_warning_clears_it(game: Game) -> None:
    _agent, _link, _clock, _port, q3 = game
    assert [e["type"] for e in _run_minutes(game, 26)] == ["players", "idle.warning"]
    q3.players = [(0, 30, "ana")]
    events = _run_minutes(game, 1)
    assert [(e["type"], e["body"]) for e in events] == [
        ("players", {"count": 1, "previous": 0, "names": ["ana"]}),
        ("idle.cleared", {"players": 1}),
    ]


def test_a_short_idle_check_counts_more_often_than_the_querys_interval(tmp_path: Path) -> None:
    """The stage's idle check (short here, as an operator may set it) bounds how seldom the query asks:
    a query interval of a minute does not make a 5 s check count once a minute."""
    clock = FakeClock()
    with Quake3Server([(3, 40, "ana")]) as q3:
        data = config_dict(tmp_path)
        data["idle"] = {"warn_after_s": 1200, "stop_after_s": 1800, "startup_grace_s": 300,
                        "check_interval_s": 5}
        data["query"] = {"protocol": "quake3", "host": "127.0.0.1", "port": q3.port, "interval_s": 60}
        cfg = config.parse(data)
        assert cfg.query is not None
        services = Services(link=MemoryLink(), clock=clock, runner=SubprocessRunner(), sink=NullSink(),
                            activity=SocketTables(Watched.of(cfg.launch.ports)), query=GameQuery(cfg.query))
        agent = Agent(cfg, services)
        try:
            for _ in range(12):  # one minute, 5 s at a time
                clock.advance(5)
                agent.tick()
            assert q3.requests >= 12, q3.requests
        finally:
            agent.close()


def test_an_unanswered_query_counts_traffic_again(game: Game) -> None:
    agent, _link, _clock, port, q3 = game
    q3.close()  # the game's query is gone (hung, restarting): unknown, not "nobody"
    with socket.create_connection(("127.0.0.1", port)):
        time.sleep(0.1)
        events = _run_minutes(game, 60)
    assert [(e["type"], e["body"]) for e in events] == [
        ("players", {"count": 1, "previous": None, "names": None}),
    ]
    assert agent.idle.state is IdleState.ACTIVE
    assert agent.player_names is None


@pytest.mark.requires("mosquitto", root=False)
def test_the_agent_process_names_the_players_over_mqtt(tmp_path: Path, broker: Broker) -> None:
    """The real ``gangway-agent`` built from a config with ``[query]``: its ``players`` event names them."""
    with Quake3Server([(7, 48, "^2ana"), (0, 0, "Sarge")]) as q3:
        data = config_dict(tmp_path)
        data["mqtt"] = {"endpoint": "127.0.0.1", "port": broker.plain_port, "transport": "plain"}
        data["query"] = {"protocol": "quake3", "port": q3.port, "interval_s": 1}
        path = tmp_path / "agent.json"
        path.write_text(json.dumps(data))
        backend = BackendClient("127.0.0.1", broker.plain_port, client_id="query-backend")
        proc = subprocess.Popen([sys.executable, "-m", "gangway_agent.cli", "-c", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            event = backend.wait(lambda _t, m: m["type"] == "players", timeout=20)
            assert event["body"] == {"count": 2, "previous": None, "names": ["ana", "Sarge"]}
            parse_outgoing(json.dumps(event).encode())
            assert q3.requests >= 1
        finally:
            proc.terminate()
            proc.wait(20)
            backend.stop()

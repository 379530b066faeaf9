"""Idle detection: live connections keep a game up; without any, a warning then a shutdown, on time.

Time is a test clock moved by hand; connections are real sockets seen through the kernel's tables.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_fakes import FakeClock, MemoryLink, config_dict, free_port, wait_port

from gangway_agent import config
from gangway_agent.activity import (
    ProbeCommand,
    SocketTables,
    Watched,
    parse_conntrack,
    parse_proc_net,
    pick_source,
)
from gangway_agent.agent import Agent, Services
from gangway_agent.config import IdleConfig, Ports
from gangway_agent.idle import SHUTDOWN_REPEAT_S, IdleEvent, IdleMonitor, IdleState
from gangway_agent.logsink import NullSink
from gangway_agent.protocol import EventType
from gangway_agent.seams import SubprocessRunner

MIN = 60.0


def _agent(tmp: Path, port: int, clock: FakeClock) -> tuple[Agent, MemoryLink]:
    data = config_dict(tmp, game_port=port)
    data["idle"] = {"warn_after_s": 1200, "stop_after_s": 1800, "startup_grace_s": 300,
                    "check_interval_s": 60}
    cfg = config.parse(data)
    link = MemoryLink()
    agent = Agent(cfg, Services(link=link, clock=clock, runner=SubprocessRunner(), sink=NullSink(),
                                activity=SocketTables(Watched.of(cfg.launch.ports))))
    return agent, link


@pytest.fixture
def game(tmp_path: Path) -> Iterator[tuple[Agent, MemoryLink, FakeClock, int]]:
    clock, port = FakeClock(), free_port()
    agent, link = _agent(tmp_path, port, clock)
    agent.start()
    agent.game.start()
    wait_port(port)
    try:
        yield agent, link, clock, port
    finally:
        agent.close()


def _run_minutes(agent: Agent, clock: FakeClock, minutes: int) -> None:
    for _ in range(minutes):
        clock.advance(MIN)
        agent.tick()


def _events(link: MemoryLink, *types: EventType) -> list[dict[str, Any]]:
    wanted = {t.value for t in types}
    return [m for m in link.drain() if m["type"] in wanted]


def test_live_connection_is_never_stopped(game: tuple[Agent, MemoryLink, FakeClock, int]) -> None:
    agent, link, clock, port = game
    with socket.create_connection(("127.0.0.1", port)):
        time.sleep(0.1)
        _run_minutes(agent, clock, 120)
        events = _events(link, EventType.IDLE_WARNING, EventType.IDLE_SHUTDOWN, EventType.PLAYERS)
    assert [e["type"] for e in events] == ["players"]
    assert events[0]["body"] == {"count": 1, "previous": None, "names": None}  # traffic has no names
    assert agent.idle.state is IdleState.ACTIVE and agent.game.status().running


Game = tuple[Agent, MemoryLink, FakeClock, int]


def test_no_players_warns_then_asks_for_shutdown_on_time(game: Game) -> None:
    agent, link, clock, _port = game
    seen: list[tuple[float, str, dict[str, Any]]] = []
    start = clock.now()
    for _ in range(60):
        clock.advance(MIN)
        agent.tick()
        for e in _events(link, EventType.IDLE_WARNING, EventType.IDLE_SHUTDOWN):
            seen.append(((clock.now() - start) / MIN, e["type"], e["body"]))
    # 5 min start-up grace, then warn at 20 and shut down at 30 idle minutes; asked again every 5
    # minutes while nobody stops it (a backend still finishing the start could not act on the first).
    assert seen == [
        (25.0, "idle.warning", {"idle_s": 1200, "shutdown_in_s": 600}),
        (35.0, "idle.shutdown", {"idle_s": 1800}),
        *((m, "idle.shutdown", {"idle_s": (m - 5) * 60}) for m in (40.0, 45.0, 50.0, 55.0, 60.0)),
    ]


def test_a_repeated_shutdown_is_not_asked_for_once_a_player_is_back() -> None:
    clock = FakeClock()
    monitor = IdleMonitor(IdleConfig(warn_after_s=20, stop_after_s=30, startup_grace_s=0), clock)
    clock.advance(30)
    assert monitor.observe(0) == IdleEvent(EventType.IDLE_SHUTDOWN, {"idle_s": 30})
    clock.advance(SHUTDOWN_REPEAT_S - 1)
    assert monitor.observe(0) is None  # not yet: once per SHUTDOWN_REPEAT_S
    clock.advance(1)
    assert monitor.observe(0) == IdleEvent(EventType.IDLE_SHUTDOWN, {"idle_s": round(30 + SHUTDOWN_REPEAT_S)})
    clock.advance(SHUTDOWN_REPEAT_S)
    assert monitor.observe(1) is None  # someone joined: the game is not idle any more
    clock.advance(SHUTDOWN_REPEAT_S)
    assert monitor.observe(1) is None


def test_a_player_after_the_warning_clears_it(game: tuple[Agent, MemoryLink, FakeClock, int]) -> None:
    agent, link, clock, port = game
    _run_minutes(agent, clock, 26)
    assert [e["type"] for e in _events(link, EventType.IDLE_WARNING)] == ["idle.warning"]
    with socket.create_connection(("127.0.0.1", port)):
        time.sleep(0.1)
        _run_minutes(agent, clock, 1)
        assert [e["body"] for e in _events(link, EventType.IDLE_CLEARED)] == [{"players": 1}]
    _run_minutes(agent, clock, 19)
    assert _events(link, EventType.IDLE_WARNING) == []
    _run_minutes(agent, clock, 2)
    assert len(_events(link, EventType.IDLE_WARNING)) == 1


def test_restarting_the_game_grants_the_grace_again() -> None:
    clock = FakeClock()
    mon = IdleMonitor(IdleConfig(warn_after_s=100, stop_after_s=200, startup_grace_s=50), clock)
    clock.advance(149)
    assert mon.observe(0) is None
    clock.advance(1)
    warn = mon.observe(0)
    assert warn is not None and warn.type is EventType.IDLE_WARNING
    mon.reset()
    clock.advance(149)
    assert mon.observe(0) is None and mon.state is IdleState.ACTIVE


def test_heartbeats_follow_the_clock(game: tuple[Agent, MemoryLink, FakeClock, int]) -> None:
    agent, link, clock, _ = game
    link.drain()
    _run_minutes(agent, clock, 3)
    beats = _events(link, EventType.HEARTBEAT)
    assert len(beats) == 3 and beats[0]["body"]["game_running"] is True


CONNTRACK = """\
ipv4     2 tcp      6 431999 ESTABLISHED src=198.51.100.7 dst=10.0.0.5 sport=50123 dport=27015 \
src=10.0.0.5 dst=198.51.100.7 sport=27015 dport=50123 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 110 SYN_SENT src=198.51.100.9 dst=10.0.0.5 sport=50124 dport=27015 [UNREPLIED] \
src=10.0.0.5 dst=198.51.100.9 sport=27015 dport=50124 mark=0 zone=0 use=2
ipv4     2 udp      17 170 src=203.0.113.4 dst=10.0.0.5 sport=6000 dport=2456 src=10.0.0.5 \
dst=203.0.113.4 sport=2456 dport=6000 [ASSURED] mark=0 zone=0 use=2
ipv6     10 udp      17 29 src=2001:db8::5 dst=2001:db8::1 sport=6001 dport=2457 [UNREPLIED] \
src=2001:db8::1 dst=2001:db8::5 sport=2457 dport=6001 mark=0 zone=0 use=2
udp      17 25 src=203.0.113.4 dst=10.0.0.5 sport=6002 dport=2457 [UNREPLIED] src=10.0.0.5 \
dst=203.0.113.4 sport=2457 dport=6002 mark=0 use=1
ipv4     2 udp      17 25 src=203.0.113.8 dst=10.0.0.5 sport=5353 dport=53 src=10.0.0.5 \
dst=203.0.113.8 sport=53 dport=5353 mark=0 zone=0 use=2
"""


def test_conntrack_counts_tcp_and_udp_peers() -> None:
    watched = Watched.of(Ports(tcp=(27015,), udp=(2456, 2457)))
    assert parse_conntrack(CONNTRACK, watched) == {"198.51.100.7", "203.0.113.4", "2001:db8::5"}


def test_proc_net_tables_decode_v4_and_v6() -> None:
    tcp = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:6987 0200007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 1\n"
        "   1: 0100007F:6987 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2\n"
    )
    assert parse_proc_net(tcp, "tcp", Watched.of(Ports(tcp=(0x6987,)))) == {"127.0.0.2"}
    tcp6 = (
        "  sl  local_address                         remote_address                        st\n"
        "   0: 00000000000000000000000001000000:6987 B80D0120000000000000000005000000:C350 01\n"
    )
    assert parse_proc_net(tcp6, "tcp", Watched.of(Ports(tcp=(0x6987,)))) == {"2001:db8::5"}


def test_probe_and_source_choice(tmp_path: Path) -> None:
    runner = SubprocessRunner()
    assert ProbeCommand(("echo", "7 players"), runner).players() == 7
    watched = Watched.of(Ports(tcp=(1,)))
    assert isinstance(pick_source(watched, runner, ("echo", "1")), ProbeCommand)
    ct = tmp_path / "nf_conntrack"
    ct.write_text(CONNTRACK)
    src = pick_source(Watched.of(Ports(tcp=(27015,))), runner, None, conntrack_file=ct)
    assert src.players() == 1
    assert json.dumps(type(src).__name__) == '"ConntrackFile"'

"""The game's own player query (query/): each protocol spoken for real through its library (or, for
Quake 3, by hand) against loopback servers that speak the wire format, a real OpenArena server, and
a reply recorded byte for byte from one. A probe that fails is unknown (None), never 0 players."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require
from hypothesis import given, settings
from hypothesis import strategies as st
from query_servers import A2sServer, BedrockServer, JavaStatusServer, Quake3Server

from gangway_agent.config import QueryConfig, QueryProtocol
from gangway_agent.errors import QueryFailed
from gangway_agent.query import GameQuery, Players, answers, clean_names, probe
from gangway_agent.query.quake3 import COLOUR, parse_status

DATA = Path(__file__).parent / "data"
# Recorded from Debian 12's openarena-server 0.8.8 (ioquake3 1.36) with bot_minplayers 3, asked
# `getstatus rec`: two bots on oa_dm1.
RECORDED = DATA / "openarena-0.8.8-status-two-bots.bin"
LOCAL = "127.0.0.1"


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


# -- Quake 3 ----------------------------------------------------------------------------------------

def test_the_recorded_openarena_reply_parses_byte_for_byte() -> None:
    reply = RECORDED.read_bytes()
    assert reply.startswith(b"\xff\xff\xff\xffstatusResponse\n\\challenge\\rec\\")
    assert parse_status(reply, "rec") == Players(2, ("Broadklin", "Liz"))
    with pytest.raises(Exception, match="another challenge"):
        parse_status(reply, "other")  # a late reply to an earlier probe


def test_the_recorded_reply_through_the_socket() -> None:
    with Quake3Server([], replay=RECORDED.read_bytes()) as server:
        assert probe(QueryProtocol.QUAKE3, LOCAL, server.port) == Players(2, ("Broadklin", "Liz"))


def test_quake3_colour_codes_go_and_names_are_bounded() -> None:
    lines = [(3, 48, "^1Red^7Sarge"), (0, 999, ""), (1, 20, "^^4blue"), (0, 12, "x" * 80)]
    many = [(0, 30, f"player{i}") for i in range(100)]
    with Quake3Server(lines) as server:
        got = probe(QueryProtocol.QUAKE3, LOCAL, server.port)
    assert got == Players(4, ("RedSarge", "^blue", "x" * 64))
    with Quake3Server(many) as server:
        got = probe(QueryProtocol.QUAKE3, LOCAL, server.port)
    assert got is not None and got.count == 100
    assert got.names == tuple(f"player{i}" for i in range(64))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048), st.booleans())
def test_any_datagram_parses_within_the_contract_or_is_refused(tail: bytes, framed: bool) -> None:
    reply = (b"\xff\xff\xff\xffstatusResponse\n" if framed else b"") + tail
    try:
        got = parse_status(reply, "abc")
    except QueryFailed:
        return
    assert got.count >= 0 and got.names is not None and len(got.names) <= min(got.count, 64)
    assert all(1 <= len(n) <= 64 and n == n.strip() and n.isprintable() for n in got.names)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=100), max_size=100))
def test_names_are_cleaned_to_the_contract(raw: list[str]) -> None:
    names = clean_names(raw, COLOUR)
    assert len(names) <= 64
    assert all(1 <= len(n) <= 64 and n == n.strip() and n.isprintable() for n in names)


def test_quake3_garbage_or_silence_is_unknown() -> None:
    with A2sServer([], raw=lambda _req: [b"\xff\xff\xff\xffprint\nno\n"]) as junk:
        assert probe(QueryProtocol.QUAKE3, LOCAL, junk.port, timeout=0.5) is None
        assert junk.requests == 1
    assert probe(QueryProtocol.QUAKE3, LOCAL, _closed_udp_port(), timeout=0.5) is None
    assert not answers(QueryProtocol.QUAKE3, LOCAL, _closed_udp_port(), timeout=0.5)


@pytest.fixture
def openarena(tmp_path: Path) -> Iterator[int]:
    """A real OpenArena dedicated server on a loopback port of its own, stopped after the test."""
    # Debian installs it in /usr/games, which is not on every PATH (root's, for one).
    server = shutil.which("openarena-server") or shutil.which("openarena-server", path="/usr/games")
    if server is None:
        require("openarena-server", root=False)
    port = _closed_udp_port()
    argv = [str(server), "+set", "dedicated", "1", "+set", "net_ip", LOCAL, "+set", "net_port",
            str(port), "+set", "sv_hostname", "gangway-test", "+map", "oa_dm1"]
    log = (tmp_path / "openarena.log").open("wb")
    proc = subprocess.Popen(argv, cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)},
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_a_real_openarena_server_answers_with_no_players(openarena: int) -> None:
    query = GameQuery(QueryConfig(QueryProtocol.QUAKE3, LOCAL, openarena, interval_s=30))
    # The map loads in a few seconds; until then the query is unanswered (unknown), never "0 players".
    deadline = time.monotonic() + 90
    while not query.answers():
        assert query.players() is None or query.answers()  # (it may have come up in between)
        assert time.monotonic() < deadline, "openarena-server never answered getstatus"
        time.sleep(0.2)
    assert query.players() == Players(0, ())


# -- Minecraft ------------------------------------------------------------------------------------

def _java_status(online: int, sample: list[dict[str, str]] | None) -> dict[str, object]:
    players: dict[str, object] = {"max": 20, "online": online}
    if sample is not None:
        players["sample"] = sample
    return {"version": {"name": "1.21.4", "protocol": 769}, "players": players,
            "description": {"text": "A gangway server"}, "enforcesSecureChat": True}


def test_minecraft_java_counts_and_names_the_sample() -> None:
    sample = [{"name": "ana", "id": str(uuid.uuid4())}, {"name": "§ebo", "id": str(uuid.uuid4())},
              {"name": "§6Welcome to the server", "id": "00000000-0000-0000-0000-000000000000"}]
    with JavaStatusServer(_java_status(2, sample)) as server:
        assert probe(QueryProtocol.MINECRAFT_JAVA, LOCAL, server.port) == Players(2, ("ana", "bo"))
        assert answers(QueryProtocol.MINECRAFT_JAVA, LOCAL, server.port)
        assert server.requests == 2


def test_minecraft_java_hidden_or_empty_lists() -> None:
    with JavaStatusServer(_java_status(3, None)) as hidden:  # hide-online-players
        assert probe(QueryProtocol.MINECRAFT_JAVA, LOCAL, hidden.port) == Players(3, None)
    with JavaStatusServer(_java_status(0, [])) as empty:
        assert probe(QueryProtocol.MINECRAFT_JAVA, LOCAL, empty.port) == Players(0, ())


def test_minecraft_java_oversized_or_slow_replies_are_unknown() -> None:
    # A frame that claims 2 GiB and streams 100 MB of it: refused at its length, so the client hangs up at
    # once and takes at most what the sockets' buffers hold (read on, it would take all 100 MB).
    huge = b"\xff\xff\xff\xff\x07"  # varint 2**31 - 1
    with JavaStatusServer(_java_status(1, None), reply=huge, junk=100_000_000) as server:
        assert probe(QueryProtocol.MINECRAFT_JAVA, LOCAL, server.port, timeout=5) is None
        assert server.requests == 1
        assert server.answered.wait(10)
        assert server.sent < 32 * 2**20, server.sent
    # A whole reply dripped a byte every 50 ms would take seconds: the deadline ends the probe first
    # (with the library's per-read timeout alone, this would succeed with 1 player).
    with JavaStatusServer(_java_status(1, None), drip_s=0.05) as slow:
        assert probe(QueryProtocol.MINECRAFT_JAVA, LOCAL, slow.port, timeout=0.5) is None
    assert probe(QueryProtocol.MINECRAFT_JAVA, LOCAL, _closed_udp_port(), timeout=0.5) is None


def test_minecraft_bedrock_counts_without_names() -> None:
    with BedrockServer(online=3) as server:
        assert probe(QueryProtocol.MINECRAFT_BEDROCK, LOCAL, server.port) == Players(3, None)
        assert answers(QueryProtocol.MINECRAFT_BEDROCK, LOCAL, server.port)
    assert probe(QueryProtocol.MINECRAFT_BEDROCK, LOCAL, _closed_udp_port(), timeout=0.5) is None


# -- Steam A2S ------------------------------------------------------------------------------------

def test_a2s_counts_players_less_bots_and_names_them_after_the_challenge() -> None:
    with A2sServer([("ana", 5, 61.0), ("", 0, 1.0), ("bo", 2, 30.5)], bots=1) as server:
        assert probe(QueryProtocol.A2S, LOCAL, server.port) == Players(3, ("ana", "bo"))
        assert server.requests == 2  # INFO and PLAYER, each answered only with the challenge
        assert answers(QueryProtocol.A2S, LOCAL, server.port)


def test_a2s_names_that_outnumber_the_count_are_unknown() -> None:
    # Two bots among three listed: A2S_PLAYER does not say which, so no names rather than wrong ones.
    bots = [("Bot Bob", 0, 9.0), ("Bot Al", 0, 9.0)]
    with A2sServer([("ana", 5, 61.0)], bots=2, extra_listed=bots) as server:
        assert probe(QueryProtocol.A2S, LOCAL, server.port) == Players(1, None)


def test_a2s_split_player_reply_is_put_together() -> None:
    crowd = [(f"player-{i:02d}-{'z' * 20}", i, float(i)) for i in range(40)]
    with A2sServer(crowd, split=300) as server:
        got = probe(QueryProtocol.A2S, LOCAL, server.port)
    assert got == Players(40, tuple(name for name, _, _ in crowd))


def test_a2s_without_a_player_list_still_counts() -> None:
    with A2sServer([("ana", 1, 1.0)], refuse_players=True) as server:
        assert probe(QueryProtocol.A2S, LOCAL, server.port, timeout=1) == Players(1, None)


def _split(msg_id: int, total: int, number: int, payload: bytes) -> bytes:
    return b"\xfe\xff\xff\xff" + struct.pack("<IBBH", msg_id, total, number, 1248) + payload


def test_a2s_split_parts_must_agree_on_their_reply() -> None:
    info = b"\xff\xff\xff\xff" + A2sServer([("ana", 1, 1.0)]).info()
    head, tail = info[:20], info[20:]

    def served(parts: list[bytes]) -> Players | None:
        with A2sServer([], raw=lambda _req: parts) as server:
            return probe(QueryProtocol.A2S, LOCAL, server.port, timeout=0.5)

    # INFO in two parts counts (PLAYER gets the same INFO back, the wrong type: no names)...
    assert served([_split(7, 2, 0, head), _split(7, 2, 1, tail)]) == Players(1, None)
    # ...but not parts of two replies, nor parts that disagree on how many there are.
    assert served([_split(7, 2, 0, head), _split(8, 2, 1, tail)]) is None
    assert served([_split(7, 3, 0, head), _split(7, 2, 1, tail), _split(7, 3, 2, b"")]) is None


@pytest.mark.parametrize("reply", [
    [_split(0x80000007, 1, 0, b"BZh9" + b"\x00" * 32)],  # compressed (a bzip2 bomb would be this)
    [_split(7, 200, n, b"x") for n in range(200)],  # more parts than any player list needs
    [b"\xff\xff\xff\xff\x49\x11gangway"],  # cut short
    [b"\x00\x01garbage"],
])
def test_a2s_hostile_replies_are_unknown(reply: list[bytes]) -> None:
    with A2sServer([], raw=lambda _req: reply) as server:
        assert probe(QueryProtocol.A2S, LOCAL, server.port, timeout=0.5) is None
        assert not answers(QueryProtocol.A2S, LOCAL, server.port, timeout=0.5)


def test_game_query_binds_the_config() -> None:
    with A2sServer([("ana", 1, 1.0)]) as server:
        query = GameQuery(QueryConfig(QueryProtocol.A2S, LOCAL, server.port, interval_s=1))
        assert query.players() == Players(1, ("ana",)) and query.answers()
    assert query.players() is None and not query.answers()  # the server is gone: unknown

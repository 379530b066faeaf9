"""The test Quake III client (devstack/quake3_client.py): its Huffman coder on vectors worked out by
hand from the algorithm, and the client against Debian's real openarena-server on loopback. The
server decoding our compressed connect, our coded netchan packets and our disconnect (which it only
executes when we echo the server id we decoded from its gamestate) is the proof of the coder."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gangway_agent.config import QueryConfig, QueryProtocol
from gangway_agent.query import GameQuery, Players
from hypothesis import given, settings
from hypothesis import strategies as st

from devstack.quake3_client import Quake3Client, Quake3Refused
from devstack.quake3_huffman import (
    MESSAGE_WEIGHTS,
    NYT,
    MessageReader,
    MessageWriter,
    compress,
    decompress,
    message_tree,
)
from tests.access_helpers import require_program

LOCAL = "127.0.0.1"
MAP_LOAD_S = 90
# The server answers an address's queries (getstatus, getchallenge) from a bucket of 10 that refills one a
# second, and goes silent when it is empty: poll no faster than it refills.
QUERY_EVERY_S = 1.1


# -- the coder ---------------------------------------------------------------------------------------

def test_compress_matches_vectors_worked_out_from_the_algorithm() -> None:
    # Length 1, big-endian; then the empty tree's NYT code (no bits) and 'a' = 0x61 sent most
    # significant bit first into the least significant bits of byte 2: 0,1,1,0,0,0,0,1 -> 0x86; the
    # engine always adds one more byte.
    assert compress(b"a") == b"\x00\x01\x86\x00"
    # Then 'a' is the root's right child (code "1") and stays there as its weight grows: three 1 bits.
    assert compress(b"aaaa") == b"\x00\x04\x86\x07"
    assert decompress(b"\x00\x04\x86\x07") == b"aaaa"
    # "aa": the second code would start at bit 24, past the 16 bits the engine allows; it would send
    # garbage, so we refuse.
    with pytest.raises(ValueError, match="does not compress"):
        compress(b"aa")


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=400))
def test_compress_round_trips_or_refuses(data: bytes) -> None:
    try:
        packed = compress(data)
    except ValueError:
        return
    assert decompress(packed) == data
    assert len(packed) <= max(len(data), 2) + 2  # the prefix and a literal may overrun by a byte each


def test_decompress_refuses_a_truncated_code() -> None:
    packed = compress(b'"\\name\\someone\\rate\\25000\\snaps\\20\\model\\sarge\\headmodel\\sarge"')
    with pytest.raises(ValueError):
        decompress(packed[:-6])


def test_the_fixed_message_tree_is_a_complete_prefix_code() -> None:
    tree = message_tree()
    codes = {symbol: tree.code(symbol) for symbol in [*range(256), NYT]}
    assert sum(2.0 ** -len(code) for code in codes.values()) == pytest.approx(1.0)
    # The most frequent byte (0) gets the shortest code; the never-sent NYT one of the longest.
    assert min(codes, key=lambda s: len(codes[s])) == MESSAGE_WEIGHTS.index(max(MESSAGE_WEIGHTS))
    assert len(codes[NYT]) == max(len(c) for c in codes.values())
    # Pinned from this coder once the real server had understood it (the tests below): a fast alarm
    # for a change to the tree's update rules.
    assert {s: "".join(map(str, codes[s])) for s in (0, 1, 5, 100, 255)} == {
        0: "01", 1: "11011", 5: "10001000", 100: "111010010", 255: "001001"}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=8),
       st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=60))
def test_netchan_messages_round_trip(longs: list[int], text: str) -> None:
    writer = MessageWriter()
    for value in longs:
        writer.long(value)
    writer.string(text).byte(7)
    reader = MessageReader(writer.data())
    assert [reader.long() for _ in longs] == longs
    # As the engine writes strings: '%' and bytes past 127 become '.'.
    expected = bytes(ord(".") if b > 127 or b == ord("%") else b for b in text.encode())
    assert reader.string().encode("latin-1") == expected
    assert reader.byte() == 7


def test_bad_arguments_are_refused_before_anything_is_sent() -> None:
    for name in ("", "a\\b", 'say"hi"', "x" * 33, "semi;colon"):
        with pytest.raises(ValueError, match="Choose another name"):
            Quake3Client(LOCAL, 27960, name)
    with pytest.raises(ValueError, match="UDP port"):
        Quake3Client(LOCAL, 0, "ok")


# -- against the real server -------------------------------------------------------------------------

def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


OpenArena = Callable[..., int]


@pytest.fixture
def openarena(tmp_path: Path) -> Iterator[OpenArena]:
    """Starts real OpenArena dedicated servers (extra ``+set`` pairs allowed) on loopback ports of their
    own, waits until they answer, and stops them after the test."""
    # Debian installs it in /usr/games, which is not on every PATH (root's, for one).
    server = require_program("openarena-server", "/usr/games/openarena-server")
    procs: list[subprocess.Popen[bytes]] = []

    def start(**cvars: str) -> int:
        port = _free_udp_port()
        home = tmp_path / str(port)
        home.mkdir()
        argv = [server, "+set", "dedicated", "1", "+set", "net_ip", LOCAL, "+set", "net_port", str(port),
                "+set", "sv_hostname", "gangway-test"]
        for key, value in cvars.items():
            argv += ["+set", key, value]
        with (home / "openarena.log").open("wb") as log:
            procs.append(subprocess.Popen([*argv, "+map", "oa_dm1"], cwd=home, env={**os.environ, "HOME": str(home)},
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
        query = GameQuery(QueryConfig(QueryProtocol.QUAKE3, LOCAL, port, interval_s=30))
        deadline = time.monotonic() + MAP_LOAD_S
        while not query.answers():
            assert procs[-1].poll() is None, (home / "openarena.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "openarena-server never answered getstatus"
            time.sleep(QUERY_EVERY_S)
        return port

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _players(port: int) -> Players | None:
    return GameQuery(QueryConfig(QueryProtocol.QUAKE3, LOCAL, port, interval_s=30)).players()


def _until(port: int, expected: Players, within_s: float) -> Players | None:
    deadline = time.monotonic() + within_s
    while (got := _players(port)) != expected and time.monotonic() < deadline:
        time.sleep(QUERY_EVERY_S)
    return got


def test_a_connected_client_is_a_player_and_leaves_at_once(openarena: OpenArena) -> None:
    port = openarena()
    with Quake3Client(LOCAL, port, "gangway-probe"):
        assert _until(port, Players(1, ("gangway-probe",)), 5) == Players(1, ("gangway-probe",))
        # A second player comes and goes: the first receives the server's "connected"/"disconnected"
        # commands, and its own packets are then scrambled with their text (the legacy netchan's key).
        with Quake3Client(LOCAL, port, "passer-by"):
            got = _until(port, Players(2, ("gangway-probe", "passer-by")), 5)
            assert got is not None and sorted(got.names or ()) == ["gangway-probe", "passer-by"]
        assert _until(port, Players(1, ("gangway-probe",)), 3) == Players(1, ("gangway-probe",))
    # The server would keep a silent client for sv_timeout (200 s): gone at once means it executed our
    # disconnect, which it only reads from a packet carrying the server id we decoded from its gamestate
    # and scrambled with the last server command we acknowledged.
    assert _until(port, Players(0, ()), 3) == Players(0, ())


def test_the_client_stays_listed_past_the_servers_timeout(openarena: OpenArena) -> None:
    port = openarena(sv_timeout="3")  # a client silent for 3 s is dropped
    with Quake3Client(LOCAL, port, "keeper"), Quake3Client(LOCAL, port, "other"):
        time.sleep(8)
        got = _players(port)
        assert got is not None and got.count == 2 and sorted(got.names or ()) == ["keeper", "other"]
    assert _until(port, Players(0, ()), 3) == Players(0, ())


def test_refusals_carry_the_servers_own_words(openarena: OpenArena) -> None:
    port = openarena(g_password="secret")
    with pytest.raises(Quake3Refused, match=r"refused 'nopass': Invalid password"):
        Quake3Client(LOCAL, port, "nopass").__enter__()
    with pytest.raises(Quake3Refused, match=r"Server uses protocol version 71 \(yours is 70\)"):
        Quake3Client(LOCAL, port, "old", protocol=70).__enter__()
    assert _players(port) == Players(0, ())


def test_a_silent_address_is_refused_after_the_timeout() -> None:
    port = _free_udp_port()
    started = time.monotonic()
    with pytest.raises(Quake3Refused, match="did not answer within 1 s"):
        Quake3Client(LOCAL, port, "nobody", timeout=1.0).__enter__()
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(("protocol", "legacy"), [(71, False), (68, True)])
def test_ioquake3s_own_protocols(openarena: OpenArena, protocol: int, legacy: bool) -> None:
    # Told that the old protocol is 68, the same engine speaks ioquake3's checksummed netchan as 71 and
    # Quake III 1.32's scrambled one as 68.
    port = openarena(com_legacyprotocol="68")
    with Quake3Client(LOCAL, port, f"p{protocol}", protocol=protocol, legacy=legacy):
        assert _until(port, Players(1, (f"p{protocol}",)), 5) == Players(1, (f"p{protocol}",))
    assert _until(port, Players(0, ()), 3) == Players(0, ())

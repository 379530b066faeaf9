"""nftables for real, in network namespaces the test creates (RFC 2544 addresses only).

A TCP connection to a game port succeeds from a granted address, is dropped from any other, and
is dropped again once the grant's timeout has passed; a port the agent does not manage stays open.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from agent_fakes import FakeClock, ScriptedRunner

from gangway_agent.activity import ConntrackFile, Watched
from gangway_agent.config import Ports
from gangway_agent.firewall import SET_V4, Firewall
from gangway_agent.protocol import parse_request
from gangway_agent.seams import SubprocessRunner, SystemClock

GAME, SFTP, OTHER = 27015, 2222, 2200
HOST_IP, GRANTED, STRANGER = "198.18.0.1", "198.18.0.2", "198.18.0.3"

SERVER = f"""
import socket, threading, time
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("{HOST_IP}", port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
def serve_udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("{HOST_IP}", port))
    while True:
        data, peer = s.recvfrom(2048); s.sendto(data, peer)
for p in ({GAME}, {SFTP}, {OTHER}):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
threading.Thread(target=serve_udp, args=({GAME},), daemon=True).start()
print("up", flush=True)
time.sleep(120)
"""

CLIENT = f"""
import json, socket, sys, threading
results = {{}}
def attempt(src, port):
    try:
        socket.create_connection(("{HOST_IP}", port), timeout=1.0, source_address=(src, 0)).close()
        results[f"{{src}}:{{port}}"] = True
    except OSError:
        results[f"{{src}}:{{port}}"] = False
targets = [(a.split(":")[0], int(a.split(":")[1])) for a in sys.argv[1:]]
threads = [threading.Thread(target=attempt, args=t) for t in targets]
[t.start() for t in threads]; [t.join() for t in threads]
print(json.dumps(results))
"""


UDP_CLIENT = f"""
import socket, sys
for src in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((src, 0)); s.settimeout(0.5)
    s.sendto(b"hello", ("{HOST_IP}", {GAME}))
    try:
        s.recv(100); print(src, "answered")
    except OSError:
        print(src, "silent")
"""


@dataclass
class Lab:
    host: str
    client: str
    firewall: Firewall
    server_pid: int

    def udp(self, *sources: str) -> str:
        argv = ["ip", "netns", "exec", self.client, sys.executable, "-c", UDP_CLIENT, *sources]
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout

    def reach(self, *targets: tuple[str, int]) -> dict[tuple[str, int], bool]:
        argv = ["ip", "netns", "exec", self.client, sys.executable, "-c", CLIENT,
                *(f"{a}:{p}" for a, p in targets)]
        out = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout)
        return {(k.split(":")[0], int(k.split(":")[1])): v for k, v in out.items()}


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    tag = secrets.token_hex(3)
    host, client = f"gwh-{tag}", f"gwc-{tag}"
    server: subprocess.Popen[bytes] | None = None
    try:
        _sh("ip", "netns", "add", host)
        _sh("ip", "netns", "add", client)
        _sh("ip", "link", "add", f"vh{tag}", "type", "veth", "peer", "name", f"vc{tag}")
        _sh("ip", "link", "set", f"vh{tag}", "netns", host)
        _sh("ip", "link", "set", f"vc{tag}", "netns", client)
        _sh("ip", "-n", host, "addr", "add", f"{HOST_IP}/24", "dev", f"vh{tag}")
        _sh("ip", "-n", client, "addr", "add", f"{GRANTED}/24", "dev", f"vc{tag}")
        _sh("ip", "-n", client, "addr", "add", f"{STRANGER}/24", "dev", f"vc{tag}")
        for ns, dev in ((host, f"vh{tag}"), (client, f"vc{tag}")):
            _sh("ip", "-n", ns, "link", "set", dev, "up")
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(["ip", "netns", "exec", host, sys.executable, "-c", SERVER],
                                  stdout=subprocess.PIPE)
        assert server.stdout is not None and server.stdout.readline().strip() == b"up"
        fw = Firewall(table="gangway", tcp_ports=[GAME, SFTP], udp_ports=[GAME], runner=SubprocessRunner(),
                      clock=SystemClock(), state_file=tmp_path / "grants.json",
                      nft=("ip", "netns", "exec", host, "nft"))
        yield Lab(host, client, fw, server.pid)
    finally:
        if server is not None:
            server.kill()
            server.wait(5)
        for ns in (host, client):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def _sync(lab: Lab, body: dict[str, object]) -> dict[str, int | None]:
    req = parse_request(json.dumps({"id": "1", "type": "firewall.sync", "body": body}).encode())
    return lab.firewall.sync(req.body)  # type: ignore[arg-type]


@pytest.mark.requires("nft", "ip")
def test_grants_open_game_ports_until_they_expire(lab: Lab) -> None:
    assert lab.firewall.reconcile() == 0
    assert lab.reach((GRANTED, GAME), (STRANGER, GAME), (STRANGER, OTHER)) == {
        (GRANTED, GAME): False, (STRANGER, GAME): False, (STRANGER, OTHER): True}

    granted_at = time.time()
    grant = {"address": GRANTED, "expires_at": granted_at + 2}
    assert _sync(lab, {"mode": "delta", "grants": [grant]})["v4"] == 1
    assert lab.firewall.list_set(SET_V4) == [GRANTED]
    assert lab.reach((GRANTED, GAME), (GRANTED, SFTP), (STRANGER, GAME), (STRANGER, SFTP)) == {
        (GRANTED, GAME): True, (GRANTED, SFTP): True, (STRANGER, GAME): False, (STRANGER, SFTP): False}

    time.sleep(max(0.0, granted_at + 2.5 - time.time()))
    assert lab.firewall.list_set(SET_V4) == []  # the kernel expired it by itself
    assert lab.reach((GRANTED, GAME)) == {(GRANTED, GAME): False}


@pytest.mark.requires("nft", "ip")
def test_a_port_opened_while_running_is_filtered_from_the_full_sync_that_brings_it(lab: Lab) -> None:
    now = time.time()
    _sync(lab, {"mode": "full", "version": 3, "grants": [{"address": GRANTED, "expires_at": now + 600}]})
    # OTHER is not one of the game's ports yet: the chain leaves it alone
    assert lab.reach((STRANGER, OTHER), (GRANTED, OTHER)) == {(STRANGER, OTHER): True, (GRANTED, OTHER): True}
    # /openport on the running game: the full set comes with the new port list, one transaction
    granted = [{"address": GRANTED, "expires_at": now + 600}]
    reply = _sync(lab, {"mode": "full", "version": 3, "grants": granted,
                        "ports": {"tcp": [GAME, SFTP, OTHER], "udp": [GAME]}})
    assert reply["version"] == 3 and lab.firewall.ports()[0] == {GAME, SFTP, OTHER}
    assert lab.reach((STRANGER, OTHER), (GRANTED, OTHER), (STRANGER, GAME)) == {
        (STRANGER, OTHER): False, (GRANTED, OTHER): True, (STRANGER, GAME): False}


@pytest.mark.requires("nft", "ip")
def test_full_sync_replaces_and_reconcile_heals(lab: Lab) -> None:
    now = time.time()
    _sync(lab, {"mode": "full", "grants": [{"address": GRANTED, "expires_at": now + 600}]})
    _sync(lab, {"mode": "full", "grants": [{"address": STRANGER, "expires_at": now + 600},
                                           {"address": "2001:db8::7", "expires_at": now + 600}]})
    assert lab.firewall.list_set(SET_V4) == [STRANGER]
    assert lab.reach((GRANTED, GAME), (STRANGER, GAME)) == {(GRANTED, GAME): False, (STRANGER, GAME): True}
    # someone flushes the ruleset: the periodic reconcile puts the table and its grants back
    _sh("ip", "netns", "exec", lab.host, "nft", "flush", "ruleset")
    assert lab.firewall.reconcile() == 2
    assert lab.reach((GRANTED, GAME), (STRANGER, GAME)) == {(GRANTED, GAME): False, (STRANGER, GAME): True}
    # a delta refresh of an existing element is accepted (add + delete + add in one transaction)
    refresh = {"address": STRANGER, "expires_at": now + 1200}
    _sync(lab, {"mode": "delta", "grants": [refresh], "revoke": [GRANTED]})
    listed = subprocess.run(["ip", "netns", "exec", lab.host, "nft", "-j", "list", "set", "inet", "gangway",
                             SET_V4], capture_output=True, text=True, check=True).stdout
    elem = json.loads(listed)["nftables"][1]["set"]["elem"][0]["elem"]
    assert elem["val"] == STRANGER and 1100 < elem["timeout"] <= 1200


@pytest.mark.requires("nft", "ip")
def test_conntrack_counts_udp_and_tcp_players_the_firewall_lets_in(lab: Lab) -> None:
    """UDP players are invisible to the socket tables (one unconnected server socket) but not to conntrack."""
    lab.firewall.reconcile()
    _sync(lab, {"mode": "full", "grants": [{"address": GRANTED, "expires_at": time.time() + 600}]})
    # /proc/<pid>/net is the network namespace of that process: the game server's, here.
    players = ConntrackFile(Watched.of(Ports(tcp=(GAME,), udp=(GAME,))),
                            Path(f"/proc/{lab.server_pid}/net/nf_conntrack"))
    assert players.players() == 0
    assert lab.udp(GRANTED, STRANGER).split("\n")[:2] == [f"{GRANTED} answered", f"{STRANGER} silent"]
    assert players.players() == 1  # the stranger's datagram was dropped, so it is no player


def test_table_text_without_udp_ports() -> None:
    fw = Firewall(table="t", tcp_ports=[2222], udp_ports=[], runner=ScriptedRunner(), clock=FakeClock(),
                  state_file=None)
    text = fw.render_table({})
    assert "udp" not in text and "tcp dport { 2222 } counter drop" in text
    assert 'iifname "lo" accept' in text and "ct state established,related accept" in text

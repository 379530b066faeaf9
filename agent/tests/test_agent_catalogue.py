"""A catalogue game through the agent core: a real game process with a console on its stdin, readiness
by port, log line and query probe, the install at start (a real HTTP download) and `game.install`."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_fakes import FakeClock, MemoryLink, config_dict, free_port
from test_agent_requests import Harness

from gangway_agent import config
from gangway_agent.activity import SocketTables, Watched
from gangway_agent.agent import Agent, Services
from gangway_agent.config import Ports
from gangway_agent.console import Console, console_path
from gangway_agent.logsink import BatchingSink, FileShipper
from gangway_agent.ready import Probe
from gangway_agent.seams import SubprocessRunner

# A game with a console: "save-all" writes its world, "stop" ends it; it may open its port late.
CONSOLE_GAME = r'''
import os, socket, sys, time
time.sleep(float(os.environ.get("LISTEN_AFTER", "0")))
port = int(os.environ.get("GAME_PORT", "0"))
if port:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen()
print("Server ready on", port, flush=True)
for line in sys.stdin:
    cmd = line.strip()
    print("console:", cmd, flush=True)
    if cmd == "save-all":
        with open("world.txt", "a") as fh:
            fh.write("saved\n")
    elif cmd == "stop":
        print("stopping by console", flush=True)
        sys.exit(0)
print("stdin closed", flush=True)
with open("eof.txt", "w") as fh:
    fh.write("eof")
time.sleep(3600)
'''


def build(tmp: Path, *, query_probe: Probe | None = None, **sections: Any) -> tuple[Harness, Agent]:
    data = config_dict(tmp, game_port=free_port())
    (tmp / "console_game.py").write_text(CONSOLE_GAME)
    data["launch"].update({"command": [sys.executable, str(tmp / "console_game.py")]})
    for key, value in sections.items():
        if key == "launch":
            data["launch"].update(value)
        elif key == "env":
            data["launch"]["env"].update(value)
        else:
            data[key] = value
    cfg = config.parse(data)
    clock, link = FakeClock(), MemoryLink()
    sink = BatchingSink(FileShipper(cfg.logs.path), batch_lines=100, flush_interval_s=0.05)
    services = Services(link=link, clock=clock, runner=SubprocessRunner(), sink=sink,
                        activity=SocketTables(Watched.of(Ports())), query_probe=query_probe)
    agent = Agent(cfg, services)
    agent.start()
    return Harness(agent, link, SubprocessRunner(), clock), agent  # type: ignore[arg-type]


@pytest.fixture
def closing() -> Iterator[list[Agent]]:
    agents: list[Agent] = []
    yield agents
    for agent in agents:
        agent.close()


def _game_port(agent: Agent) -> int:
    return int(agent.cfg.launch.env["GAME_PORT"])


def _wait_file(path: Path, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text()


def test_console_saves_and_stops_the_game(tmp_path: Path, closing: list[Agent]) -> None:
    launch = {"console_save": "save-all", "console_stop": "stop", "stop_grace_s": 10}
    h, agent = build(tmp_path, launch=launch)
    closing.append(agent)
    assert h.ask("game.start")["body"]["started"]
    assert h.event("playable")["body"]["signal"] == "none"  # no [ready]: playable once it started
    assert h.ask("game.save")["body"] == {"saved": True, "synced": True}
    assert _wait_file(tmp_path / "world.txt") == "saved\n"
    stopped = h.ask("game.stop")["body"]
    assert stopped == {"was_running": True, "exit_code": 0, "killed": False}
    log = (tmp_path / "logs" / "game.log")
    deadline = time.monotonic() + 5
    while "stopping by console" not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # Without a reader the console says so in words, and a save is refused as a failed request.
    with pytest.raises(Exception, match="the game is not running"):
        Console(console_path(agent.cfg.launch, agent.cfg.state_dir)).write("save-all")


def test_the_console_outlives_the_agent_that_opened_it(tmp_path: Path, closing: list[Agent]) -> None:
    h, agent = build(tmp_path, launch={"console_save": "save-all"})
    closing.append(agent)
    h.ask("game.start")
    path = console_path(agent.cfg.launch, agent.cfg.state_dir)
    Console(path).write("save-all")  # a second writer, as a restarted agent is: the game never saw EOF
    Console(path).write("save-all")
    deadline = time.monotonic() + 10
    world = tmp_path / "world.txt"
    while (world.read_text() if world.exists() else "") != "saved\nsaved\n":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not (tmp_path / "eof.txt").exists()


def test_playable_waits_for_the_port(tmp_path: Path, closing: list[Agent]) -> None:
    port = free_port()
    h, agent = build(tmp_path, env={"GAME_PORT": str(port), "LISTEN_AFTER": "1.5"},
                     ready={"signal": "port", "port": port, "proto": "tcp", "timeout_s": 60})
    closing.append(agent)
    h.ask("game.start")
    began = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - nothing listens yet
        __import__("socket").create_connection(("127.0.0.1", port), timeout=0.5).close()
    playable = h.event("playable", timeout=15)
    assert time.monotonic() - began >= 1.0
    assert playable["body"]["signal"] == "port"
    __import__("socket").create_connection(("127.0.0.1", port), timeout=2).close()
    assert not [e for e in h.events if e["type"] == "playable"]  # once per start


def test_playable_from_a_log_line_and_again_after_a_restart(tmp_path: Path, closing: list[Agent]) -> None:
    h, agent = build(tmp_path, ready={"signal": "log", "pattern": r"^Server ready on \d+$"})
    closing.append(agent)
    h.ask("game.start")
    assert h.event("playable")["body"]["signal"] == "log"
    h.ask("game.stop", {"grace_s": 5})
    h.ask("game.start")
    assert h.event("playable")["body"]["signal"] == "log"


def test_a_game_that_never_becomes_ready_is_reported_in_words(tmp_path: Path, closing: list[Agent]) -> None:
    port = free_port()
    h, agent = build(tmp_path, ready={"signal": "port", "port": port, "proto": "udp", "timeout_s": 30})
    closing.append(agent)
    h.ask("game.start")
    h.clock.advance(31)
    error = h.event("agent.error", timeout=10)["body"]
    assert error["code"] == "failed"
    assert f"did not open its UDP port {port} within 30 seconds" in error["message"]
    assert not [e for e in h.events if e["type"] == "playable"]


def test_playable_by_the_query_probe(tmp_path: Path, closing: list[Agent]) -> None:
    answers = iter([False, False, True])
    h, agent = build(tmp_path, ready={"signal": "query"}, query={"protocol": "quake3", "port": free_port()},
                     query_probe=lambda: next(answers, True))
    closing.append(agent)
    h.ask("game.start")
    assert h.event("playable", timeout=15)["body"]["signal"] == "query"


# -- the install at start and game.install ---------------------------------------------------------------

class Gate(http.server.BaseHTTPRequestHandler):
    """Serves one zip, but only once the test opens the gate."""

    blob = b""
    gate = threading.Event()

    def do_GET(self) -> None:
        self.gate.wait(30)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.blob)))
        self.end_headers()
        self.wfile.write(self.blob)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, type[Gate]]]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("console_game.py", CONSOLE_GAME)
    gate: type[Gate] = type("G", (Gate,), {"blob": buf.getvalue(), "gate": threading.Event()})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), gate)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/server.zip", gate
    finally:
        gate.gate.set()
        srv.shutdown()
        srv.server_close()


def _install(url: str, blob: bytes, version: str = "1", sha: str | None = None) -> dict[str, Any]:
    return {"method": "download", "url": url, "sha256": sha or hashlib.sha256(blob).hexdigest(),
            "archive": "zip", "version": version}


def test_install_at_start_then_the_game_then_playable(
        tmp_path: Path, server: tuple[str, type[Gate]], closing: list[Agent]) -> None:
    url, gate = server
    game_dir = tmp_path / "game"
    launch = {"command": [sys.executable, str(game_dir / "console_game.py")], "cwd": str(game_dir),
              "autostart": True, "console_save": "save-all"}
    h, agent = build(tmp_path, launch=launch, install=_install(url, gate.blob),
                     ready={"signal": "log", "pattern": "Server ready"})
    closing.append(agent)
    ready = h.event("ready")["body"]
    assert ready["game_running"] is False
    assert h.event("install.progress")["body"]["phase"] == "download"
    # A start asked for meanwhile is answered once the install is done and the game runs.
    h.agent.handle(json.dumps({"id": "s1", "type": "game.start", "body": {}}).encode())
    assert h.ask("status")["body"]["game"]["running"] is False  # the loop still answers
    gate.gate.set()
    assert h.event("install.progress")["body"]["phase"] == "install"
    assert h.event("install.progress")["body"] == {"phase": "done", "percent": 100.0, "version": "1",
                                                   "message": ""}
    reply = h.link.next_of("game.start.reply")
    assert reply["id"] == "s1" and reply["body"]["pid"] > 0
    assert h.event("playable")["body"]["signal"] == "log"
    assert json.loads((tmp_path / ".gangway" / "install.json").read_text())["version"] == "1"
    # game.install without force: already installed, nothing runs; with force: saved, stopped, installed,
    # started again.
    h.agent.handle(json.dumps({"id": "i1", "type": "game.install", "body": {}}).encode())
    assert h.link.next_of("game.install.reply")["body"] == {"installed": False, "version": "1"}
    h.agent.handle(json.dumps({"id": "i2", "type": "game.install", "body": {"force": True}}).encode())
    again = h.ask("game.install", {"force": True})
    assert again["type"] == "error" and again["body"]["code"] == "conflict"
    done = h.link.next_of("game.install.reply")
    assert done["id"] == "i2" and done["body"] == {"installed": True, "version": "1"}
    assert (tmp_path / "world.txt").exists() is False and (game_dir / "world.txt").read_text() == "saved\n"
    assert h.ask("status")["body"]["game"]["running"] is True


def test_a_second_start_skips_the_install(
        tmp_path: Path, server: tuple[str, type[Gate]], closing: list[Agent]) -> None:
    url, gate = server
    gate.gate.set()
    launch = {"command": [sys.executable, str(tmp_path / "game" / "console_game.py")],
              "cwd": str(tmp_path / "game"), "autostart": True}
    h, agent = build(tmp_path, launch=launch, install=_install(url, gate.blob))
    assert h.event("install.progress")["body"]["phase"] == "download"
    h.event("playable")
    agent.close()
    h2, agent2 = build(tmp_path, launch=launch, install=_install(url, gate.blob))
    closing.append(agent2)
    assert h2.event("install.progress")["body"]["phase"] == "skipped"
    assert h2.event("playable")["body"]["signal"] == "none"


def test_a_failed_install_leaves_the_game_stopped_and_the_agent_up(
        tmp_path: Path, server: tuple[str, type[Gate]], closing: list[Agent]) -> None:
    url, gate = server
    gate.gate.set()
    launch = {"command": [sys.executable, str(tmp_path / "game" / "console_game.py")],
              "cwd": str(tmp_path / "game"), "autostart": True}
    h, agent = build(tmp_path, launch=launch, install=_install(url, gate.blob, sha="0" * 64))
    closing.append(agent)
    h.agent.handle(json.dumps({"id": "s1", "type": "game.start", "body": {}}).encode())
    failed = h.event("install.progress")
    while failed["body"]["phase"] != "failed":
        failed = h.event("install.progress")
    assert "SHA-256 differs" in failed["body"]["message"]
    reply = h.link.next_of("error")
    assert reply["id"] == "s1" and "could not be installed" in reply["body"]["message"]
    assert h.ask("status")["body"]["game"]["running"] is False
    assert not h.agent.game.status().running


def test_game_install_without_an_install_section(tmp_path: Path, closing: list[Agent]) -> None:
    h, agent = build(tmp_path)
    closing.append(agent)
    reply = h.ask("game.install", {"force": True})
    assert reply["type"] == "error" and reply["body"]["code"] == "unavailable"
    assert h.ask("game.install", {"force": "yes"})["body"]["code"] == "bad_body"


def test_the_port_probe_sees_a_bound_udp_socket() -> None:
    import socket

    from gangway_agent.config import Proto
    from gangway_agent.ready import port_probe

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        assert port_probe(port, Proto.UDP)()
        assert not port_probe(port, Proto.TCP)()  # nothing listens on TCP there
    assert not port_probe(port, Proto.UDP)()

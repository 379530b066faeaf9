"""Requests through the agent core with a real game process, an in-memory link and scripted commands."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_fakes import FakeClock, MemoryLink, ScriptedRunner, config_dict, free_port

from gangway_agent import config
from gangway_agent.activity import SocketTables, Watched
from gangway_agent.agent import Agent, Services
from gangway_agent.config import Ports
from gangway_agent.firewall import Firewall
from gangway_agent.logsink import BatchingSink, FileShipper
from gangway_agent.protocol import MAX_MESSAGE_BYTES, parse_outgoing
from gangway_agent.seams import Completed, SubprocessRunner


class Harness:
    def __init__(self, agent: Agent, link: MemoryLink, runner: ScriptedRunner, clock: FakeClock) -> None:
        self.agent, self.link, self.runner, self.clock = agent, link, runner, clock
        self._n = 0
        self.events: list[dict[str, Any]] = []

    def ask(self, msg_type: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self._n += 1
        return self.send(json.dumps({"id": f"r{self._n}", "type": msg_type, "body": body or {}}).encode())

    def send(self, raw: bytes) -> dict[str, Any]:
        self.agent.handle(raw)
        while True:
            msg = self.link.sent.get(timeout=10)
            parse_outgoing(json.dumps(msg).encode())  # everything the agent says is on-contract
            if msg["type"].endswith(".reply") or msg["type"] == "error":
                return msg
            self.events.append(msg)

    def event(self, msg_type: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next event of this type, whether it came before a reply or comes later."""
        for i, msg in enumerate(self.events):
            if msg["type"] == msg_type:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            msg = self.link.sent.get(timeout=max(0.01, deadline - time.monotonic()))
            if msg["type"] == msg_type:
                return msg
            self.events.append(msg)


def make_agent(tmp: Path, *, runner: ScriptedRunner | None = None, firewall: bool = False,
               top: dict[str, Any] | None = None, **launch: Any) -> tuple[Harness, Agent]:
    data = config_dict(tmp, game_port=free_port()) | (top or {})
    data["launch"].update(launch)
    cfg = config.parse(data)
    clock, link, run = FakeClock(), MemoryLink(), runner or ScriptedRunner()
    fw = Firewall(table="gwtest", tcp_ports=[27015, 2222], udp_ports=[27015], runner=run, clock=clock,
                  state_file=tmp / "state" / "grants.json") if firewall else None
    sink = BatchingSink(FileShipper(cfg.logs.path), batch_lines=100, flush_interval_s=0.05)
    services = Services(link=link, clock=clock, runner=SubprocessRunner() if runner is None else run,
                        sink=sink, activity=SocketTables(Watched.of(Ports())), firewall=fw)
    agent = Agent(cfg, services)
    agent.start()
    return Harness(agent, link, run, clock), agent


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness, agent = make_agent(tmp_path)
    try:
        yield harness
    finally:
        agent.close()


def test_ready_event_on_start(h: Harness) -> None:
    ready = h.event("ready")
    assert ready["body"] == {"version": "0.1.0", "game_running": False}


def test_bad_input_gets_error_replies_and_the_agent_keeps_answering(h: Harness) -> None:
    cases = [
        (b"{nope", None, "bad_json"),
        (b'{"id": "x1", "type": "status", "body": "all"}', "x1", "bad_envelope"),
        (b'{"id": "x2", "type": "game.stop", "body": {"grace_s": "later"}}', "x2", "bad_body"),
        (b'{"id": "x3", "type": "launch.missiles", "body": {}}', "x3", "unknown_type"),
        (b'{"id": "x4", "type": "status", "body": {"pad": "' + b"a" * MAX_MESSAGE_BYTES + b'"}}',
         None, "too_large"),
    ]
    for raw, expect_id, code in cases:
        reply = h.send(raw)
        assert reply["type"] == "error" and reply["id"] == expect_id and reply["body"]["code"] == code
        status = h.ask("status")
        assert status["type"] == "status.reply"


def test_start_status_save_stop(h: Harness, tmp_path: Path) -> None:
    started = h.ask("game.start")
    assert started["type"] == "game.start.reply" and started["body"]["started"] is True
    again = h.ask("game.start")
    assert again["body"] == {"pid": started["body"]["pid"], "started": False}
    h.clock.advance(42)
    status = h.ask("status")["body"]
    assert status["game"]["running"] and status["game"]["uptime_s"] == 42
    assert status["disk"]["total_bytes"] > 0 and status["firewall"] is None
    assert h.ask("game.save")["body"] == {"saved": False, "synced": True}
    time.sleep(0.3)  # let the game install its SIGTERM handler
    stopped = h.ask("game.stop")
    assert stopped["body"] == {"was_running": True, "exit_code": 0, "killed": False}
    assert h.event("game.exited")["body"]["restart_in_s"] is None
    assert h.ask("status")["body"]["game"]["running"] is False
    time.sleep(0.2)
    log = (tmp_path / "logs" / "game.log").read_text()
    assert " stdout game up on " in log and " stderr a warning line" in log and " stdout bye" in log


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    h, agent = make_agent(tmp_path, env={"IGNORE_TERM": "1"}, stop_grace_s=0.5)
    try:
        h.ask("game.start")
        time.sleep(0.3)  # let the game install its SIGTERM handler
        body = h.ask("game.stop")["body"]
        assert body["killed"] is True and body["exit_code"] == -9
    finally:
        agent.close()


def test_stop_and_save_commands(tmp_path: Path) -> None:
    marker = tmp_path / "saved"
    h, agent = make_agent(
        tmp_path, save_command=["touch", str(marker)],
        stop_command=["sh", "-c", "kill -TERM $(cat game.pid)"],
    )
    try:
        h.ask("game.start")
        time.sleep(0.3)
        assert h.ask("game.save")["body"] == {"saved": True, "synced": True}
        assert marker.exists()
        assert h.ask("game.stop", {"grace_s": 5})["body"]["killed"] is False
    finally:
        agent.close()


def test_crash_restarts_with_backoff(tmp_path: Path) -> None:
    h, agent = make_agent(tmp_path, env={"CRASH": "1"})
    try:
        h.ask("game.start")
        delays = [h.event("game.exited")["body"] for _ in range(3)]
        assert [d["exit_code"] for d in delays] == [3, 3, 3]
        assert [d["restart_in_s"] for d in delays] == [0.05, 0.1, 0.2]
        assert delays[-1]["restarts"] == 2
    finally:
        agent.close()


def test_launch_failure_is_an_error_reply(tmp_path: Path) -> None:
    h, agent = make_agent(tmp_path, command=["/nonexistent/game"])
    try:
        reply = h.ask("game.start")
        assert reply["type"] == "error" and "cannot launch /nonexistent/game" in reply["body"]["message"]
        assert h.ask("status")["type"] == "status.reply"
    finally:
        agent.close()


def test_disabled_features_answer_unavailable(h: Harness) -> None:
    for msg_type, body in (("sftp.open", {}), ("firewall.sync", {"mode": "full", "grants": []})):
        reply = h.ask(msg_type, body)
        assert reply["type"] == "error" and reply["body"]["code"] == "unavailable"


def test_shutdown_stops_game_and_agent(tmp_path: Path) -> None:
    h, agent = make_agent(tmp_path)
    try:
        h.ask("game.start")
        reply = h.ask("shutdown", {"poweroff": True})
        assert reply["body"] == {"stopping": True, "poweroff": False}  # no shutdown_command configured
        assert agent.stopping and not agent.game.status().running
    finally:
        agent.close()


def test_firewall_sync_requests_become_nft_batches(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    h, agent = make_agent(tmp_path, runner=runner, firewall=True)
    try:
        now = h.clock.now()
        start_batch = runner.calls[0]
        assert start_batch[0] == ("nft", "-f", "-") and "delete table inet gwtest" in (start_batch[1] or "")
        reply = h.ask("firewall.sync", {"mode": "full", "grants": [
            {"address": "198.51.100.7", "expires_at": now + 600},
            {"address": "2001:db8::42", "expires_at": now + 3600},
            {"address": "198.51.100.9", "expires_at": now - 1},
        ]})
        assert reply["body"] == {"applied": 2, "removed": 0, "v4": 1, "v6": 1, "version": None}
        batch = runner.calls[-1][1] or ""
        v4_set = "set allowed_v4 { type ipv4_addr; flags timeout; elements = { 198.51.100.7 timeout 600s }; }"
        assert v4_set in batch
        assert "elements = { 2001:db8::42 timeout 3600s }" in batch and "198.51.100.9" not in batch
        h.clock.advance(100)
        reply = h.ask("firewall.sync", {"mode": "delta", "grants": [
            {"address": "198.51.100.8", "expires_at": now + 700}], "revoke": ["198.51.100.7"]})
        assert reply["body"] == {"applied": 1, "removed": 1, "v4": 1, "v6": 1, "version": None}
        assert (runner.calls[-1][1] or "").splitlines() == [
            "add element inet gwtest allowed_v4 { 198.51.100.7 }",
            "delete element inet gwtest allowed_v4 { 198.51.100.7 }",
            "add element inet gwtest allowed_v4 { 198.51.100.8 }",
            "delete element inet gwtest allowed_v4 { 198.51.100.8 }",
            "add element inet gwtest allowed_v4 { 198.51.100.8 timeout 600s }",
        ]
        assert h.ask("status")["body"]["firewall"] == {"v4": 1, "v6": 1}
        # the periodic reconcile re-applies the whole table, on the clock
        calls = len(runner.calls)
        h.agent.tick()
        h.agent.tick()
        h.clock.advance(299)
        h.agent.tick()
        assert len(runner.calls) == calls + 1
        h.clock.advance(1)
        h.agent.tick()
        assert len(runner.calls) == calls + 2 and "delete table inet gwtest" in (runner.calls[-1][1] or "")
        # a failing nft is an error reply, and the agent goes on
        runner.on(["nft"], Completed(("nft",), 1, "", "Error: syntax error"))
        reply = h.ask("firewall.sync", {"mode": "full", "grants": []})
        assert reply["type"] == "error" and "nft exited 1: Error: syntax error" in reply["body"]["message"]
    finally:
        agent.close()


def test_grants_survive_a_restart_and_reconcile_prunes(tmp_path: Path) -> None:
    clock = FakeClock()
    runner = ScriptedRunner()
    state = tmp_path / "grants.json"
    fw = Firewall(table="gwtest", tcp_ports=[1], udp_ports=[], runner=runner, clock=clock, state_file=state)
    from gangway_agent.protocol import parse_request

    req = parse_request(json.dumps({"id": "1", "type": "firewall.sync", "body": {"mode": "full", "grants": [
        {"address": "198.51.100.1", "expires_at": clock.now() + 10},
        {"address": "198.51.100.2", "expires_at": clock.now() + 1000}]}}).encode())
    assert fw.sync(req.body) == {  # type: ignore[arg-type]
        "applied": 2, "removed": 0, "v4": 2, "v6": 0, "version": None}
    clock.advance(60)
    again = Firewall(table="gwtest", tcp_ports=[1], udp_ports=[], runner=runner, clock=clock,
                     state_file=state)
    assert again.reconcile() == 1
    assert "198.51.100.2 timeout 940s" in (runner.calls[-1][1] or "")
    assert "198.51.100.1" not in (runner.calls[-1][1] or "")


@pytest.mark.requires(root=True)
def test_game_runs_as_its_own_user(tmp_path: Path) -> None:
    h, agent = make_agent(tmp_path, command=["sh", "-c", "id -u; sleep 30"], cwd="/", user="nobody")
    try:
        h.ask("game.start")
        log = tmp_path / "logs" / "game.log"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (log.exists() and "stdout 65534" in log.read_text()):
            time.sleep(0.05)
        assert "stdout 65534" in log.read_text()
    finally:
        agent.close()
    bad, agent = make_agent(tmp_path, user="no-such-user-here")
    try:
        reply = bad.ask("game.start")
        assert reply["type"] == "error" and "cannot launch" in reply["body"]["message"]
    finally:
        agent.close()


def test_a_redelivered_request_gets_the_same_reply_without_running_again(h: Harness) -> None:
    raw = b'{"id": "dup-1", "type": "game.start", "body": {}}'
    first = h.send(raw)
    assert first["body"]["started"] is True
    assert h.send(raw) == first  # a re-run would have answered started: false
    assert h.ask("game.start")["body"]["started"] is False


def test_versioned_deltas_apply_in_order_and_a_gap_asks_for_the_full_set(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    h, agent = make_agent(tmp_path, runner=runner, firewall=True)
    try:
        now = h.clock.now()
        a, b, c = "198.51.100.7", "198.51.100.8", "198.51.100.9"
        full = h.ask("firewall.sync", {"mode": "full", "version": 5, "grants": [
            {"address": a, "expires_at": now + 600}]})
        assert full["body"] == {"applied": 1, "removed": 0, "v4": 1, "v6": 0, "version": 5}
        h.link.drain()
        # 6 is lost on the way; 7 (revoking a) arrives: applying it out of order is refused, and the
        # agent asks for the whole set instead
        calls = len(runner.calls)
        skipped = h.ask("firewall.sync", {"mode": "delta", "version": 7, "grants": [
            {"address": c, "expires_at": now + 600}], "revoke": [a]})
        assert skipped["body"] == {"applied": 0, "removed": 0, "v4": 1, "v6": 0, "version": 5}
        assert len(runner.calls) == calls  # no nft batch
        assert h.event("firewall.resync")["body"] == {"version": 5, "reason": "gap"}
        # the heartbeat says which version the firewall holds
        h.clock.advance(61)
        agent.tick()
        assert h.event("heartbeat")["body"]["firewall_version"] == 5
        # the backend answers with the full set at 7: applied whatever was skipped
        full = h.ask("firewall.sync", {"mode": "full", "version": 7, "grants": [
            {"address": b, "expires_at": now + 600}, {"address": c, "expires_at": now + 600}]})
        assert full["body"] == {"applied": 2, "removed": 1, "v4": 2, "v6": 0, "version": 7}
        # the lost 6 arriving late, and 7 again, change nothing and ask for nothing
        h.link.drain()
        h.events.clear()
        for version in (6, 7):
            late = h.ask("firewall.sync", {"mode": "delta", "version": version, "grants": [
                {"address": a, "expires_at": now + 600}], "revoke": []})
            assert late["body"]["applied"] == 0 and late["body"]["version"] == 7
        assert [m["type"] for m in [*h.events, *h.link.drain()]] == []
        assert {str(x) for x in agent._s.firewall.grants()} == {b, c}  # type: ignore[union-attr]
        # 8 follows 7: applied
        nxt = h.ask("firewall.sync", {"mode": "delta", "version": 8, "grants": [], "revoke": [b]})
        assert nxt["body"] == {"applied": 0, "removed": 1, "v4": 1, "v6": 0, "version": 8}
        # a reconnect (the session is clean: what was sent meanwhile is gone) asks for the full set too;
        # the first connection does not (the backend answers `ready`)
        h.link.drain()
        assert h.link.on_connected is not None
        h.link.on_connected(1)
        assert h.link.drain() == []
        h.link.on_connected(2)
        assert h.event("firewall.resync")["body"] == {"version": 8, "reason": "reconnect"}
    finally:
        agent.close()


def test_a_full_sync_with_ports_changes_the_filtered_ports_in_the_same_batch(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    h, agent = make_agent(tmp_path, runner=runner, firewall=True)
    try:
        reply = h.ask("firewall.sync", {"mode": "full", "version": 1, "grants": [],
                                        "ports": {"tcp": [27016, 27015], "udp": [2456]}})
        assert reply["type"] == "firewall.sync.reply"
        batch = runner.calls[-1][1] or ""
        assert "tcp dport { 27015, 27016 } ip saddr @allowed_v4 accept" in batch
        assert "udp dport { 2456 } counter drop" in batch
        bad = h.ask("firewall.sync", {"mode": "delta", "grants": [], "ports": {"tcp": [1], "udp": []}})
        assert bad["type"] == "error" and bad["body"]["code"] == "bad_body"
        bad = h.ask("firewall.sync", {"mode": "full", "grants": [], "ports": {"tcp": [0], "udp": []}})
        assert bad["type"] == "error" and bad["body"]["code"] == "bad_body"
    finally:
        agent.close()

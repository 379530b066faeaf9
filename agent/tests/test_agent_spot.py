"""The Spot notice: a loopback HTTP server plays IMDSv2; on a notice the agent saves, stops, reports."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from agent_fakes import wait_port
from test_agent_requests import make_agent

from gangway_agent.imds import Imds
from gangway_agent.seams import SystemClock
from gangway_agent.spot import SpotWatcher


class FakeImds:
    """IMDSv2 semantics that matter here: PUT a token first, 401 without a valid one, 404 until a notice."""

    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.token_puts = 0
        self.notice: dict[str, str] | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                """Quiet."""

            def _send(self, code: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                if self.path != "/latest/api/token" or ttl is None:
                    return self._send(400)
                outer.token_puts += 1
                token = secrets.token_hex(8)
                outer.tokens.add(token)
                return self._send(200, token)

            def do_GET(self) -> None:
                if self.headers.get("X-aws-ec2-metadata-token") not in outer.tokens:
                    return self._send(401)
                if self.path == "/latest/meta-data/spot/instance-action" and outer.notice:
                    return self._send(200, json.dumps(outer.notice))
                if self.path == "/latest/meta-data/public-ipv4":
                    return self._send(200, "203.0.113.10")
                return self._send(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    fake = FakeImds()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def test_tokens_are_cached_and_refreshed_after_401(imds: FakeImds) -> None:
    client = Imds(imds.url, SystemClock())
    assert client.spot_notice() is None
    assert client.public_host() == "203.0.113.10"
    assert imds.token_puts == 1
    imds.tokens.clear()  # the token was revoked: one 401, a new PUT, and the read succeeds
    assert client.public_host() == "203.0.113.10"
    assert imds.token_puts == 2
    assert Imds("http://127.0.0.1:9", SystemClock()).public_host() is None


def test_notice_saves_stops_and_reports(imds: FakeImds, tmp_path: Path) -> None:
    marker = tmp_path / "saved"
    h, agent = make_agent(tmp_path, save_command=["touch", str(marker)])
    watcher = SpotWatcher(Imds(imds.url, SystemClock()), 0.05, agent.on_spot_notice)
    try:
        h.ask("game.start")
        wait_port(agent.cfg.launch.ports.tcp[0])
        watcher.start()
        time.sleep(0.3)
        assert agent.game.status().running
        imds.notice = {"action": "terminate", "time": "2026-11-27T08:22:00Z"}
        event = h.event("spot.notice", timeout=10)
        assert event["body"] == {"action": "terminate", "time": "2026-11-27T08:22:00Z", "saved": True,
                                 "game_stopped": True}
        assert marker.exists() and not agent.game.status().running
        assert imds.token_puts == 1
    finally:
        watcher.stop()
        agent.close()

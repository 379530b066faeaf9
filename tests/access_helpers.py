"""Helpers for the player-access tests: API Gateway events through the real Lambda entry point, a real
Mosquitto broker and an MQTT subscriber, and the skip-or-fail rule for system programs."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import app as app_module
from chalicelib.games import GameRecord, GameState
from chalicelib.tenancy import TenantStore
from devstack.discord_user import Who, snowflake
from devstack.pump import LambdaContext
from devstack.stack import free_port
from tests.helpers import Harness

SITE_ORIGIN_HEADER = "Origin"


def require_program(name: str, *candidates: str) -> str:
    """The program's path; skips the test when it is missing, or fails it when CI=true (so CI can never
    go green by skipping the real-component tests; the agent's tests follow the same rule)."""
    found = shutil.which(name) or next((c for c in candidates if Path(c).exists()), None)
    if found:
        return found
    reason = f"missing program: {name}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and this test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def gateway_event(
    method: str,
    path: str,
    *,
    source_ip: str = "198.51.100.7",
    body: str | bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST (proxy) event as Lambda receives it."""
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    text = body.decode("utf-8", "surrogateescape") if isinstance(body, bytes) else body
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": "/api" + path,
            "stage": "api",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": source_ip, "userAgent": "pytest"},
        },
        "body": text,
        "isBase64Encoded": False,
    }


@dataclass
class ApiAnswer:
    status: int
    headers: dict[str, str]
    json: Any


def call_api(method: str, path: str, **kwargs: Any) -> ApiAnswer:
    """Invoke the api Lambda's handler (the Chalice app) with a gateway event."""
    out = app_module.app(gateway_event(method, path, **kwargs), LambdaContext("api_handler"))
    headers = {k.lower(): v for k, v in (out.get("headers") or {}).items()}
    for k, vs in (out.get("multiValueHeaders") or {}).items():
        headers.setdefault(k.lower(), vs[-1])
    body = out.get("body") or ""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = body
    return ApiAnswer(out["statusCode"], headers, parsed)


def authorize(token: str, source_ip: str = "198.51.100.7", **kwargs: Any) -> ApiAnswer:
    return call_api(
        "POST", "/ipauth/authorize", body=json.dumps({"token": token}), source_ip=source_ip, **kwargs
    )


MAIN_ROLE = "400000000000000001"
ADMIN_ROLE = "400000000000000002"


def setup_roles(harness: Harness) -> str:
    """/setup with the main and admin roles chosen, as an admin does it; returns the tenant id."""
    harness.command("setup")
    harness.component("setup:main", [MAIN_ROLE])
    harness.component("setup:admin", [ADMIN_ROLE])
    return harness.user.who.guild_id or ""


def a_member(harness: Harness, *roles: str) -> Who:
    """Another member of the harness's guild, holding `roles` and no permissions."""
    return Who(guild_id=harness.user.who.guild_id, user_id=snowflake(), role_ids=roles, permissions=0)


def make_tenant(tenant_id: str, created_by: str = "1") -> None:
    TenantStore(default_region="us-east-1").ensure(tenant_id, created_by=created_by)


def add_game(tenant_id: str, name: str, state: GameState = GameState.STOPPED) -> None:
    """A game row in any state (issue 4 builds the lifecycle; tests set RUNNING directly)."""
    now = int(time.time())
    GameRecord(
        tenant_id, name, description="", state=state.value, created_by="1", created_at=now, updated_at=now
    ).save()


# -- MQTT ------------------------------------------------------------------------------------------


@dataclass
class Broker:
    url: str
    host: str
    port: int


@contextlib.contextmanager
def mosquitto(directory: Path) -> Iterator[Broker]:
    """A real Mosquitto on a free loopback port, stopped (by its own pid) afterwards."""
    binary = require_program("mosquitto", "/usr/sbin/mosquitto")
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        "per_listener_settings false\npersistence false\nset_tcp_nodelay true\n"
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import socket

        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError("mosquitto did not start")
            time.sleep(0.02)
        yield Broker(f"mqtt://127.0.0.1:{port}", "127.0.0.1", port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


class Subscriber:
    """An MQTT client that records every message on `topic` (wildcards allowed)."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        subscribed = queue.Queue[bool]()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        self._client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, json.loads(msg.payload)))
        self._client.on_subscribe = lambda *_: subscribed.put(True)
        self._client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self._client.connect(host, port)
        self._client.loop_start()
        subscribed.get(timeout=5)

    def next(self, timeout: float = 5.0) -> tuple[str, dict[str, Any]]:
        return self.messages.get(timeout=timeout)

    def drain(self, wait: float = 0.3) -> list[tuple[str, dict[str, Any]]]:
        out = []
        with contextlib.suppress(queue.Empty):
            while True:
                out.append(self.messages.get(timeout=wait))
        return out

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

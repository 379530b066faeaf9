"""How the DynamoDB client's requests travel: one POST over http.client, a kept connection per thread.

http.client is already loaded on the interaction path (urllib.request would import far more). A warm
container reuses its connection (and TLS session); one the server closed while the container sat idle is
replaced at once, as urllib3 replaces a dropped pooled connection.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urlsplit

__all__ = ["CONNECT_TIMEOUT", "READ_TIMEOUT", "HttpAnswer", "Transport", "http_transport"]

# PynamoDB's defaults for its botocore client.
CONNECT_TIMEOUT: Final = 15.0
READ_TIMEOUT: Final = 30.0


@dataclass(frozen=True)
class HttpAnswer:
    """An HTTP response: status, headers (names lowercased) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one POST; raises OSError (or http.client.HTTPException) when the connection fails."""

    def __call__(self, url: str, headers: Mapping[str, str], body: bytes) -> HttpAnswer: ...


class _Connections(threading.local):
    """One kept-alive connection per thread and host: a warm container reuses its TLS session."""

    def __init__(self) -> None:
        self.open: dict[str, http.client.HTTPConnection] = {}


_CONNECTIONS: Final = _Connections()


def http_transport(url: str, headers: Mapping[str, str], body: bytes) -> HttpAnswer:
    """POST with http.client (urllib.request would import far more), reusing the thread's connection.

    A kept connection the server closed while the container sat idle fails at once on reuse; that is
    sent again on a new connection straight away (as urllib3 replaces a dropped pooled connection), not
    counted as an attempt: the first command after a quiet spell must not wait a backoff for it.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"DynamoDB endpoint must be http or https, not {url!r}")
    origin = f"{parts.scheme}://{parts.netloc}"
    conn = _CONNECTIONS.open.get(origin)
    if conn is not None:
        try:
            return _post(conn, origin, parts.path, headers, body)
        except _STALE:
            pass  # closed by the server while idle: a fresh connection below
    factory = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = factory(parts.netloc, timeout=CONNECT_TIMEOUT)
    _CONNECTIONS.open[origin] = conn
    return _post(conn, origin, parts.path, headers, body)


# What reusing a connection the server has closed raises before any answer arrives.
_STALE: Final = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


def _post(
    conn: http.client.HTTPConnection, origin: str, path: str, headers: Mapping[str, str], body: bytes
) -> HttpAnswer:
    try:
        if conn.sock is None:
            conn.connect()
            _read_timeout(conn)
        conn.request("POST", path or "/", body=body, headers=dict(headers))
        resp = conn.getresponse()
        data = resp.read()
        answer = HttpAnswer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    except (OSError, http.client.HTTPException):
        conn.close()
        _CONNECTIONS.open.pop(origin, None)
        raise
    if resp.will_close:
        conn.close()
        _CONNECTIONS.open.pop(origin, None)
    return answer


def _read_timeout(conn: http.client.HTTPConnection) -> None:
    """Connecting may take CONNECT_TIMEOUT; each read afterwards READ_TIMEOUT (PynamoDB's two limits)."""
    if conn.sock is not None:
        conn.sock.settimeout(READ_TIMEOUT)

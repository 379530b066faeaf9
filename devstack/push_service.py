"""A web push service stand-in on loopback (RFC 8030), and the browsers subscribed to it.

`device()` makes a browser: a P-256 key pair and an auth secret (RFC 8291), and a subscription whose
endpoint points here. A push to that endpoint is recorded with its headers, its VAPID authorization
(RFC 8292) is verified, and its aes128gcm body is decrypted with the browser's keys (http_ece), as the
browser would. The device then plays its service worker: `on_push` gets the decrypted payload (on a
thread, after the push service has answered 201, as in a real browser). A device's `status` makes the
push service answer something else, e.g. 410 for a subscription that is gone.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Device", "PushServiceStandIn", "Received"]


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Received:
    """One push as the push service got it."""

    headers: dict[str, str]
    body: bytes
    payload: Any = None  # the decrypted JSON (None when the status was not 201)
    vapid: dict[str, Any] | None = None  # the verified JWT claims
    vapid_key: str | None = None


@dataclass
class Device:
    """A subscribed browser: its keys, what it received, how its push service answers."""

    id: str
    endpoint: str
    private_key: Any = field(repr=False)
    auth: bytes = field(repr=False)
    status: int = 201
    on_push: Callable[[Any], None] | None = None
    received: list[Received] = field(default_factory=list)
    answered: threading.Event = field(default_factory=threading.Event)

    @property
    def subscription(self) -> dict[str, Any]:
        """What `PushSubscription.toJSON()` gives the page."""
        from cryptography.hazmat.primitives import serialization

        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": _b64url(point), "auth": _b64url(self.auth)},
        }


def _verify_vapid(header: str) -> tuple[dict[str, Any], str]:
    """Claims and key of `vapid t=<ES256 JWT>, k=<public key>`; raises ValueError when it does not verify."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    if not header.lower().startswith("vapid "):
        raise ValueError("not a vapid authorization")
    parts = dict(p.strip().split("=", 1) for p in header[6:].split(","))
    token, key = parts["t"], parts["k"]
    head, claims, sig = token.split(".")
    raw = _unb64url(sig)
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64url(key))
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    return json.loads(_unb64url(claims)), key


class PushServiceStandIn:
    """The stand-in server; `start()` serves it on a thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.devices: dict[str, Device] = {}
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"service": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="push-standin", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> PushServiceStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def device(self, *, status: int = 201, on_push: Callable[[Any], None] | None = None) -> Device:
        """A new subscribed browser."""
        from cryptography.hazmat.primitives.asymmetric import ec

        ident = secrets.token_urlsafe(16)
        dev = Device(
            id=ident,
            endpoint=f"{self.url}/push/{ident}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth=secrets.token_bytes(16),
            status=status,
            on_push=on_push,
        )
        with self.lock:
            self.devices[ident] = dev
        return dev


class _Handler(BaseHTTPRequestHandler):
    service: PushServiceStandIn

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        import http_ece  # type: ignore[import-untyped]  # no stubs or py.typed

        ident = self.path.removeprefix("/push/")
        with self.service.lock:
            dev = self.service.devices.get(ident)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if 0 < length <= 8192 else b""
        if dev is None:
            self._send(404)
            return
        got = Received({k.lower(): v for k, v in self.headers.items()}, body)
        dev.received.append(got)
        if dev.status != 201:
            self._send(dev.status)
            return
        try:
            got.vapid, got.vapid_key = _verify_vapid(self.headers.get("Authorization", ""))
            plain = http_ece.decrypt(
                body, private_key=dev.private_key, auth_secret=dev.auth, version="aes128gcm"
            )
            got.payload = json.loads(plain)
        except Exception:
            self._send(400)  # a push service refuses what it cannot authenticate
            return
        self._send(201)
        if dev.on_push is not None:
            handler = dev.on_push

            def deliver() -> None:
                try:
                    handler(got.payload)
                finally:
                    dev.answered.set()

            threading.Thread(target=deliver, name="service-worker", daemon=True).start()

    def _send(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

"""The instance metadata service stand-in (IMDSv2 only, as the launch requires: HttpTokens=required).

A PUT to /latest/api/token with a TTL header gets a token; every other read must carry one, else 401
(as EC2 answers). A PUT that came through a proxy (X-Forwarded-For) is refused with 403, as EC2 does.
It serves the instance id, placement, the identity document, the user data, the instance role's
credentials, and `spot/instance-action`: 404 until a Spot notice is injected.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

__all__ = ["IMDS_PORT", "InstanceMetadata", "MetadataServer"]

IMDS_PORT: Final = 80

_MAX_TTL_S: Final = 21600
ROLE: Final = "gangway-instance"


@dataclass
class InstanceMetadata:
    """What EC2 would say about this instance."""

    instance_id: str
    region: str
    user_data: str
    instance_type: str = "t3.medium"
    account_id: str = "123456789012"
    image_id: str = "ami-0123456789abcdef0"
    # The instance role's temporary keys (the local emulator accepts the ones it issued or any).
    credentials: dict[str, str] = field(
        default_factory=lambda: {"AccessKeyId": "testing", "SecretAccessKey": "testing", "Token": "testing"}
    )
    spot_action: dict[str, str] | None = None

    def document(self) -> dict[str, Any]:
        return {
            "accountId": self.account_id,
            "architecture": "x86_64",
            "availabilityZone": f"{self.region}a",
            "imageId": self.image_id,
            "instanceId": self.instance_id,
            "instanceType": self.instance_type,
            "region": self.region,
            "version": "2017-09-30",
        }

    def answer(self, path: str) -> str | None:
        creds = "/latest/meta-data/iam/security-credentials/"
        fixed = {
            "/latest/meta-data/instance-id": self.instance_id,
            "/latest/meta-data/instance-type": self.instance_type,
            "/latest/meta-data/ami-id": self.image_id,
            "/latest/meta-data/placement/region": self.region,
            "/latest/meta-data/placement/availability-zone": f"{self.region}a",
            "/latest/dynamic/instance-identity/document": json.dumps(self.document()),
            "/latest/user-data": self.user_data,
            creds: ROLE,
            creds + ROLE: json.dumps(
                {
                    "Code": "Success",
                    "Type": "AWS-HMAC",
                    "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 6 * 3600)),
                    **self.credentials,
                }
            ),
        }
        if path == "/latest/meta-data/spot/instance-action":
            return json.dumps(self.spot_action) if self.spot_action else None
        return fixed.get(path)


class MetadataServer(ThreadingHTTPServer):
    """Serves `metadata` on a socket made elsewhere (inside the instance's namespace)."""

    daemon_threads = True

    def __init__(self, listener: socket.socket, metadata: InstanceMetadata) -> None:
        super().__init__(listener.getsockname(), _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.metadata = metadata
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status): what the instance asked
        self._thread = threading.Thread(target=self.serve_forever, name="imds", daemon=True)

    def start(self) -> MetadataServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    def issue(self, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + ttl
        return token

    def valid(self, token: str | None) -> bool:
        with self._lock:
            return token is not None and self._tokens.get(token, 0.0) > time.monotonic()

    def spot_notice(self, action: str = "terminate", in_s: int = 120) -> None:
        """From now on `spot/instance-action` says the instance goes in `in_s` seconds (EC2's 2 minutes)."""
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + in_s))
        self.metadata.spot_action = {"action": action, "time": when}


class _Handler(BaseHTTPRequestHandler):
    server: MetadataServer

    def do_PUT(self) -> None:
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if self.headers.get("X-Forwarded-For") is not None:
            self._send(403, "")
        elif self.path != "/latest/api/token":
            self._send(404, "")
        elif not ttl.isdigit() or not 1 <= int(ttl) <= _MAX_TTL_S:
            self._send(400, "")
        else:
            self._send(200, self.server.issue(int(ttl)))

    def do_GET(self) -> None:
        if not self.server.valid(self.headers.get("X-aws-ec2-metadata-token")):
            self._send(401, "")
            return
        body = self.server.metadata.answer(self.path.split("?", 1)[0])
        self._send(404, "") if body is None else self._send(200, body)

    def _send(self, status: int, body: str) -> None:
        self.server.requests.append((self.command, self.path, status))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: `requests` records what was asked."""

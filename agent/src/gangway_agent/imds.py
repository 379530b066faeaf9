"""IMDSv2: the instance metadata service, for the Spot interruption notice and the public address.

Every read needs a session token from a PUT; it is cached until shortly before it expires and
fetched again after a 401. The base URL is configurable so tests can play IMDS on loopback.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Any, Final

from .seams import Clock

log = logging.getLogger(__name__)

_TOKEN_TTL_S: Final = 21600
_TIMEOUT_S: Final = 2.0


class Imds:
    """A tiny IMDSv2 client over urllib."""

    def __init__(self, base_url: str, clock: Clock) -> None:
        self._base = base_url.rstrip("/")
        self._clock = clock
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = threading.Lock()

    def _get_token(self, refresh: bool = False) -> str:
        with self._lock:
            if refresh or self._token is None or self._clock.monotonic() >= self._token_expires:
                req = urllib.request.Request(
                    f"{self._base}/latest/api/token", method="PUT",
                    headers={"X-aws-ec2-metadata-token-ttl-seconds": str(_TOKEN_TTL_S)},
                )
                with urllib.request.urlopen(req, timeout=_TIMEOUT_S) as resp:
                    self._token = resp.read().decode()
                self._token_expires = self._clock.monotonic() + _TOKEN_TTL_S - 60
            return self._token

    def get(self, path: str) -> str | None:
        """GET ``/latest/<path>``; None on 404. Raises OSError (URLError) when IMDS is unreachable."""
        for attempt in range(2):
            req = urllib.request.Request(
                f"{self._base}/latest/{path.lstrip('/')}",
                headers={"X-aws-ec2-metadata-token": self._get_token(refresh=attempt > 0)},
            )
            try:
                with urllib.request.urlopen(req, timeout=_TIMEOUT_S) as resp:
                    return str(resp.read().decode())
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code != 401 or attempt:
                    raise
        return None

    def spot_notice(self) -> dict[str, Any] | None:
        """The pending Spot interruption (``{"action", "time"}``), or None."""
        text = self.get("meta-data/spot/instance-action")
        if text is None:
            return None
        try:
            notice = json.loads(text)
        except json.JSONDecodeError:
            return {"action": "unknown", "time": None, "raw": text[:200]}
        return notice if isinstance(notice, dict) else None

    def public_host(self) -> str | None:
        """The instance's public IPv4 address, if it has one and IMDS answers."""
        try:
            return self.get("meta-data/public-ipv4")
        except OSError as exc:
            log.warning("IMDS public-ipv4 unavailable: %s", exc)
            return None

"""The IPAuth link keys: two AES-256 keys (current and previous) in one SSM SecureString parameter.

Why not KMS per token: every made-up token that looks right would cost a paid KMS Decrypt and could
throttle KMS for the whole account (issue 15.3), and a customer-managed key costs $1/month idle (16.3).
A standard SecureString parameter costs nothing at rest and is encrypted with the AWS-managed `aws/ssm`
key; a warm container reads it once and keeps it for `max_age` seconds, so a flood of tokens reaches no
AWS service at all. Rotation (`make rotate-link-key`) makes a new current key and keeps the old one as
previous, so links issued before it still open until they expire.

The parameter's value is JSON: `{"current": {"id": "<hex>", "key": "<base64 of 32 bytes>"},
"previous": {...} | null}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from chalicelib.errors import InfraError

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

__all__ = ["KEY_BYTES", "KEY_ID", "LinkKey", "LinkKeyRing", "LinkKeySource"]

# AES-256-GCM (NIST SP 800-38D) takes a 32-byte key.
KEY_BYTES: Final = 32
KEY_ID: Final = re.compile(r"[0-9a-f]{8}")
# How long a warm container trusts the keys it read: a rotation reaches every container within this.
DEFAULT_MAX_AGE_S: Final = 600.0


@dataclass(frozen=True)
class LinkKey:
    """One AES-256 key and the id tokens name it by."""

    key_id: str
    secret: bytes

    def __post_init__(self) -> None:
        if not KEY_ID.fullmatch(self.key_id) or len(self.secret) != KEY_BYTES:
            raise ValueError("a link key is an 8-hex-digit id and 32 bytes")

    @classmethod
    def generate(cls) -> LinkKey:
        return cls(secrets.token_hex(4), secrets.token_bytes(KEY_BYTES))

    def _to_json(self) -> dict[str, str]:
        return {"id": self.key_id, "key": base64.b64encode(self.secret).decode()}

    @classmethod
    def _from_json(cls, d: Any) -> LinkKey:
        return cls(str(d["id"]), base64.b64decode(str(d["key"]), validate=True))


@dataclass(frozen=True)
class LinkKeyRing:
    """The key new tokens are sealed with, and the one before it (still opens older tokens)."""

    current: LinkKey
    previous: LinkKey | None = None

    def find(self, key_id: str) -> LinkKey | None:
        """The key a token names, if it is one of ours."""
        for key in (self.current, self.previous):
            if key is not None and key.key_id == key_id:
                return key
        return None

    def rotated(self) -> LinkKeyRing:
        """A new current key; today's becomes previous, the one before is dropped."""
        new = LinkKey.generate()
        while new.key_id == self.current.key_id:  # 1 in 4 billion, but an id must name one key
            new = LinkKey.generate()
        return LinkKeyRing(new, self.current)

    @classmethod
    def generate(cls) -> LinkKeyRing:
        return cls(LinkKey.generate())

    def to_json(self) -> str:
        prev = self.previous._to_json() if self.previous else None
        return json.dumps({"current": self.current._to_json(), "previous": prev})

    @classmethod
    def parse(cls, value: str) -> LinkKeyRing:
        """Read the parameter's value.

        Raises:
            ValueError: not the shape `to_json` writes.
        """
        try:
            d = json.loads(value)
            prev = d.get("previous")
            return cls(LinkKey._from_json(d["current"]), LinkKey._from_json(prev) if prev else None)
        except (KeyError, TypeError, AttributeError, binascii.Error, json.JSONDecodeError) as exc:
            raise ValueError("not a link key ring") from exc


class LinkKeySource:
    """Reads the key ring from its SecureString parameter once per `max_age`, per container."""

    def __init__(
        self,
        ssm: Callable[[], SSMClient],
        parameter: str,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ssm = ssm  # a factory: the client is made on first use, off the PING path
        self._parameter = parameter
        self._max_age = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._ring: LinkKeyRing | None = None
        self._read_at = 0.0

    def ring(self) -> LinkKeyRing:
        """The keys, from the cache while it is fresh.

        Raises:
            InfraError: the parameter is missing, unreadable or malformed.
        """
        with self._lock:
            if self._ring is None or self._clock() - self._read_at > self._max_age:
                self._ring = self._read()
                self._read_at = self._clock()
            return self._ring

    def _read(self) -> LinkKeyRing:
        try:
            value = self._ssm().get_parameter(Name=self._parameter, WithDecryption=True)["Parameter"]["Value"]
        except Exception as exc:  # ClientError (missing, denied) or a transport error: ours to fix
            raise InfraError(f"cannot read the IPAuth link keys ({self._parameter}): {exc}") from exc
        try:
            return LinkKeyRing.parse(str(value))
        except ValueError as exc:
            raise InfraError(
                f"the IPAuth link keys in {self._parameter} are malformed: run make rotate-link-key"
            ) from exc

"""VAPID keys (RFC 8292): one P-256 key pair per deployment, kept in an SSM SecureString parameter.

The parameter holds JSON `{"public": <base64url uncompressed point>, "private": <base64url 32-byte
scalar>}`; the public half is the `applicationServerKey` browsers subscribe with. `gangway vapid`
creates it (devstack/cli.py). Generating needs only `cryptography`; pywebpush is not imported here.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chalicelib.errors import InfraError

__all__ = ["VapidKeys", "VapidSource", "b64url", "b64url_decode", "public_of"]


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url.

    Raises:
        ValueError: not base64url.
    """
    if not text or any(c not in _B64URL_CHARS for c in text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


_B64URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class VapidKeys:
    """A VAPID key pair as base64url text."""

    public: str
    private: str = field(repr=False)

    @classmethod
    def generate(cls) -> VapidKeys:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        point = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return cls(
            public=b64url(point), private=b64url(key.private_numbers().private_value.to_bytes(32, "big"))
        )

    @classmethod
    def from_json(cls, text: str) -> VapidKeys:
        """Parse the parameter's value.

        Raises:
            InfraError: the parameter is unset or malformed (run `gangway vapid`).
        """
        try:
            data = json.loads(text)
            public, private = str(data["public"]), str(data["private"])
            if len(b64url_decode(public)) != 65 or len(b64url_decode(private)) != 32:
                raise ValueError("wrong key sizes")
        except (ValueError, KeyError, TypeError) as exc:
            raise InfraError("the VAPID key parameter is unset or malformed: run `gangway vapid`") from exc
        return cls(public=public, private=private)

    def to_json(self) -> str:
        return json.dumps({"public": self.public, "private": self.private})


def public_of(text: str) -> str:
    """The public key from the public parameter's value (`{"public": ...}`).

    Raises:
        InfraError: unset or malformed (run `gangway vapid`).
    """
    try:
        public = str(json.loads(text)["public"])
        if len(b64url_decode(public)) != 65:
            raise ValueError("wrong key size")
    except (ValueError, KeyError, TypeError) as exc:
        raise InfraError("the VAPID public key parameter is unset or malformed: run `gangway vapid`") from exc
    return public


class VapidSource:
    """Reads the key pair, or only its public half, from SSM SecureString parameters once per container.

    The halves live in two parameters so the API function, which only serves the public key to the
    page, has no permission on the private one (policies/api_handler.json); the steps function signs.
    """

    def __init__(self, ssm: Callable[[], Any], parameter: str, public_parameter: str = "") -> None:
        self._ssm = ssm
        self._parameter = parameter
        self._public_parameter = public_parameter
        self._keys: VapidKeys | None = None
        self._public: str | None = None
        self._lock = threading.Lock()

    def public(self) -> str:
        """The public key (base64url), read from its own parameter when there is one.

        Raises:
            InfraError: the parameter is missing, unreadable or malformed.
        """
        if not self._public_parameter:
            return self.keys().public
        with self._lock:
            if self._public is None:
                self._public = public_of(self._read(self._public_parameter, "the VAPID public key"))
            return self._public

    def keys(self) -> VapidKeys:
        """The deployment's key pair.

        Raises:
            InfraError: the parameter is missing, unreadable or malformed.
        """
        with self._lock:
            if self._keys is None:
                self._keys = VapidKeys.from_json(self._read(self._parameter, "the VAPID keys"))
            return self._keys

    def _read(self, name: str, what: str) -> str:
        try:
            return str(self._ssm().get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
        except Exception as exc:  # botocore ClientError or transport: not the caller's fault
            raise InfraError(f"cannot read {what} ({name}): {exc}") from exc

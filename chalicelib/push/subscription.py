"""Validation of a browser's PushSubscription (`PushSubscription.toJSON()`) before it is stored.

The endpoint is where the steps Lambda will POST, so it must be a push service we trust (https, a host
from the settings' list), never an arbitrary URL: otherwise a subscription would turn the Lambda into a
request forwarder. The keys must be a P-256 point (65 bytes) and a 16-byte auth secret (RFC 8291 §3).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from chalicelib.errors import BadRequest
from chalicelib.push.vapid import b64url_decode

__all__ = ["SubscriptionRules", "parse_subscription"]

_FIELDS: Final = frozenset({"endpoint", "expirationTime", "keys"})
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


@dataclass(frozen=True)
class SubscriptionRules:
    """Which push services an endpoint may name (host suffixes, https), and http loopback for the
    local stack's stand-in."""

    hosts: tuple[str, ...]
    loopback_http: bool = False
    max_endpoint: int = 1024


def _allowed(endpoint: str, rules: SubscriptionRules) -> bool:
    try:
        parts = urllib.parse.urlsplit(endpoint)
        port = parts.port
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if not host or parts.username is not None or parts.password is not None or parts.fragment:
        return False
    if any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E for c in endpoint):
        return False
    if parts.scheme == "http":
        return rules.loopback_http and host in _LOOPBACK
    if parts.scheme != "https" or port not in (None, 443):
        return False
    return any(host == h or host.endswith("." + h) for h in rules.hosts)


def _key(keys: Mapping[str, Any], name: str, size: int) -> str:
    value = keys.get(name)
    if not isinstance(value, str) or len(value) > 128:
        raise BadRequest(f"keys.{name} must be base64url text")
    try:
        raw = b64url_decode(value.rstrip("="))
    except ValueError as exc:
        raise BadRequest(f"keys.{name} must be base64url text") from exc
    if len(raw) != size:
        raise BadRequest(f"keys.{name} must be {size} bytes")
    return value.rstrip("=")


def parse_subscription(raw: object, rules: SubscriptionRules) -> tuple[str, str, str]:
    """(endpoint, p256dh, auth) of a subscription object.

    Raises:
        BadRequest: not a subscription, an endpoint outside the allowed push services, or bad keys.
    """
    if not isinstance(raw, dict) or not set(raw) <= _FIELDS or "endpoint" not in raw or "keys" not in raw:
        raise BadRequest("subscription must be a PushSubscription's JSON: {endpoint, keys: {p256dh, auth}}")
    endpoint, keys = raw["endpoint"], raw["keys"]
    if not isinstance(endpoint, str) or not 1 <= len(endpoint) <= rules.max_endpoint:
        raise BadRequest("subscription.endpoint must be a URL")
    if not _allowed(endpoint, rules):
        raise BadRequest("subscription.endpoint is not a push service gangway sends to")
    if not isinstance(keys, dict) or set(keys) != {"p256dh", "auth"}:
        raise BadRequest("subscription.keys must be exactly {p256dh, auth}")
    p256dh = _key(keys, "p256dh", 65)
    auth = _key(keys, "auth", 16)
    if not on_p256(b64url_decode(p256dh)):
        raise BadRequest("keys.p256dh is not a P-256 public key")
    return endpoint, p256dh, auth


# NIST P-256 (SEC 2, secp256r1): y^2 = x^3 - 3x + b over the prime field of _P256_P.
_P256_P: Final = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_P256_B: Final = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
_UNCOMPRESSED: Final = 0x04  # SEC 1 point encoding tag (the only one the Push API gives)


def on_p256(point: bytes) -> bool:
    """Whether `point` is an uncompressed P-256 public key: on the curve, coordinates in the field.

    The check `cryptography` makes when it loads the point, in plain integers: the function that
    answers Discord and the page's API then does not ship `cryptography` (14 MB) for one equation.
    """
    if len(point) != 65 or point[0] != _UNCOMPRESSED:
        return False
    x, y = int.from_bytes(point[1:33], "big"), int.from_bytes(point[33:], "big")
    if x >= _P256_P or y >= _P256_P:
        return False
    return (y * y - (x * x * x - 3 * x + _P256_B)) % _P256_P == 0

"""Ed25519 request verification: a pure function of key, headers and raw body (lesson L2)."""

from __future__ import annotations

import re
from typing import Final

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from chalicelib.errors import Unauthorized

__all__ = ["MAX_SKEW_SECONDS", "load_verify_key", "verify_request"]

# Discord documents no skew check; we refuse timestamps further than this from now to stop replays of
# captured requests (discord-protocol.md §1 "Replay / freshness").
MAX_SKEW_SECONDS: Final = 300
_SIGNATURE: Final = re.compile(r"[0-9a-fA-F]{128}")
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")


def load_verify_key(public_key_hex: str) -> VerifyKey:
    """Build the application's verify key once per container.

    Raises:
        ValueError: the configured key is not 64 hex characters.
    """
    raw = bytes.fromhex(public_key_hex)
    if len(raw) != 32:
        raise ValueError("DISCORD_PUBLIC_KEY must be 64 hex characters")
    return VerifyKey(raw)


def verify_request(
    key: VerifyKey, *, signature: str | None, timestamp: str | None, body: bytes, now: float
) -> None:
    """Return if Discord signed `timestamp + body` within the allowed skew.

    Raises:
        Unauthorized: a header is missing or malformed, the signature is wrong, or the timestamp is stale.
    """
    if not signature or not _SIGNATURE.fullmatch(signature):
        raise Unauthorized("missing or malformed X-Signature-Ed25519")
    if not timestamp or not _TIMESTAMP.fullmatch(timestamp):
        raise Unauthorized("missing or malformed X-Signature-Timestamp")
    if abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        raise Unauthorized("timestamp outside the allowed window")
    try:
        key.verify(timestamp.encode() + body, bytes.fromhex(signature))
    except BadSignatureError as exc:
        raise Unauthorized("signature does not match") from exc

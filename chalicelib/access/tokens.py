"""IPAuth link tokens: AES-256-GCM authenticated encryption bound to the tenant.

A token is `g2.<tenant>.<key id>.<base64url(iv || ciphertext || tag)>`: a compact JSON claim set sealed
with the deployment's current link key (chalicelib/access/linkkeys.py), the prefix, tenant and key id
authenticated as additional data. A token whose tenant or key part was changed, whose bytes were touched,
or that was sealed by another deployment fails to open; the claims also repeat the tenant and are
compared. Opening needs no AWS call, so a flood of made-up tokens costs nothing (issue 15.3). The token
travels in the URL fragment, which browsers never send to a server or in a Referer.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from chalicelib.access.linkkeys import KEY_ID, LinkKeySource
from chalicelib.errors import LinkRejected

__all__ = ["MAX_TOKEN_CHARS", "Claims", "LinkKind", "TokenSealer"]

# g1 tokens were sealed by KMS; the prefix changed with the format, so one never parses as the other.
_PREFIX: Final = "g2"
_RETIRED_PREFIX: Final = "g1."
# A sealed claim set is ~200 characters; anything much longer is not ours.
MAX_TOKEN_CHARS: Final = 2048
# AES-GCM: a 96-bit random IV per token, a 128-bit tag (NIST SP 800-38D §5.2.1.1, §5.2.1.2).
_IV_BYTES: Final = 12
_TAG_BYTES: Final = 16
_TENANT: Final = re.compile(r"[0-9]{1,24}")
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_INVALID: Final = "This link isn't valid. Check that you opened the exact link gangway gave you."


class LinkKind(StrEnum):
    """A member's personal link or a shareable guest link."""

    MEMBER = "member"
    GUEST = "guest"
    # A member's short-lived, single-use token pushed to their browser (chalicelib/push, issue 7).
    PUSH = "push"


@dataclass(frozen=True)
class Claims:
    """What a link says: who it is for, when it was issued and until when it works."""

    tenant_id: str
    kind: LinkKind
    issued_at: int
    expires_at: int
    nonce: str
    user_id: str | None = None  # members (and their push tokens) only
    max_uses: int | None = None  # guests only

    @property
    def owner(self) -> str:
        """The grant owner this link writes: the member, or the guest link itself."""
        return f"user#{self.user_id}" if self.kind is not LinkKind.GUEST else f"link#{self.nonce}"

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "t": self.tenant_id,
            "k": self.kind.value,
            "i": self.issued_at,
            "e": self.expires_at,
            "n": self.nonce,
        }
        if self.user_id is not None:
            data["u"] = self.user_id
        if self.max_uses is not None:
            data["x"] = self.max_uses
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Claims:
        """Parse sealed claims (already authenticated by the tag, so a failure here is our bug or an old
        format; either way the link is unusable)."""
        try:
            d = json.loads(raw)
            kind = LinkKind(d["k"])
            return cls(
                tenant_id=str(d["t"]),
                kind=kind,
                issued_at=int(d["i"]),
                expires_at=int(d["e"]),
                nonce=str(d["n"]),
                user_id=str(d["u"]) if kind is not LinkKind.GUEST else None,
                max_uses=int(d["x"]) if kind is LinkKind.GUEST else None,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LinkRejected("invalid", _INVALID) from exc


def _aad(tenant_id: str, key_id: str) -> bytes:
    """What the tag also authenticates: the token's visible parts and its purpose."""
    return f"gangway:ipauth|{_PREFIX}|{tenant_id}|{key_id}".encode()


class TokenSealer:
    """Seals and opens tokens with the deployment's link keys (AES-256-GCM, no AWS call per token)."""

    def __init__(self, keys: LinkKeySource) -> None:
        self._keys = keys

    def seal(
        self,
        *,
        tenant_id: str,
        kind: LinkKind,
        issued_at: int,
        lifetime_s: int,
        user_id: str | None = None,
        max_uses: int | None = None,
        nonce: str | None = None,
    ) -> tuple[str, Claims]:
        """A new token and the claims it carries (`nonce`: a push token names its flow).

        Raises:
            InfraError: the link keys cannot be read.
        """
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        claims = Claims(
            tenant_id=tenant_id,
            kind=kind,
            issued_at=issued_at,
            expires_at=issued_at + lifetime_s,
            nonce=nonce or secrets.token_hex(12),
            user_id=user_id,
            max_uses=max_uses,
        )
        key = self._keys.ring().current
        iv = secrets.token_bytes(_IV_BYTES)
        sealed = AESGCM(key.secret).encrypt(iv, claims.to_json(), _aad(tenant_id, key.key_id))
        encoded = base64.urlsafe_b64encode(iv + sealed).decode().rstrip("=")
        return f"{_PREFIX}.{tenant_id}.{key.key_id}.{encoded}", claims

    def open(self, token: str, *, now: int) -> Claims:
        """The claims of a valid, unexpired token.

        Raises:
            LinkRejected: "invalid" (malformed, tampered, another tenant's or deployment's) or "expired".
            InfraError: the link keys cannot be read.
        """
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if token.startswith(_RETIRED_PREFIX) and len(token) <= MAX_TOKEN_CHARS:
            # A link handed out before the upgrade to g2: it can no longer open; say what to do.
            raise LinkRejected(
                "expired",
                "This link is from before gangway's last upgrade and no longer works. "
                "Get a new one with /addip (or ask for a new guest link).",
            )
        parts = token.split(".")
        if (
            len(token) > MAX_TOKEN_CHARS
            or len(parts) != 4
            or parts[0] != _PREFIX
            or not _TENANT.fullmatch(parts[1])
            or not KEY_ID.fullmatch(parts[2])
            or not _B64URL.fullmatch(parts[3])
        ):
            raise LinkRejected("invalid", _INVALID)
        tenant_id, key_id = parts[1], parts[2]
        try:
            blob = base64.urlsafe_b64decode(parts[3] + "=" * (-len(parts[3]) % 4))
        except (binascii.Error, ValueError) as exc:
            raise LinkRejected("invalid", _INVALID) from exc
        # A key id that is neither current nor previous: rotated away, or never ours. Not re-read from
        # SSM, so made-up ids cost nothing (the cache refreshes on its own clock).
        key = self._keys.ring().find(key_id)
        if key is None or len(blob) < _IV_BYTES + _TAG_BYTES:
            raise LinkRejected("invalid", _INVALID)
        try:
            plain = AESGCM(key.secret).decrypt(blob[:_IV_BYTES], blob[_IV_BYTES:], _aad(tenant_id, key_id))
        except InvalidTag as exc:
            raise LinkRejected("invalid", _INVALID) from exc
        claims = Claims.from_json(plain)
        if claims.tenant_id != tenant_id:
            raise LinkRejected("invalid", _INVALID)
        if claims.expires_at <= now:
            raise LinkRejected(
                "expired",
                "This link has expired. Get a new one with /addip (or ask for a new guest link).",
            )
        return claims

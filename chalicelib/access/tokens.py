"""IPAuth link tokens: KMS authenticated encryption bound to the tenant.

A token is `g1.<tenant>.<ciphertext>`, the ciphertext being KMS Encrypt of a compact JSON claim set with
the encryption context {"gangway:purpose": "ipauth", "gangway:tenant": <tenant>}. KMS checks the context
as additional authenticated data, so a token whose tenant part was changed, whose bytes were touched,
or that was sealed for another tenant fails to decrypt; the claims also repeat the tenant and are
compared. The token travels in the URL fragment, which browsers never send to a server or in a Referer.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from chalicelib.errors import InfraError, LinkRejected
from chalicelib.instances import error_code

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

__all__ = ["MAX_TOKEN_CHARS", "Claims", "LinkKind", "TokenSealer"]

log = logging.getLogger(__name__)

_PREFIX: Final = "g1"
# A sealed claim set is ~300 characters with AWS KMS; anything much longer is not ours.
MAX_TOKEN_CHARS: Final = 2048
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
        """Parse sealed claims (already authenticated by KMS, so a failure here is our bug or an old
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


def _context(tenant_id: str) -> dict[str, str]:
    return {"gangway:purpose": "ipauth", "gangway:tenant": tenant_id}


class TokenSealer:
    """Seals and opens tokens with one KMS key (AWS KMS in AWS, the emulator's locally)."""

    def __init__(self, kms: Callable[[], KMSClient], key_id: str) -> None:
        self._kms = kms  # a factory: the client is made on first use, off the PING path
        self._key_id = key_id

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
        """A new token and the claims it carries (`nonce`: a push token names its flow)."""
        claims = Claims(
            tenant_id=tenant_id,
            kind=kind,
            issued_at=issued_at,
            expires_at=issued_at + lifetime_s,
            nonce=nonce or secrets.token_hex(12),
            user_id=user_id,
            max_uses=max_uses,
        )
        try:
            blob = self._kms().encrypt(
                KeyId=self._key_id, Plaintext=claims.to_json(), EncryptionContext=_context(tenant_id)
            )["CiphertextBlob"]
        except Exception as exc:  # botocore ClientError or a transport error: not the caller's fault
            raise InfraError(f"KMS Encrypt failed: {exc}") from exc
        encoded = base64.urlsafe_b64encode(blob).decode().rstrip("=")
        return f"{_PREFIX}.{tenant_id}.{encoded}", claims

    def open(self, token: str, *, now: int) -> Claims:
        """The claims of a valid, unexpired token.

        Raises:
            LinkRejected: "invalid" (malformed, tampered, another tenant's) or "expired".
            InfraError: KMS itself failed.
        """
        parts = token.split(".")
        if (
            len(token) > MAX_TOKEN_CHARS
            or len(parts) != 3
            or parts[0] != _PREFIX
            or not _TENANT.fullmatch(parts[1])
            or not _B64URL.fullmatch(parts[2])
        ):
            raise LinkRejected("invalid", _INVALID)
        tenant_id = parts[1]
        try:
            blob = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        except (binascii.Error, ValueError) as exc:
            raise LinkRejected("invalid", _INVALID) from exc
        claims = Claims.from_json(self._decrypt(blob, tenant_id))
        if claims.tenant_id != tenant_id:
            raise LinkRejected("invalid", _INVALID)
        if claims.expires_at <= now:
            raise LinkRejected(
                "expired",
                "This link has expired. Get a new one with /addip (or ask for a new guest link).",
            )
        return claims

    def _decrypt(self, blob: bytes, tenant_id: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            out = self._kms().decrypt(
                CiphertextBlob=blob, KeyId=self._key_id, EncryptionContext=_context(tenant_id)
            )
        except ClientError as exc:
            code = error_code(exc)
            # KMS says which: a ciphertext it cannot authenticate is the caller's problem.
            if code in {"InvalidCiphertextException", "IncorrectKeyException", "ValidationException"}:
                raise LinkRejected("invalid", _INVALID) from exc
            if code == "AccessDeniedException":
                # Also what KMS (and the emulator) answer for a blob naming a key we may not use, e.g. one
                # sealed elsewhere; logged, because a broken IAM policy looks the same.
                log.warning("KMS refused to decrypt an IPAuth token: %s", exc)
                raise LinkRejected("invalid", _INVALID) from exc
            raise InfraError(f"KMS Decrypt failed: {code}") from exc
        plaintext: bytes = out["Plaintext"]
        return plaintext

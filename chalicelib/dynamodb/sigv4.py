"""AWS Signature Version 4 for header-signed requests, with the standard library only.

The interaction path reads DynamoDB without botocore (importing botocore alone costs half the cold-start
budget, docs/performance.md), so it signs its own requests. This is the published algorithm: a canonical
request, a string to sign over its SHA-256, and an HMAC chain from the secret key through the date,
region and service. tests/test_dynamodb_sigv4.py checks it against AWS's published test-suite vectors.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Final, NamedTuple
from urllib.parse import quote

__all__ = ["ALGORITHM", "Credentials", "authorization", "signed_headers"]

ALGORITHM: Final = "AWS4-HMAC-SHA256"
_TERMINATOR: Final = "aws4_request"
_SPACES: Final = re.compile(r"\s+")
# Headers botocore never signs: proxies and the transport may change them on the way.
_UNSIGNED: Final = frozenset({"authorization", "user-agent", "expect", "x-amzn-trace-id", "content-length"})


class Credentials(NamedTuple):
    """An access key pair and, for temporary credentials (a Lambda role's), the session token."""

    access_key: str
    secret_key: str
    token: str | None = None


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _canonical_query(query: Mapping[str, str]) -> str:
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in query.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def authorization(
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    payload: bytes,
    credentials: Credentials,
    region: str,
    service: str,
    amz_date: str,
) -> str:
    """The Authorization header value for a request whose signed headers are `headers` (as sent).

    `amz_date` is the request's X-Amz-Date (`YYYYMMDDTHHMMSSZ`); its first 8 characters scope the key.
    """
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.strip().lower()
        if key in _UNSIGNED:
            continue
        trimmed = _SPACES.sub(" ", value.strip())
        lowered[key] = f"{lowered[key]},{trimmed}" if key in lowered else trimmed
    names = sorted(lowered)
    signed = ";".join(names)
    canonical = "\n".join(
        (
            method.upper(),
            quote(path or "/", safe="/-_.~"),
            _canonical_query(query),
            "".join(f"{n}:{lowered[n]}\n" for n in names),
            signed,
            hashlib.sha256(payload).hexdigest(),
        )
    )
    day = amz_date[:8]
    scope = f"{day}/{region}/{service}/{_TERMINATOR}"
    to_sign = "\n".join((ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()))
    signing_key = _hmac(("AWS4" + credentials.secret_key).encode(), day)
    for part in (region, service, _TERMINATOR):
        signing_key = _hmac(signing_key, part)
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


def signed_headers(
    *,
    host: str,
    path: str,
    headers: Mapping[str, str],
    payload: bytes,
    credentials: Credentials,
    region: str,
    service: str,
    amz_date: str,
) -> dict[str, str]:
    """`headers` plus Host, X-Amz-Date, the session token if any and Authorization, for a POST."""
    out = {"Host": host, "X-Amz-Date": amz_date, **headers}
    if credentials.token:
        out["X-Amz-Security-Token"] = credentials.token
    out["Authorization"] = authorization(
        method="POST",
        path=path,
        query={},
        headers=out,
        payload=payload,
        credentials=credentials,
        region=region,
        service=service,
        amz_date=amz_date,
    )
    return out

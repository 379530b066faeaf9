"""Player access: IPAuth links (tokens), grants, the page's REST API, rate limits and firewall sync."""

from __future__ import annotations

from chalicelib.access.api import MAX_API_BODY_BYTES, IpAuthApi
from chalicelib.access.firewall import FirewallSync, full_sync_request
from chalicelib.access.linkkeys import LinkKey, LinkKeyRing, LinkKeySource
from chalicelib.access.models import AccessRecord, GrantRecord, RateRecord
from chalicelib.access.ratelimit import Limit, RateLimiter
from chalicelib.access.revocation import AccessEntry, Revocations, Revoked
from chalicelib.access.service import MEMBER_LINK_SECONDS, AccessService, Authorized, Link
from chalicelib.access.store import AccessPolicy, Grant, GrantStore, GuestLink
from chalicelib.access.tokens import Claims, LinkKind, TokenSealer

__all__ = [
    "MAX_API_BODY_BYTES",
    "MEMBER_LINK_SECONDS",
    "AccessEntry",
    "AccessPolicy",
    "AccessRecord",
    "AccessService",
    "Authorized",
    "Claims",
    "FirewallSync",
    "Grant",
    "GrantRecord",
    "GrantStore",
    "GuestLink",
    "IpAuthApi",
    "Limit",
    "Link",
    "LinkKey",
    "LinkKeyRing",
    "LinkKeySource",
    "LinkKind",
    "RateLimiter",
    "RateRecord",
    "Revocations",
    "Revoked",
    "TokenSealer",
    "full_sync_request",
]

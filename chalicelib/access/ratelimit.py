"""Fixed-window rate counters in DynamoDB (one atomic ADD per hit, rows expire by TTL).

Addresses are counted twice when they are IPv6: the exact address, and its /64. One customer line
is normally given a whole /64 (RFC 6177, RIPE-690), so a client rotating through addresses inside it
would otherwise never meet a limit (issue 15.3).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from chalicelib.access.models import RateRecord
from chalicelib.errors import TooManyRequests

__all__ = ["IPV6_NETWORK_BITS", "Limit", "RateLimiter", "address_subjects"]

# The prefix one subscriber (one home, one phone) normally holds.
IPV6_NETWORK_BITS: Final = 64
# A /64 may hold a few honest devices behind one router (a household): its limit is this many times the
# limit of one address.
_NETWORK_SHARE: Final = 4


@dataclass(frozen=True)
class Limit:
    """At most `count` hits per `window_s` seconds for one subject of one scope."""

    scope: str
    count: int
    window_s: int


def address_subjects(limit: Limit, address: str) -> list[tuple[Limit, str]]:
    """The counters one hit from `address` adds to: the address, and for IPv6 also its /64."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return [(limit, address)]  # not an address: counted as given (the caller rejects it later)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return [(limit, str(ip))]
    net = ipaddress.IPv6Network((ip, IPV6_NETWORK_BITS), strict=False)
    wider = Limit(f"{limit.scope}-v6net", limit.count * _NETWORK_SHARE, limit.window_s)
    return [(limit, str(ip)), (wider, str(net))]


class RateLimiter:
    """Counts hits; the counter rows are shared by every Lambda container."""

    def hit(self, limit: Limit, subject: str, now: int) -> int:
        """Count one hit and return the window's total.

        Raises:
            TooManyRequests: the subject went over the limit in this window.
        """
        start = now - now % limit.window_s
        rec = RateRecord(f"{limit.scope}#{subject}#{start}")
        purge = datetime.fromtimestamp(start + 2 * limit.window_s, tz=UTC)
        rec.update(actions=[RateRecord.hits.add(1), RateRecord.purge_at.set(purge)])
        count = int(rec.hits)
        if count > limit.count:
            raise TooManyRequests(
                "Too many tries. Wait a few minutes, then open the link again.",
                retry_after=start + limit.window_s - now,
            )
        return count

    def hit_address(self, limit: Limit, address: str, now: int) -> int:
        """Count one hit from `address` (IPv6: its /64 too) and return the address's window total.

        Raises:
            TooManyRequests: the address, or its /64, went over its limit in this window.
        """
        counts = [self.hit(lim, subject, now) for lim, subject in address_subjects(limit, address)]
        return counts[0]

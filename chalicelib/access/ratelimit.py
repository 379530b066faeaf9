"""Fixed-window rate counters in DynamoDB (one atomic ADD per hit, rows expire by TTL)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from chalicelib.access.models import RateRecord
from chalicelib.errors import TooManyRequests

__all__ = ["Limit", "RateLimiter"]


@dataclass(frozen=True)
class Limit:
    """At most `count` hits per `window_s` seconds for one subject of one scope."""

    scope: str
    count: int
    window_s: int


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

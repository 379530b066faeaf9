"""When the DynamoDB client tries again, as botocore's standard retry mode decides (botocore/retries).

Retried: throttling error codes, transient ones, HTTP 500/502/503/504, broken connections and timeouts,
and a body whose CRC32 is wrong; at most MAX_ATTEMPTS attempts (PynamoDB's setting), each retry after
`random() * 2 ** (retry - 1)` seconds (at most 20). A retry quota shared by the client's calls (500 units; a
retry costs 5, a timeout's 10; a success gives back what its last retry took, or 1) stops retrying when
most calls fail, so an outage is not made worse by three times the requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_BACKOFF",
    "QUOTA_CAPACITY",
    "THROTTLING_CODES",
    "TRANSIENT_CODES",
    "TRANSIENT_STATUSES",
    "RetryQuota",
    "backoff",
    "retryable",
]

# PynamoDB's default: 1 + max_retry_attempts (3), in botocore's standard retry mode.
MAX_ATTEMPTS: Final = 4
# botocore's standard mode: the backoff is random() * 2 ** (retry - 1) seconds, at most 20.
MAX_BACKOFF: Final = 20.0
# What botocore's standard mode retries (botocore/retries/standard.py).
THROTTLING_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
TRANSIENT_CODES: Final = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
TRANSIENT_STATUSES: Final = frozenset({500, 502, 503, 504})
# botocore's RetryQuotaChecker.
QUOTA_CAPACITY: Final = 500
RETRY_COST: Final = 5
TIMEOUT_RETRY_COST: Final = 10
NO_RETRY_INCREMENT: Final = 1


def retryable(status: int | None, code: str) -> bool:
    """Whether an answer with this HTTP status and error code is worth another attempt."""
    return status in TRANSIENT_STATUSES or code in THROTTLING_CODES or code in TRANSIENT_CODES


def backoff(retry: int, jitter: Callable[[], float]) -> float:
    """Seconds to wait before retry number `retry` (1, 2, …): full jitter, exponential, capped."""
    return float(min(jitter() * 2 ** (retry - 1), MAX_BACKOFF))


class RetryQuota:
    """botocore's retry token bucket: retries spend it, successes fill it back."""

    def __init__(self, capacity: int = QUOTA_CAPACITY) -> None:
        self._max = capacity
        self._left = capacity
        self._lock = threading.Lock()

    @property
    def available(self) -> int:
        return self._left

    def acquire(self, *, timeout: bool) -> int | None:
        """Take what one retry costs; None (do not retry) when the bucket cannot pay for it."""
        cost = TIMEOUT_RETRY_COST if timeout else RETRY_COST
        with self._lock:
            if cost > self._left:
                return None
            self._left -= cost
            return cost

    def release(self, last_retry_cost: int | None) -> None:
        """A success: give back what its last retry took, or NO_RETRY_INCREMENT without retries."""
        with self._lock:
            self._left = min(self._max, self._left + (last_retry_cost or NO_RETRY_INCREMENT))

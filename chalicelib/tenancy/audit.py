"""The audit log: every credential fetch and every AWS call made for a tenant, one row each.

Rows never hold credentials, tokens or request bodies: only who, what, on which resource, and how it
went. They expire after a year (TTL).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

__all__ = ["AuditEntry", "AuditLog"]

_KEEP_SECONDS: Final = 366 * 24 * 3600


@dataclass(frozen=True)
class AuditEntry:
    """One audit row as handlers see it."""

    entry_id: str
    actor: str
    action: str
    resource: str
    outcome: str
    purpose: str
    at: float


class AuditLog:
    """Appends and pages a tenant's audit rows (a Query on the tenant's partition, newest first)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def record(
        self,
        tenant_id: str,
        *,
        actor: str,
        action: str,
        resource: str = "",
        outcome: str = "ok",
        purpose: str = "",
    ) -> None:
        from chalicelib.tenancy.models import AuditRecord

        now = self._clock()
        AuditRecord(
            tenant_id,
            f"{int(now * 1000):013d}#{secrets.token_hex(4)}",
            actor=actor[:100],
            action=action[:100],
            resource=resource[:300],
            outcome=outcome[:200],
            purpose=purpose[:64],
            at=now,
            expires_at=datetime.fromtimestamp(now + _KEEP_SECONDS, tz=UTC),
        ).save()

    def recent(self, tenant_id: str, *, limit: int = 10, before: str | None = None) -> list[AuditEntry]:
        """Up to `limit` entries older than the entry id `before` (or the newest), newest first."""
        from chalicelib.tenancy.models import AuditRecord

        cond = AuditRecord.entry_id < before if before else None
        rows = AuditRecord.query(tenant_id, cond, scan_index_forward=False, limit=limit)
        return [
            AuditEntry(r.entry_id, r.actor, r.action, r.resource, r.outcome, r.purpose, float(r.at))
            for r in rows
        ]

    def count(self, tenant_id: str, action: str | None = None) -> int:
        """How many entries (of one action) a tenant has; for tests and /plan-style summaries."""
        from chalicelib.tenancy.models import AuditRecord

        cond = AuditRecord.action == action if action else None
        return sum(1 for _ in AuditRecord.query(tenant_id, filter_condition=cond))

"""Removing a tenant: every row of it in every table, then the tenant itself (issue 3: nothing left).

Tables register here by model; each is purged with a Query on the tenant's partition (never a scan)
and batch deletes, so the cost is the tenant's own rows only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pynamodb.models import Model

__all__ = ["purge_tenant"]


def _keys(model: type[Model], tenant_id: str) -> list[Model]:
    return list(model.query(tenant_id, consistent_read=True))


def purge_tenant(tenant_id: str, models: Iterable[type[Model]]) -> dict[str, int]:
    """Delete the tenant's rows from `models`, then its audit rows and tenant row; counts by table."""
    from chalicelib.tenancy.models import AuditRecord, TenantRecord

    counts: dict[str, int] = {}
    tables: list[type[Model]] = [*models, AuditRecord]
    for model in tables:
        rows = _keys(model, tenant_id)
        with model.batch_write() as batch:
            for row in rows:
                batch.delete(row)
        counts[model.Meta.table_name] = len(rows)
    rows = _keys(TenantRecord, tenant_id)
    for row in rows:
        row.delete()
    counts[TenantRecord.Meta.table_name] = len(rows)
    return counts

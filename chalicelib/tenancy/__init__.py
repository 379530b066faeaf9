"""Tenants: one Discord guild bound to one AWS account, and who counts as main or admin there."""

from __future__ import annotations

from chalicelib.tenancy.models import TenantRecord
from chalicelib.tenancy.store import RoleKind, Tenant, TenantStore, level_of

__all__ = ["RoleKind", "Tenant", "TenantRecord", "TenantStore", "level_of"]

"""Tenants: one Discord guild bound to one AWS account; roles, plans, the credentials broker and audit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.tenancy.audit import AuditEntry, AuditLog
from chalicelib.tenancy.broker import TENANT_TAG, ClientHook, CredentialsBroker, TenantAccess
from chalicelib.tenancy.onboarding import REGIONS, Verifier, VerifyResult, check_role_arn, quick_create_link
from chalicelib.tenancy.plans import PLANS, Plan, Usage, plan_named
from chalicelib.tenancy.removal import purge_tenant
from chalicelib.tenancy.store import RoleKind, Tenant, TenantStore, level_of

if TYPE_CHECKING:
    from chalicelib.tenancy.models import AuditRecord, TenantRecord

__all__ = [
    "PLANS",
    "REGIONS",
    "TENANT_TAG",
    "AuditEntry",
    "AuditLog",
    "AuditRecord",
    "ClientHook",
    "CredentialsBroker",
    "Plan",
    "RoleKind",
    "Tenant",
    "TenantAccess",
    "TenantRecord",
    "TenantStore",
    "Usage",
    "Verifier",
    "VerifyResult",
    "check_role_arn",
    "level_of",
    "plan_named",
    "purge_tenant",
    "quick_create_link",
]


def __getattr__(name: str) -> object:
    """The PynamoDB models load on first use: a cold command reads its tenant without PynamoDB."""
    if name in ("AuditRecord", "TenantRecord"):
        from chalicelib.tenancy import models

        found: object = getattr(models, name)
        return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""A tenant as the code sees it, and its stored row read without PynamoDB.

`TenantRow` holds the attributes of TenantRecord (tenancy/models.py) with the same defaults, so the
interaction path can decode a GetItem answer (chalicelib/dynamodb) into the same `Tenant` the PynamoDB
path gives; tests/test_dynamodb_client.py checks that the two agree on generated rows and that the row
declares exactly the model's attributes and defaults.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chalicelib.discord import Level, Permission
from chalicelib.dynamodb import values as v
from chalicelib.dynamodb.values import Item

if TYPE_CHECKING:
    from chalicelib.tenancy.models import TenantRecord

__all__ = ["Tenant", "TenantRow", "level_of", "tenant_of_record", "tenant_row"]


@dataclass(frozen=True)
class Tenant:
    """A guild's configuration as the rest of the code sees it."""

    tenant_id: str
    main_role_ids: frozenset[str]
    admin_role_ids: frozenset[str]
    account_mode: str
    region: str
    created_by: str
    created_at: float
    version: int
    plan: str = "free"
    role_arn: str | None = None
    external_id: str | None = None
    aws_account_id: str | None = None
    pending_role_arn: str | None = None
    pending_region: str | None = None
    verified_at: float | None = None
    verify_problem: str | None = None
    dns_zone_id: str | None = None
    dns_domain: str | None = None

    @property
    def roles_configured(self) -> bool:
        return bool(self.main_role_ids and self.admin_role_ids)


def level_of(tenant: Tenant | None, role_ids: Iterable[str], permissions: int) -> Level:
    """The caller's level: server administrators and the admin role are admins; the main role is main."""
    if permissions & Permission.ADMINISTRATOR:
        return Level.ADMIN
    if tenant is None:
        return Level.WELCOME
    roles = set(role_ids)
    if roles & tenant.admin_role_ids:
        return Level.ADMIN
    if roles & tenant.main_role_ids:
        return Level.MAIN
    return Level.WELCOME


@dataclass(frozen=True)
class TenantRow:
    """TenantRecord's attributes as a stored item holds them (None: absent), with the model's defaults."""

    tenant_id: str
    region: str
    created_by: str
    created_at: float
    updated_at: float
    main_role_ids: set[str] | None = None
    admin_role_ids: set[str] | None = None
    account_mode: str = "hosting"
    aws_account_id: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    pending_role_arn: str | None = None
    pending_region: str | None = None
    verified_at: float | None = None
    verify_problem: str | None = None
    plan: str = "free"
    dns_zone_id: str | None = None
    dns_domain: str | None = None
    version: int | None = None


def tenant_row(item: Item) -> TenantRow:
    """A GetItem answer's item as a TenantRow, strictly (values.py)."""
    return TenantRow(
        tenant_id=v.required_text(item, "tenant_id"),
        region=v.required_text(item, "region"),
        created_by=v.required_text(item, "created_by"),
        created_at=v.required_number(item, "created_at"),
        updated_at=v.required_number(item, "updated_at"),
        main_role_ids=v.text_set(item, "main_role_ids"),
        admin_role_ids=v.text_set(item, "admin_role_ids"),
        account_mode=v.text(item, "account_mode", "hosting"),
        aws_account_id=v.text(item, "aws_account_id"),
        role_arn=v.text(item, "role_arn"),
        external_id=v.text(item, "external_id"),
        pending_role_arn=v.text(item, "pending_role_arn"),
        pending_region=v.text(item, "pending_region"),
        verified_at=v.number(item, "verified_at"),
        verify_problem=v.text(item, "verify_problem"),
        plan=v.text(item, "plan", "free"),
        dns_zone_id=v.text(item, "dns_zone_id"),
        dns_domain=v.text(item, "dns_domain"),
        version=v.version(item, "version"),
    )


def tenant_of_record(rec: TenantRecord | TenantRow) -> Tenant:
    """The row (PynamoDB's or the reader's) as a Tenant: one conversion for both paths."""
    return Tenant(
        tenant_id=rec.tenant_id,
        main_role_ids=frozenset(rec.main_role_ids or ()),
        admin_role_ids=frozenset(rec.admin_role_ids or ()),
        account_mode=rec.account_mode,
        region=rec.region,
        created_by=rec.created_by,
        created_at=float(rec.created_at),
        version=int(rec.version or 0),
        plan=rec.plan,
        role_arn=rec.role_arn,
        external_id=rec.external_id,
        aws_account_id=rec.aws_account_id,
        pending_role_arn=rec.pending_role_arn,
        pending_region=rec.pending_region,
        verified_at=None if rec.verified_at is None else float(rec.verified_at),
        verify_problem=rec.verify_problem,
        dns_zone_id=rec.dns_zone_id,
        dns_domain=rec.dns_domain,
    )

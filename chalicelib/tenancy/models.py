"""PynamoDB model of a tenant: one Discord guild bound to one AWS account (DESIGN.md §2)."""

from __future__ import annotations

from pynamodb.attributes import (
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    VersionAttribute,
)
from pynamodb.models import Model

from chalicelib.config import settings
from chalicelib.storage import TableMeta, share_one_session

__all__ = ["AuditRecord", "TenantRecord"]

_S = settings()


class TenantRecord(Model):
    """A guild's configuration; the partition key is the tenant id (the guild id)."""

    class Meta(TableMeta):
        table_name = _S.tenants_table

    tenant_id = UnicodeAttribute(hash_key=True)
    # DynamoDB has no empty sets: a missing attribute means "no roles chosen yet".
    main_role_ids = UnicodeSetAttribute(null=True)
    admin_role_ids = UnicodeSetAttribute(null=True)
    # "hosting" (the bot's own account) or "customer" (an assumed role in the guild's own account).
    # A customer account counts only once verified; until then the pending_* fields hold the offer.
    account_mode = UnicodeAttribute(default="hosting")
    aws_account_id = UnicodeAttribute(null=True)
    role_arn = UnicodeAttribute(null=True)
    external_id = UnicodeAttribute(null=True)
    region = UnicodeAttribute()
    pending_role_arn = UnicodeAttribute(null=True)
    pending_region = UnicodeAttribute(null=True)
    verified_at = NumberAttribute(null=True)
    verify_problem = UnicodeAttribute(null=True)
    plan = UnicodeAttribute(default="free")
    # Route 53 names for running games (`<game>.<dns_domain>` in zone dns_zone_id), set with /setdns.
    dns_zone_id = UnicodeAttribute(null=True)
    dns_domain = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    version = VersionAttribute()


class AuditRecord(Model):
    """Who used a tenant's AWS access, for what, on what, and how it went; newest last in the sort key."""

    class Meta(TableMeta):
        table_name = _S.audit_table

    tenant_id = UnicodeAttribute(hash_key=True)
    # "<epoch ms, 13 digits>#<random>": sorts by time, unique under concurrency.
    entry_id = UnicodeAttribute(range_key=True)
    actor = UnicodeAttribute()
    action = UnicodeAttribute()
    resource = UnicodeAttribute(default="")
    outcome = UnicodeAttribute()
    purpose = UnicodeAttribute(default="")
    at = NumberAttribute()
    expires_at = TTLAttribute()


share_one_session(TenantRecord, AuditRecord)

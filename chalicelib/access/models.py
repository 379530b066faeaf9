"""PynamoDB models of player access: grants, guest-link uses and tenant policy, and rate counters.

Every key starts with the tenant id (DESIGN.md §2) except the rate counters': a per-address limit has to
apply before we know (or trust) which tenant a request claims, and those rows hold no tenant data.
"""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection, LocalSecondaryIndex
from pynamodb.models import Model

from chalicelib.config import settings
from chalicelib.storage import TableMeta, share_one_session

__all__ = ["AccessRecord", "ByAddress", "ByExpiry", "ByOwner", "GrantRecord", "RateRecord"]

_S = settings()
# The expiry index has one partition: the reaper reads "everything expired before now" in one Query.
# At the sizes a tenant's maximum allows this is far below one partition's limits.
EXPIRY_SHARD = "grant"


class ByOwner(LocalSecondaryIndex["GrantRecord"]):  # type: ignore[no-untyped-call]  # pynamodb's hook is untyped
    """A tenant's grants by owner: a member's user id, or a guest link's id."""

    class Meta:
        index_name = "by-owner"
        projection = AllProjection()

    tenant_id = UnicodeAttribute(hash_key=True)
    owner = UnicodeAttribute(range_key=True)


class ByExpiry(GlobalSecondaryIndex["GrantRecord"]):  # type: ignore[no-untyped-call]  # pynamodb's hook is untyped
    """Every tenant's grants by expiry, for the reaper."""

    class Meta:
        index_name = "by-expiry"
        projection = KeysOnlyProjection()

    shard = UnicodeAttribute(hash_key=True)
    expires_at = NumberAttribute(range_key=True)


class ByAddress(GlobalSecondaryIndex["GrantRecord"]):  # type: ignore[no-untyped-call]  # pynamodb's hook is untyped
    """Which tenants let an address in, for /ipauth/check without a link."""

    class Meta:
        index_name = "by-address"
        projection = AllProjection()

    address = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute(range_key=True)


class GrantRecord(Model):
    """One address let through every game firewall of one tenant until `expires_at`."""

    class Meta(TableMeta):
        table_name = _S.grants_table

    tenant_id = UnicodeAttribute(hash_key=True)
    address = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute()  # "member" or "guest"
    owner = UnicodeAttribute()  # "user#<discord user id>" or "link#<guest link id>"
    granted_at = NumberAttribute()
    expires_at = NumberAttribute()
    shard = UnicodeAttribute(default=EXPIRY_SHARD)
    # DynamoDB's TTL is only a backstop a day after expiry: the reaper removes grants first, because a
    # removal must also be sent to the game firewalls.
    purge_at = TTLAttribute(null=True)

    by_owner = ByOwner()
    by_expiry = ByExpiry()
    by_address = ByAddress()


class AccessRecord(Model):
    """Per-tenant access rows: `policy` (grant lengths, maximum), `link#<id>` (guest-link uses) and
    `firewall` (the version of the tenant's grant set, agent/contract/README.md)."""

    class Meta(TableMeta):
        table_name = _S.access_table

    tenant_id = UnicodeAttribute(hash_key=True)
    item = UnicodeAttribute(range_key=True)
    # policy rows
    member_days = NumberAttribute(null=True)
    guest_days = NumberAttribute(null=True)
    max_grants = NumberAttribute(null=True)
    guest_link_uses = NumberAttribute(null=True)
    # guest-link rows
    uses = NumberAttribute(null=True)
    max_uses = NumberAttribute(null=True)
    purge_at = TTLAttribute(null=True)
    updated_at = NumberAttribute(null=True)
    issued_by = UnicodeAttribute(null=True)  # guest-link rows: who ran /addguestip
    revoked_at = NumberAttribute(null=True)  # guest-link rows: revoked by an admin (/access)
    link_expires_at = NumberAttribute(null=True)
    # the firewall row
    set_version = NumberAttribute(null=True)


class RateRecord(Model):
    """A fixed-window counter: `key` is "<scope>#<subject>#<window start>"."""

    class Meta(TableMeta):
        table_name = _S.ratelimit_table

    key = UnicodeAttribute(hash_key=True)
    hits = NumberAttribute(default=0)
    purge_at = TTLAttribute(null=True)


share_one_session(GrantRecord, AccessRecord, RateRecord)

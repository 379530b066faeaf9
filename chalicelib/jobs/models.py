"""PynamoDB model of an interaction's job: idempotency and reply bookkeeping, expiring by TTL."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.models import Model

from chalicelib.config import settings
from chalicelib.storage import TableMeta, share_one_session

__all__ = ["InteractionRecord"]

_S = settings()


class InteractionRecord(Model):
    """RUNNING (leased) → RAN (reply rendered, not yet delivered) → DONE."""

    class Meta(TableMeta):
        table_name = _S.interactions_table

    tenant_id = UnicodeAttribute(hash_key=True)
    interaction_id = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute()
    status = UnicodeAttribute()
    lease_until = NumberAttribute()
    attempts = NumberAttribute(default=1)
    reply_json = UnicodeAttribute(null=True)
    delivered_via = UnicodeAttribute(null=True)
    expires_at = TTLAttribute()


share_one_session(InteractionRecord)

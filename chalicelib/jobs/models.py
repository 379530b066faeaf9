"""PynamoDB model of an interaction's job: idempotency and reply bookkeeping, expiring by TTL."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.models import Model

from chalicelib.config import settings

__all__ = ["InteractionRecord"]

_S = settings()


class InteractionRecord(Model):
    """RUNNING (leased) → RAN (reply rendered, not yet delivered) → DONE."""

    class Meta:
        table_name = _S.interactions_table
        region = _S.region
        host = _S.aws_endpoint_url
        billing_mode = "PAY_PER_REQUEST"

    tenant_id = UnicodeAttribute(hash_key=True)
    interaction_id = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute()
    status = UnicodeAttribute()
    lease_until = NumberAttribute()
    attempts = NumberAttribute(default=1)
    reply_json = UnicodeAttribute(null=True)
    delivered_via = UnicodeAttribute(null=True)
    expires_at = TTLAttribute()

"""PynamoDB model of a game; the partition key is the tenant, the sort key the game's name."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, VersionAttribute
from pynamodb.models import Model

from chalicelib.config import settings

__all__ = ["GameRecord"]

_S = settings()


class GameRecord(Model):
    """One game server of one tenant."""

    class Meta:
        table_name = _S.games_table
        region = _S.region
        host = _S.aws_endpoint_url
        billing_mode = "PAY_PER_REQUEST"

    tenant_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute(range_key=True)
    description = UnicodeAttribute(default="")
    state = UnicodeAttribute(default="STOPPED")
    # The Step Functions execution that owns the current transition (its name is idempotent).
    execution = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    version = VersionAttribute()

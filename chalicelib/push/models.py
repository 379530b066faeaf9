"""PynamoDB model of web push: members' device subscriptions and the pushes waiting for a device.

One table, two kinds of rows under the tenant (DESIGN.md §2: every key starts with the tenant):
- `sub#<user id>#<device>`: one browser's subscription (endpoint and keys) and its owner's preference;
  `<device>` is a hash of the endpoint, so a browser that subscribes again replaces its row.
- `wait#<nonce>`: one push flow's single-use token (the nonce of the sealed push token), the Step
  Functions task token waiting for it and, once used, the result. Expires by TTL.
"""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.config import settings
from chalicelib.storage import TableMeta, share_one_session

__all__ = ["ByDevice", "PushRecord"]

_S = settings()


class ByDevice(GlobalSecondaryIndex["PushRecord"]):  # type: ignore[no-untyped-call]  # pynamodb's hook is untyped
    """A browser's subscriptions in every tenant, for `DELETE /push/subscribe` (which proves the device)."""

    class Meta:
        index_name = "by-device"
        projection = AllProjection()

    device = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute(range_key=True)


class PushRecord(Model):
    """A subscription row (`sub#…`) or a waiting push (`wait#…`)."""

    class Meta(TableMeta):
        table_name = _S.push_table

    tenant_id = UnicodeAttribute(hash_key=True)
    item = UnicodeAttribute(range_key=True)
    user_id = UnicodeAttribute()
    # subscription rows
    device = UnicodeAttribute(null=True)
    endpoint = UnicodeAttribute(null=True)
    p256dh = UnicodeAttribute(null=True)
    auth = UnicodeAttribute(null=True)
    preference = UnicodeAttribute(null=True)
    created_at = NumberAttribute(null=True)
    link = UnicodeAttribute(null=True)  # the member link's nonce it was made with
    confirmed_at = NumberAttribute(null=True)  # when the member confirmed it in Discord (/addip's button)
    # wait rows: "pending" → "used" (a device authorised) or "closed" (the flow gave up)
    state = UnicodeAttribute(null=True)
    task_token = UnicodeAttribute(null=True)
    result_json = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)
    purge_at = TTLAttribute(null=True)

    by_device = ByDevice()


share_one_session(PushRecord)

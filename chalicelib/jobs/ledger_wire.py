"""The jobs ledger's rows through the botocore-free client (chalicelib/dynamodb), with exactly the
conditions and attributes PynamoDB's InteractionRecord writes (jobs/models.py; jobs/ledger.py's
PynamoRows): so the first job of a cold jobs function imports neither botocore nor PynamoDB.
tests/test_dynamodb_ledger.py checks that both write equal rows and refuse alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from chalicelib.dynamodb import CONDITION_FAILED, Condition, DynamoDbClient, DynamoDbError, Item
from chalicelib.dynamodb import values as v

__all__ = ["WireRows"]

_RUNNING: Final = "RUNNING"
_RAN: Final = "RAN"
_DONE: Final = "DONE"
# InteractionRecord's default for `attempts`, which PynamoDB writes with every new row.
_ATTEMPTS: Final = 1


def _s(text: str) -> dict[str, str]:
    return {"S": text}


def _n(number: float) -> dict[str, str]:
    """A number as PynamoDB's NumberAttribute serialises it (JSON)."""
    return {"N": json.dumps(number)}


class WireRows:
    """InteractionRecord rows of one table through `client`."""

    def __init__(self, client: DynamoDbClient, table: str) -> None:
        self._client = client
        self._table = table

    def _key(self, tenant_id: str, interaction_id: str) -> Item:
        return {"tenant_id": _s(tenant_id), "interaction_id": _s(interaction_id)}

    def put_claim(
        self, tenant_id: str, interaction_id: str, kind: str, *, now: float, lease_until: float, expires: int
    ) -> bool:
        item = {
            **self._key(tenant_id, interaction_id),
            "kind": _s(kind),
            "status": _s(_RUNNING),
            "lease_until": _n(lease_until),
            "attempts": _n(_ATTEMPTS),
            "expires_at": {"N": str(expires)},
        }
        fresh_or_abandoned = Condition(
            "attribute_not_exists (#0) OR (#1 = :0 AND #2 < :1)",
            {"#0": "interaction_id", "#1": "status", "#2": "lease_until"},
            {":0": _s(_RUNNING), ":1": _n(now)},
        )
        return _unless_refused(lambda: self._client.put_item(self._table, item, condition=fresh_or_abandoned))

    def status(self, tenant_id: str, interaction_id: str) -> tuple[str, str | None] | None:
        item = self._client.get_item(self._table, self._key(tenant_id, interaction_id), consistent=True)
        if item is None:
            return None
        return v.required_text(item, "status"), v.text(item, "reply_json")

    def mark_ran(self, tenant_id: str, interaction_id: str, reply_json: str) -> bool:
        update = Condition(
            "SET #0 = :0, #1 = :1",
            {"#0": "status", "#1": "reply_json"},
            {":0": _s(_RAN), ":1": _s(reply_json)},
        )
        exists = Condition("attribute_exists (#2)", {"#2": "interaction_id"}, {})
        key = self._key(tenant_id, interaction_id)
        return _unless_refused(
            lambda: self._client.update_item(self._table, key, update=update, condition=exists)
        )

    def mark_done(self, tenant_id: str, interaction_id: str, via: str) -> None:
        update = Condition(
            "SET #0 = :0, #1 = :1 REMOVE #2",
            {"#0": "status", "#1": "delivered_via", "#2": "reply_json"},
            {":0": _s(_DONE), ":1": _s(via)},
        )
        self._client.update_item(self._table, self._key(tenant_id, interaction_id), update=update)

    def release(self, tenant_id: str, interaction_id: str) -> None:
        running = Condition("#0 = :0", {"#0": "status"}, {":0": _s(_RUNNING)})
        key = self._key(tenant_id, interaction_id)
        _unless_refused(lambda: self._client.delete_item(self._table, key, condition=running))


def _unless_refused(write: Callable[[], None]) -> bool:
    """True if the write happened, False if its condition refused it; other errors propagate."""
    try:
        write()
    except DynamoDbError as exc:
        if exc.code != CONDITION_FAILED:
            raise
        return False
    return True

"""Exactly-once job execution over an at-least-once queue (lesson L8).

One conditional write claims an interaction: it succeeds when no record exists or the previous claim's
lease ran out (a crashed run). A record that reached RAN keeps the rendered reply, so a redelivery after
a failed Discord call re-sends the reply without running the job again.

The rows are written through PynamoDB, or, given the botocore-free client (chalicelib/dynamodb), through
it with the same conditions (jobs/ledger_wire.py): then the jobs function's first job imports neither
botocore nor PynamoDB (docs/performance.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Protocol

from chalicelib.dynamodb import CONDITION_FAILED

if TYPE_CHECKING:
    from chalicelib.dynamodb import DynamoDbClient

__all__ = ["Claim", "InteractionLedger", "JobStatus", "LedgerRows", "PynamoRows"]

_KEEP_SECONDS: Final = 24 * 3600


class JobStatus(StrEnum):
    RUNNING = "RUNNING"
    RAN = "RAN"
    DONE = "DONE"


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a job: run it, deliver a stored reply, or do nothing."""

    run: bool
    stored_reply: str | None = None


class LedgerRows(Protocol):
    """The ledger's five row operations; each conditional one answers False when its condition fails."""

    def put_claim(
        self, tenant_id: str, interaction_id: str, kind: str, *, now: float, lease_until: float, expires: int
    ) -> bool:
        """Write a RUNNING row if there is none, or the one there is RUNNING with its lease over."""
        ...

    def status(self, tenant_id: str, interaction_id: str) -> tuple[str, str | None] | None:
        """The row's (status, stored reply), strongly consistent; None without a row."""
        ...

    def mark_ran(self, tenant_id: str, interaction_id: str, reply_json: str) -> bool:
        """RAN with the reply, if the row exists."""
        ...

    def mark_done(self, tenant_id: str, interaction_id: str, via: str) -> None:
        """DONE, delivered `via`, reply dropped."""
        ...

    def release(self, tenant_id: str, interaction_id: str) -> None:
        """Delete the row if it is still RUNNING."""
        ...


class PynamoRows:
    """The rows through PynamoDB's InteractionRecord (imported on first use)."""

    def put_claim(
        self, tenant_id: str, interaction_id: str, kind: str, *, now: float, lease_until: float, expires: int
    ) -> bool:
        from pynamodb.exceptions import PutError

        from chalicelib.jobs.models import InteractionRecord

        rec = InteractionRecord(
            tenant_id,
            interaction_id,
            kind=kind,
            status=JobStatus.RUNNING.value,
            lease_until=lease_until,
            expires_at=datetime.fromtimestamp(expires, tz=UTC),
        )
        fresh = InteractionRecord.interaction_id.does_not_exist()
        abandoned = (InteractionRecord.status == JobStatus.RUNNING.value) & (
            InteractionRecord.lease_until < now
        )
        try:
            rec.save(condition=fresh | abandoned)
        except PutError as exc:
            if exc.cause_response_code != CONDITION_FAILED:
                raise
            return False
        return True

    def status(self, tenant_id: str, interaction_id: str) -> tuple[str, str | None] | None:
        from pynamodb.exceptions import DoesNotExist

        from chalicelib.jobs.models import InteractionRecord

        try:
            rec = InteractionRecord.get(tenant_id, interaction_id, consistent_read=True)
        except DoesNotExist:
            return None
        return rec.status, rec.reply_json

    def mark_ran(self, tenant_id: str, interaction_id: str, reply_json: str) -> bool:
        from pynamodb.exceptions import UpdateError

        from chalicelib.jobs.models import InteractionRecord

        try:
            InteractionRecord(tenant_id, interaction_id).update(
                actions=[
                    InteractionRecord.status.set(JobStatus.RAN.value),
                    InteractionRecord.reply_json.set(reply_json),
                ],
                condition=InteractionRecord.interaction_id.exists(),
            )
        except UpdateError as exc:
            if exc.cause_response_code != CONDITION_FAILED:
                raise
            return False
        return True

    def mark_done(self, tenant_id: str, interaction_id: str, via: str) -> None:
        from chalicelib.jobs.models import InteractionRecord

        InteractionRecord(tenant_id, interaction_id).update(
            actions=[
                InteractionRecord.status.set(JobStatus.DONE.value),
                InteractionRecord.delivered_via.set(via),
                InteractionRecord.reply_json.remove(),
            ]
        )

    def release(self, tenant_id: str, interaction_id: str) -> None:
        from pynamodb.exceptions import DeleteError

        from chalicelib.jobs.models import InteractionRecord

        try:
            InteractionRecord(tenant_id, interaction_id).delete(
                condition=InteractionRecord.status == JobStatus.RUNNING.value
            )
        except DeleteError as exc:
            if exc.cause_response_code != CONDITION_FAILED:
                raise


class InteractionLedger:
    """Records the progress of each interaction's job, keyed by tenant and interaction id."""

    def __init__(
        self,
        *,
        lease_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
        client: DynamoDbClient | None = None,
        table: str = "",
    ) -> None:
        """With `client` (and the interactions `table`'s name) the rows go through the botocore-free
        client, else through PynamoDB."""
        self._lease = lease_seconds
        self._clock = clock
        if client is not None:
            from chalicelib.jobs.ledger_wire import WireRows

            self._rows: LedgerRows = WireRows(client, table)
        else:
            self._rows = PynamoRows()

    def claim(self, tenant_id: str, interaction_id: str, kind: str) -> Claim:
        now = self._clock()
        if self._rows.put_claim(
            tenant_id,
            interaction_id,
            kind,
            now=now,
            lease_until=now + self._lease,
            expires=int(now + _KEEP_SECONDS),
        ):
            return Claim(run=True)
        existing = self._rows.status(tenant_id, interaction_id)
        if existing is None:
            return self.claim(tenant_id, interaction_id, kind)
        status, reply = existing
        if status == JobStatus.RAN.value:
            return Claim(run=False, stored_reply=reply)
        return Claim(run=False)  # DONE, or RUNNING elsewhere under a live lease

    def ran(self, tenant_id: str, interaction_id: str, reply_json: str) -> bool:
        """The job finished; keep its reply until it is delivered. False if the record is gone (the job
        removed its own tenant), in which case nothing is written back."""
        return self._rows.mark_ran(tenant_id, interaction_id, reply_json)

    def done(self, tenant_id: str, interaction_id: str, via: str) -> None:
        self._rows.mark_done(tenant_id, interaction_id, via)

    def release(self, tenant_id: str, interaction_id: str) -> None:
        """Give up a claim after a transient failure so the redelivery may run the job."""
        self._rows.release(tenant_id, interaction_id)

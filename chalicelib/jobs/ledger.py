"""Exactly-once job execution over an at-least-once queue (lesson L8).

One conditional write claims an interaction: it succeeds when no record exists or the previous claim's
lease ran out (a crashed run). A record that reached RAN keeps the rendered reply, so a redelivery after
a failed Discord call re-sends the reply without running the job again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

__all__ = ["Claim", "InteractionLedger", "JobStatus"]

_CONDITION_FAILED: Final = "ConditionalCheckFailedException"
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


class InteractionLedger:
    """Records the progress of each interaction's job, keyed by tenant and interaction id."""

    def __init__(self, *, lease_seconds: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        self._lease = lease_seconds
        self._clock = clock

    def claim(self, tenant_id: str, interaction_id: str, kind: str) -> Claim:
        from pynamodb.exceptions import DoesNotExist, PutError

        from chalicelib.jobs.models import InteractionRecord

        now = self._clock()
        rec = InteractionRecord(
            tenant_id,
            interaction_id,
            kind=kind,
            status=JobStatus.RUNNING.value,
            lease_until=now + self._lease,
            expires_at=datetime.fromtimestamp(now + _KEEP_SECONDS, tz=UTC),
        )
        fresh = InteractionRecord.interaction_id.does_not_exist()
        abandoned = (InteractionRecord.status == JobStatus.RUNNING.value) & (
            InteractionRecord.lease_until < now
        )
        try:
            rec.save(condition=fresh | abandoned)
            return Claim(run=True)
        except PutError as exc:
            if exc.cause_response_code != _CONDITION_FAILED:
                raise
        try:
            existing = InteractionRecord.get(tenant_id, interaction_id, consistent_read=True)
        except DoesNotExist:
            return self.claim(tenant_id, interaction_id, kind)
        if existing.status == JobStatus.RAN.value:
            return Claim(run=False, stored_reply=existing.reply_json)
        return Claim(run=False)  # DONE, or RUNNING elsewhere under a live lease

    def ran(self, tenant_id: str, interaction_id: str, reply_json: str) -> bool:
        """The job finished; keep its reply until it is delivered. False if the record is gone (the job
        removed its own tenant), in which case nothing is written back."""
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
            if exc.cause_response_code != _CONDITION_FAILED:
                raise
            return False
        return True

    def done(self, tenant_id: str, interaction_id: str, via: str) -> None:
        from chalicelib.jobs.models import InteractionRecord

        InteractionRecord(tenant_id, interaction_id).update(
            actions=[
                InteractionRecord.status.set(JobStatus.DONE.value),
                InteractionRecord.delivered_via.set(via),
                InteractionRecord.reply_json.remove(),
            ]
        )

    def release(self, tenant_id: str, interaction_id: str) -> None:
        """Give up a claim after a transient failure so the redelivery may run the job."""
        from pynamodb.exceptions import DeleteError

        from chalicelib.jobs.models import InteractionRecord

        try:
            InteractionRecord(tenant_id, interaction_id).delete(
                condition=InteractionRecord.status == JobStatus.RUNNING.value
            )
        except DeleteError as exc:
            if exc.cause_response_code != _CONDITION_FAILED:
                raise

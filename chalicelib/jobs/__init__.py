"""Deferred work: the job message, the queue, the idempotency ledger and the runner."""

from __future__ import annotations

from chalicelib.jobs.handlers import JobRegistry
from chalicelib.jobs.ledger import Claim, InteractionLedger, JobStatus
from chalicelib.jobs.messages import JobMessage
from chalicelib.jobs.models import InteractionRecord
from chalicelib.jobs.queue import SqsJobQueue
from chalicelib.jobs.runner import JobRunner

__all__ = [
    "Claim",
    "InteractionLedger",
    "InteractionRecord",
    "JobMessage",
    "JobRegistry",
    "JobRunner",
    "JobStatus",
    "SqsJobQueue",
]

"""Deferred work: the job message, the queue, the idempotency ledger and the runner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.jobs.handlers import JobRegistry
from chalicelib.jobs.ledger import Claim, InteractionLedger, JobStatus
from chalicelib.jobs.messages import JobMessage
from chalicelib.jobs.queue import SqsJobQueue
from chalicelib.jobs.runner import JobRunner

if TYPE_CHECKING:
    from chalicelib.jobs.models import InteractionRecord

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


def __getattr__(name: str) -> object:
    """The PynamoDB model loads on first use: a cold command that only reads must not import PynamoDB."""
    if name == "InteractionRecord":
        from chalicelib.jobs.models import InteractionRecord

        return InteractionRecord
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

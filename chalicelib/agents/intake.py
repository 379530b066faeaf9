"""The agent-events intake: what the IoT rule fills, re-sent to the fair agent-events queue by tenant.

The IoT rule's SQS action cannot set a MessageGroupId, so it sends every agent's events to the intake
queue; the agent_intake function re-sends each one unchanged to the agent-events queue with its tenant
as MessageGroupId. On a standard queue that makes it an SQS *fair queue*: when one tenant's messages
pile up, SQS hands the others' to the consumer first, so a flood from one tenant's agents cannot delay
another tenant's `ready` (issue 15.4; docs/scale.md, "Fairness between tenants").

It must stay cheap, as it sees every event: no DynamoDB, no contract check (the agent_events handler
does that). It reads one thing, the topic the rule recorded (`topic()`, which the agent cannot choose);
the body is decoded as JSON to find it, because a text search could be fooled by a "topic" the agent
nests inside its own payload and so charge its flood to another tenant.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypedDict

from chalicelib.agents.events import topic_names

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_ENTRIES",
    "AgentIntake",
    "BatchResponse",
    "IntakeRecord",
    "tenant_of",
]

log = logging.getLogger(__name__)

# SendMessageBatch takes at most 10 entries whose bodies total at most 1 MiB (SQS API reference).
MAX_BATCH_ENTRIES: Final = 10
MAX_BATCH_BYTES: Final = 1024 * 1024


class _ItemFailure(TypedDict):
    itemIdentifier: str


class BatchResponse(TypedDict):
    """Lambda's partial batch response (event source mapping with ReportBatchItemFailures)."""

    batchItemFailures: list[_ItemFailure]


@dataclass(frozen=True)
class IntakeRecord:
    """One message of the intake queue: its id (what a partial failure names) and its body."""

    message_id: str
    body: str

    @classmethod
    def of(cls, record: Mapping[str, object]) -> IntakeRecord:
        """From one record of Lambda's SQS event."""
        return cls(str(record.get("messageId", "")), str(record.get("body", "")))


def tenant_of(body: str) -> str | None:
    """The tenant of the topic the IoT rule recorded in `body`, or None when there is none."""
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        return None
    names = topic_names(raw.get("topic")) if isinstance(raw, dict) else None
    return names[0] if names else None


class AgentIntake:
    """Re-sends intake messages to the fair agent-events queue, grouped by tenant."""

    def __init__(self, client: Callable[[], SQSClient], events_queue: str) -> None:
        self._client = client
        self._name = events_queue
        self._url: str | None = None

    def run(self, records: Sequence[Mapping[str, object]]) -> BatchResponse:
        """Forward one Lambda batch; the response names the records to deliver again."""
        failed = self.forward([IntakeRecord.of(r) for r in records])
        return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}

    def forward(self, records: Sequence[IntakeRecord]) -> list[str]:
        """Send each record on with its tenant as MessageGroupId; the ids of those SQS did not take.

        A record without a rule's topic cannot be an agent's event (only the rule writes here): it is
        dropped with a log line, as the agent_events handler would drop it.
        """
        entries: list[tuple[str, SendMessageBatchRequestEntryTypeDef]] = []
        for record in records:
            tenant = tenant_of(record.body)
            if tenant is None:
                log.error("dropping malformed intake message %s: no agent's topic", record.message_id)
                continue
            entry: SendMessageBatchRequestEntryTypeDef = {
                "Id": str(len(entries)),
                "MessageBody": record.body,
                "MessageGroupId": tenant,
            }
            entries.append((record.message_id, entry))
        failed: list[str] = []
        for chunk in _chunks(entries):
            failed += self._send(chunk)
        return failed

    def _send(self, chunk: Sequence[tuple[str, SendMessageBatchRequestEntryTypeDef]]) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        ids = {entry["Id"]: message_id for message_id, entry in chunk}
        try:
            sent = self._client().send_message_batch(QueueUrl=self.url(), Entries=[e for _, e in chunk])
        except (BotoCoreError, ClientError):
            log.exception("could not forward %d agent events; they will be delivered again", len(chunk))
            return list(ids.values())
        for failure in sent.get("Failed", []):
            log.error("SQS did not take agent event %s: %s", ids[failure["Id"]], failure.get("Code"))
        return [ids[f["Id"]] for f in sent.get("Failed", [])]

    def url(self) -> str:
        if self._url is None:
            self._url = self._client().get_queue_url(QueueName=self._name)["QueueUrl"]
        return self._url


def _chunks(
    entries: Sequence[tuple[str, SendMessageBatchRequestEntryTypeDef]],
) -> Iterator[list[tuple[str, SendMessageBatchRequestEntryTypeDef]]]:
    """Batches within SendMessageBatch's limits: 10 entries, 1 MiB of bodies."""
    chunk: list[tuple[str, SendMessageBatchRequestEntryTypeDef]] = []
    size = 0
    for item in entries:
        body = len(item[1]["MessageBody"].encode())
        if chunk and (len(chunk) == MAX_BATCH_ENTRIES or size + body > MAX_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += body
    if chunk:
        yield chunk

"""Feeds SQS queues to the same handler functions the Lambdas use, as Lambda's event source would.

Each receive of up to the binding's batch size becomes one SQS event; the handler's success deletes its
messages, an exception leaves them for redelivery after the visibility timeout (so
ApproximateReceiveCount grows as in AWS). A handler that answers Lambda's partial batch response
(`{"batchItemFailures": [{"itemIdentifier": <messageId>}]}`, ReportBatchItemFailures) has every other
message deleted, as the event source mapping does.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devstack.iam import running_as

__all__ = ["LambdaContext", "Pump", "batch_failures", "scheduled_event", "sqs_batch_event", "sqs_event"]

log = logging.getLogger(__name__)


@dataclass
class LambdaContext:
    """The few context attributes Chalice and our handlers read."""

    function_name: str
    aws_request_id: str = ""
    memory_limit_in_mb: int = 512

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def sqs_event(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """The Lambda event for one received SQS message."""
    return sqs_batch_event([message], queue_arn, region)


def sqs_batch_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The Lambda event for a batch of received SQS messages."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": dict(message.get("Attributes", {})),
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(message["Body"].encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


def batch_failures(result: object) -> set[str]:
    """The message ids a handler's partial batch response names (none for any other result)."""
    if not isinstance(result, dict) or not isinstance(result.get("batchItemFailures"), list):
        return set()
    return {
        str(f["itemIdentifier"])
        for f in result["batchItemFailures"]
        if isinstance(f, dict) and "itemIdentifier" in f
    }


def scheduled_event(name: str, region: str) -> dict[str, Any]:
    """The EventBridge "Scheduled Event" a Chalice `@app.schedule` function receives."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [f"arn:aws:events:{region}:000000000000:rule/gangway-local-{name}"],
        "detail": {},
    }


class Pump:
    """One thread per queue binding; `stop()` ends them within a second."""

    def __init__(self, sqs: Any, region: str) -> None:
        self._sqs = sqs
        self._region = region
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def bind(
        self, queue_url: str, name: str, handler: Callable[[dict[str, Any], Any], Any], *, batch_size: int = 1
    ) -> None:
        """Deliver `queue_url` to `handler` in events of up to `batch_size` (app.py's `batch_size`)."""
        arn = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        thread = threading.Thread(
            target=self._loop,
            args=(queue_url, arn, name, handler, batch_size),
            name=f"pump-{name}",
            daemon=True,
        )
        self._threads.append(thread)

    def every(self, seconds: float, name: str, handler: Callable[[dict[str, Any], Any], Any]) -> None:
        """Fire a schedule binding every `seconds` (first after one interval), as EventBridge would."""

        def loop() -> None:
            while not self._stop.wait(seconds):
                try:
                    with running_as(name):  # the function's own IAM identity when enforced (devstack/iam.py)
                        handler(scheduled_event(name, self._region), LambdaContext(function_name=name))
                except Exception:
                    log.exception("schedule %s: handler failed", name)

        self._threads.append(threading.Thread(target=loop, name=f"schedule-{name}", daemon=True))

    def start(self) -> Pump:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _loop(
        self, url: str, arn: str, name: str, handler: Callable[[dict[str, Any], Any], Any], batch_size: int
    ) -> None:
        while not self._stop.is_set():
            try:
                got = self._sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=batch_size,
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                    MessageSystemAttributeNames=["All"],
                )
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("pump %s: receive failed", name)
                self._stop.wait(1)
                continue
            messages = got.get("Messages", [])
            if not messages:
                continue
            event = sqs_batch_event(messages, arn, self._region)
            try:
                with running_as(name):  # the function's own IAM identity when enforced (devstack/iam.py)
                    result = handler(
                        event, LambdaContext(function_name=name, aws_request_id=str(uuid.uuid4()))
                    )
            except Exception:
                log.exception("pump %s: handler failed; the batch will be redelivered", name)
                continue
            failed = batch_failures(result)
            for message in messages:
                if message["MessageId"] not in failed:
                    self._sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

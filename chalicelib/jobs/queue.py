"""Put deferred interactions on the jobs queue (SQS), inside the 3-second budget."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chalicelib.discord import Deferred
from chalicelib.discord.dispatch import Caller
from chalicelib.errors import InfraError, NotSetUp
from chalicelib.jobs.messages import JobMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = ["SqsJobQueue"]


class SqsJobQueue:
    """Sends one message per deferred interaction; the queue URL is looked up once per container."""

    def __init__(self, client: Callable[[], SQSClient], queue_name: str) -> None:
        self._client = client
        self._name = queue_name
        self._url: str | None = None

    def url(self) -> str:
        if self._url is None:
            self._url = self._client().get_queue_url(QueueName=self._name)["QueueUrl"]
        return self._url

    def enqueue(self, caller: Caller, deferred: Deferred, trace_header: str | None) -> None:
        """Queue the job of `deferred` for the interaction `caller` sent.

        Raises:
            NotSetUp: deferred work outside a guild.  InfraError: SQS refused the message.
        """
        it = caller.interaction
        if it.guild_id is None:
            raise NotSetUp("gangway works inside a Discord server, not in direct messages.")
        msg = JobMessage(
            interaction_id=it.id,
            application_id=it.application_id,
            token=it.token,
            tenant_id=it.guild_id,
            channel_id=it.channel_id,
            user_id=it.user_id,
            user_name=it.user_name,
            role_ids=tuple(sorted(it.role_ids)),
            permissions=it.permissions,
            kind=deferred.job.kind,
            args=dict(deferred.job.args),
            ephemeral=deferred.ephemeral,
            update=deferred.update,
            created_at=time.time(),
            command=it.command or it.custom_id,
            trace=trace_header,
        )
        extra: dict[str, Any] = {}
        if trace_header:
            # Lets X-Ray link the jobs Lambda's trace to this one in AWS (DESIGN.md §1).
            extra["MessageSystemAttributes"] = {
                "AWSTraceHeader": {"DataType": "String", "StringValue": trace_header}
            }
        try:
            self._client().send_message(QueueUrl=self.url(), MessageBody=msg.to_json(), **extra)
        except Exception as exc:
            raise InfraError(f"could not queue job {msg.kind}: {exc}") from exc

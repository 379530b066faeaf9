"""The queues: one per `*_queue` setting plus agent-events, each with a dead-letter queue and an alarm.

Each queue is sized for the function app.py binds to it (`handlers`, function -> queue): its visibility
outlasts that function's timeout. The alarms mail the stage's alarm topic. agent-events is a fair queue:
a standard queue whose messages carry a MessageGroupId (agent_intake sets the tenant), which needs no
attribute of the queue itself (SQS developer guide, "Amazon SQS fair queues"). agent-intake, which the
IoT rule fills, parks what fails in agent-events' dead-letter queue: one queue and one alarm for every
agent event that could not be handled (a dead-letter queue may serve several sources, and a redrive
moves each message back to its own), and no second alarm on the idle bill.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from deploy.template.cfn import Json, att, camel, ref
from deploy.template.stage import Stage, queue_names

__all__ = ["queue_resources"]

# Discord's interaction token lives 15 minutes (discord-protocol.md); retries of a job must fit in it.
_JOBS_VISIBILITY_SECONDS: Final = 180
_DLQ_RETENTION_SECONDS: Final = 14 * 24 * 3600  # the SQS maximum: time to look at what failed
_RETENTION_SECONDS: Final = 24 * 3600  # work older than a day is stale
_MAX_RECEIVES: Final = 5
# Lambda's timeout when config.json gives none; the visibility margin beyond a consumer's timeout.
_DEFAULT_TIMEOUT_SECONDS: Final = 60
_VISIBILITY_MARGIN_SECONDS: Final = 60
_ALARM_PERIOD_SECONDS: Final = 300
# The agent-events handler answers in seconds; this is its redelivery delay after a failure.
_AGENT_EVENTS_VISIBILITY_SECONDS: Final = 60


def queue_resources(stage: Stage, handlers: Mapping[str, str]) -> Json:
    """Every queue the settings name (jobs, steps, ...) plus agent-events, each with DLQ and alarm."""
    consumer = {queue: fn for fn, queue in handlers.items()}
    res: Json = {
        "AlarmTopic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": f"{stage.prefix}-alarms"}},
        "AlarmEmailSubscription": {
            "Type": "AWS::SNS::Subscription",
            "Condition": "HasAlarmEmail",
            "Properties": {
                "TopicArn": ref("AlarmTopic"),
                "Protocol": "email",
                "Endpoint": ref("AlarmEmail"),
            },
        },
        **_queue(
            "AgentEventsQueue",
            f"{stage.prefix}-agent-events",
            visibility=_AGENT_EVENTS_VISIBILITY_SECONDS,
            max_receives=_MAX_RECEIVES,
            retention=_RETENTION_SECONDS,
        ),
    }
    intake = queue_names(stage)["AGENT_INTAKE_QUEUE"]
    for name in sorted(queue_names(stage).values()):
        fn = consumer.get(name)
        default = _DEFAULT_TIMEOUT_SECONDS
        timeout = int(stage.functions.get(fn, {}).get("lambda_timeout", default)) if fn else default
        logical = camel(name.removeprefix(stage.prefix + "-")) + "Queue"
        if name == stage.jobs_queue:
            # The runner tells the user itself on receive JOB_MAX_RECEIVES; two more receives let that
            # last answer be retried before the message is parked. 3 x 180 s fits the 15-minute token.
            receives = int(stage.env.get("JOB_MAX_RECEIVES", "3")) + 2
            res["JobsQueueAgeAlarm"] = _alarm(
                f"{name}-stuck",
                "The oldest job waited over 10 minutes: the jobs Lambda is not consuming.",
                queue=logical,
                metric="ApproximateAgeOfOldestMessage",
                threshold=600,
                periods=2,
            )
        else:
            receives = _MAX_RECEIVES
        # Longer than the consumer may run (Lambda requires it of an SQS event source), with a margin.
        floor = _JOBS_VISIBILITY_SECONDS if name == stage.jobs_queue else 0
        visibility = max(floor, timeout + _VISIBILITY_MARGIN_SECONDS)
        shared = "AgentEventsQueueDeadLetter" if name == intake else None
        res.update(
            _queue(
                logical,
                name,
                visibility=visibility,
                max_receives=receives,
                retention=_RETENTION_SECONDS,
                dead_letter=shared,
            )
        )
    return res


def _queue(
    logical: str,
    name: str,
    *,
    visibility: int,
    max_receives: int,
    retention: int,
    alarms: bool = True,
    dead_letter: str | None = None,
) -> Json:
    """A queue, its dead-letter queue, and an alarm when the dead-letter queue holds anything; or, given
    `dead_letter` (a logical id), a queue that parks its failures in that one, watched already."""
    dlq = dead_letter or f"{logical}DeadLetter"
    res: Json = {}
    if dead_letter is None:
        res[dlq] = {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": f"{name}-dlq",
                "MessageRetentionPeriod": _DLQ_RETENTION_SECONDS,
                "SqsManagedSseEnabled": True,
            },
        }
    res[logical] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "QueueName": name,
            "VisibilityTimeout": visibility,
            "MessageRetentionPeriod": retention,
            "SqsManagedSseEnabled": True,
            "RedrivePolicy": {"deadLetterTargetArn": att(dlq, "Arn"), "maxReceiveCount": max_receives},
        },
    }
    if alarms and dead_letter is None:
        res[f"{dlq}Alarm"] = _alarm(
            f"{name}-dlq-not-empty",
            f"Messages in {name}-dlq: work that failed {max_receives} times. Read them, fix, redrive.",
            queue=dlq,
            metric="ApproximateNumberOfMessagesVisible",
            threshold=0,
        )
    return res


def _alarm(name: str, description: str, *, queue: str, metric: str, threshold: int, periods: int = 1) -> Json:
    """An alarm on one SQS metric of `queue` (a logical id) that mails the alarm topic."""
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": name,
            "AlarmDescription": description,
            "Namespace": "AWS/SQS",
            "MetricName": metric,
            "Dimensions": [{"Name": "QueueName", "Value": att(queue, "QueueName")}],
            "Statistic": "Maximum",
            "Period": _ALARM_PERIOD_SECONDS,
            "EvaluationPeriods": periods,
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [ref("AlarmTopic")],
        },
    }

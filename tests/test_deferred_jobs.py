"""Deferred work end to end: type 5 now, the job on the queue, the jobs handler editing @original once."""

from __future__ import annotations

import json
import time
from typing import Any

from chalicelib.discord import CallbackType, MessageFlag
from chalicelib.jobs import JobMessage
from devstack.discord_user import Who, snowflake
from tests.helpers import Harness


def _set_up(harness: Harness) -> None:
    harness.command("setup")


def _deferred_status(harness: Harness, who: Who | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Send /status and return (interaction, its queued SQS message) without running the job."""
    payload, answer = harness.command("status", who=who)
    assert answer == {
        "type": CallbackType.DEFERRED_CHANNEL_MESSAGE,
        "data": {"flags": int(MessageFlag.EPHEMERAL)},
    }
    for _ in range(5):
        for message in harness.receive_jobs(wait=1):
            if payload["token"] in message["Body"]:
                return payload, message
            harness.deliver(message)
    raise AssertionError("job not queued")


def test_deferred_command_answers_type_5_and_edits_the_original_reply(harness: Harness) -> None:
    _set_up(harness)
    payload, message = _deferred_status(harness)
    harness.deliver(message)
    calls = harness.calls_for(payload["token"])
    assert [(c["method"], c["status"]) for c in calls] == [("PATCH", 200)]
    call = calls[0]
    assert call["path"] == f"/webhooks/{payload['application_id']}/{payload['token']}/messages/@original"
    assert call["auth"] is None  # webhook routes carry no Authorization header
    assert "gangway is working here" in json.dumps(call["json"])
    assert "flags" not in call["json"]


def test_job_message_carries_caller_and_trace_facts(harness: Harness) -> None:
    _set_up(harness)
    payload, message = _deferred_status(harness)
    msg = JobMessage.from_json(message["Body"])
    assert msg.interaction_id == payload["id"] and msg.tenant_id == payload["guild_id"]
    assert msg.kind == "status" and msg.ephemeral and not msg.update
    harness.deliver(message)


def test_redelivered_job_gives_one_follow_up(harness: Harness) -> None:
    _set_up(harness)
    payload, message = _deferred_status(harness)
    harness.deliver(message, delete=False)
    harness.deliver(message, delete=False)
    harness.deliver(message)
    assert len(harness.calls_for(payload["token"])) == 1


def test_rate_limited_edit_is_retried_after_retry_after(harness: Harness) -> None:
    _set_up(harness)
    payload, message = _deferred_status(harness)
    harness.standin.fault(method="PATCH", path_contains=payload["token"], status=429, retry_after=0.3, times=2)
    started = time.monotonic()
    harness.deliver(message)
    elapsed = time.monotonic() - started
    statuses = [c["status"] for c in harness.calls_for(payload["token"])]
    assert statuses == [429, 429, 200]
    assert elapsed >= 0.6


def test_failed_delivery_is_retried_without_running_the_job_twice(harness: Harness) -> None:
    _set_up(harness)
    payload, message = _deferred_status(harness)
    harness.standin.fault(method="PATCH", path_contains=payload["token"], status=502, times=1)
    try:
        harness.deliver(message, delete=False)
    except Exception as exc:  # the Lambda fails, so SQS redelivers
        assert "502" in str(exc)
    else:
        raise AssertionError("a 502 from Discord must fail the invocation")
    harness.deliver(message)
    calls = harness.calls_for(payload["token"])
    assert [c["status"] for c in calls] == [502, 200]
    assert calls[0]["json"] == calls[1]["json"]


def _notices_for(harness: Harness, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The channel messages that mention this interaction's user: the session's other tests post to the
    same test channel."""
    user = payload["member"]["user"]["id"]
    calls = harness.channel_calls(payload["channel_id"])
    return [c for c in calls if user in str(c["json"].get("content", ""))]


def test_expired_token_falls_back_to_a_channel_notice_without_private_content(harness: Harness) -> None:
    _set_up(harness)
    payload, message = _deferred_status(harness)
    harness.standin.fault(method="PATCH", path_contains=payload["token"], status=404, code=10015, times=1)
    harness.deliver(message)
    notices = _notices_for(harness, payload)
    assert len(notices) == 1
    notice = notices[-1]
    assert notice["auth"] == "Bot"
    assert "gangway is working" not in json.dumps(notice["json"])
    assert "expired" in notice["json"]["content"]


def test_old_job_skips_the_dead_token_and_posts_public_replies_to_the_channel(harness: Harness) -> None:
    _set_up(harness)
    _, message = _deferred_status(harness)
    raw = json.loads(message["Body"])
    raw.update(ephemeral=False, created_at=time.time() - 16 * 60, interaction_id=snowflake())
    message["Body"] = json.dumps(raw)
    harness.deliver(message)
    assert not harness.calls_for(raw["token"])
    posted = harness.channel_calls(raw["channel_id"])[-1]
    assert posted["auth"] == "Bot" and "gangway is working" in json.dumps(posted["json"])


def test_malformed_job_messages_are_dropped_without_side_effects(harness: Harness) -> None:
    before = len(harness.standin.calls())
    for body in [
        "",
        "not json",
        "[]",
        json.dumps({"kind": "status"}),
        "x" * 70000,
        json.dumps(
            {
                "interaction_id": "1",
                "application_id": "1",
                "token": "t",
                "tenant_id": "1",
                "user_id": "1",
                "kind": "../etc",
                "created_at": 1,
            }
        ),
    ]:
        message = {"MessageId": snowflake(), "ReceiptHandle": "h", "Body": body, "Attributes": {}}
        harness.deliver(message, delete=False)
    assert len(harness.standin.calls()) == before


def test_job_of_unknown_kind_tells_the_user(harness: Harness) -> None:
    _set_up(harness)
    payload, message = _deferred_status(harness)
    raw = json.loads(message["Body"])
    raw["kind"] = "vanished"
    message["Body"] = json.dumps(raw)
    harness.deliver(message)
    call = harness.calls_for(payload["token"])[0]
    assert "no longer knows how to finish" in call["json"]["content"]


def test_deferred_reply_reaches_the_stand_in_through_the_pump_within_5_s(harness: Harness) -> None:
    _set_up(harness)
    payload, _ = harness.command("status")
    started = time.monotonic()
    harness.run_jobs_for(payload["token"])
    assert harness.calls_for(payload["token"])
    assert time.monotonic() - started < 5


def test_dead_token_answered_with_a_non_json_page_still_falls_back_to_the_channel(harness: Harness) -> None:
    """A 404 whose body is a proxy's HTML page (not Discord's JSON) is still a dead token."""
    _set_up(harness)
    payload, message = _deferred_status(harness)
    harness.standin.fault(method="PATCH", path_contains=payload["token"], status=404, raw="<h1>Not Found</h1>")
    harness.deliver(message)
    notices = _notices_for(harness, payload)
    assert len(notices) == 1 and "expired" in notices[-1]["json"]["content"]

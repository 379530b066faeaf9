"""The AddipPush workflow (chalicelib/workflows/addip-push.asl.json): its steps.

- `push.send`: push a single-use token to the member's browsers and keep the task token (returns None);
  `POST /ipauth/authorize` with that token answers it. No browser reachable fails it as
  `gangway.NoDevice`, which the workflow catches to the fallback.
- `push.reply`: edit the deferred reply with the authorised address.
- `push.fallback`: close the push token, then edit the reply with the ordinary link (or with the result,
  when a browser answered just as the wait ran out).

The reply is edited only after the job that started the flow delivered its own "asking your browser"
message, so the result can never be overwritten by it (the job ledger says when).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from chalicelib.discord import ActionRow, LinkButton, Reply, message_body
from chalicelib.push.service import FLOW_ID
from chalicelib.push.store import Preference
from chalicelib.workflows import ERROR_TRANSIENT, STEPS, StepContext, StepFailed

__all__ = ["ERROR_NO_DEVICE", "fallback", "game_started", "reply", "send"]

log = logging.getLogger(__name__)

ERROR_NO_DEVICE: Final = "gangway.NoDevice"
_SNOWFLAKE: Final = re.compile(r"[0-9]{1,20}")


def _field(data: Mapping[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = data.get(name)
    if (
        not isinstance(value, str)
        or not value
        or len(value) > 512
        or (pattern and not pattern.fullmatch(value))
    ):
        raise StepFailed("gangway.Rejected", f"the flow's input lacks a valid {name}")
    return value


def _timeout(data: Mapping[str, Any]) -> int:
    value = data.get("timeout")
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 300:
        raise StepFailed("gangway.Rejected", "the flow's timeout must be 1-300 seconds")
    return value


def _ts(epoch: int, style: str = "R") -> str:
    return f"<t:{int(epoch)}:{style}>"


@STEPS.step("push.send")
def send(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Push the token and wait (None keeps `ctx.token` for the authorise API)."""
    trigger = Preference.START if data.get("trigger") == "start" else Preference.ADDIP
    delivery = ctx.lifecycle.push().send(
        ctx.tenant_id,
        _field(data, "user", _SNOWFLAKE),
        flow=_field(data, "flow", FLOW_ID),
        task_token=ctx.token,
        timeout=_timeout(data),
        now=int(time.time()),
        trigger=trigger,
    )
    if delivery.sent == 0:
        cause = json.dumps({"gone": delivery.gone, "failed": delivery.failed})
        raise StepFailed(ERROR_NO_DEVICE, cause)
    return None


@STEPS.step("push.reply")
def reply(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The browser authorised itself: show where and until when."""
    result = data.get("result")
    if not isinstance(result, dict):
        raise StepFailed("gangway.Rejected", "no result to show")
    return _edit(ctx, data, lambda: _success(ctx, data, result))


@STEPS.step("push.fallback")
def fallback(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """No browser answered (or none could be reached): the ordinary link, unless one just did."""
    result = ctx.lifecycle.push().close(ctx.tenant_id, _field(data, "flow", FLOW_ID))
    if result is not None:
        return _edit(ctx, data, lambda: _success(ctx, data, result))
    error = data.get("error")
    return _edit(ctx, data, lambda: _fallback(ctx, data, error if isinstance(error, dict) else {}))


@STEPS.step("push.game_started")
def game_started(ctx: StepContext, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """For the start-game workflow: push to the members who asked for it on /start (no Discord reply to
    edit: their browser's notification is the answer). Returns how many were pushed."""
    execution = str(data.get("execution") or ctx.execution or ctx.game)
    started = ctx.lifecycle.push().start_for_game(ctx.tenant_id, ctx.game, execution=execution)
    return {"pushed": started}


# -- messages ---------------------------------------------------------------------------------------


def _link(ctx: StepContext, data: Mapping[str, Any]) -> Any:
    user = _field(data, "user", _SNOWFLAKE)
    return ctx.lifecycle.access().member_link(ctx.tenant_id, user, int(time.time()))


def _success(ctx: StepContext, data: Mapping[str, Any], result: Mapping[str, Any]) -> Reply:
    address = str(result.get("address", ""))[:64]
    expires = int(result.get("expires_at") or 0)
    link = _link(ctx, data)
    text = (
        f"✅ Your browser let your IP address in: `{address}` until {_ts(expires, 'f')} ({_ts(expires)}).\n"
        "Playing from another device or network? Open your personal link there instead (it works until "
        f"{_ts(link.claims.expires_at)})."
    )
    return Reply(
        content=text, components=(ActionRow((LinkButton("Use another device", link.url),)),), ephemeral=True
    )


def _fallback(ctx: StepContext, data: Mapping[str, Any], error: Mapping[str, Any]) -> Reply:
    name = str(error.get("Error", ""))
    if name == "States.Timeout":
        why = f"Your browser didn't answer within {_timeout(data)} seconds"
    elif name == ERROR_NO_DEVICE and '"gone": 0' not in str(error.get("Cause", "")):
        why = (
            "Your browser's notification subscription has expired (turn automatic authorisation on again "
            "from the page after using this link)"
        )
    else:
        why = "Your browser couldn't be reached"
    link = _link(ctx, data)
    text = (
        f"{why}, so here is your **personal link** instead. Open it on the device you play on: it lets "
        "your current IP address through the game servers' firewall and replaces your previous one.\n"
        f"The link works until {_ts(link.claims.expires_at)}; don't share it.\n<{link.url}>"
    )
    return Reply(
        content=text,
        components=(ActionRow((LinkButton("Authorise my IP address", link.url),)),),
        ephemeral=True,
    )


def _edit(ctx: StepContext, data: Mapping[str, Any], build: Callable[[], Reply]) -> Mapping[str, Any]:
    """Edit the deferred reply once the starting job delivered its own message (else retry shortly).
    A flow without an interaction (a game start) has nothing to edit."""
    if not data.get("interaction_token"):
        return {"edited": False}
    msg = build()
    interaction_id = _field(data, "interaction_id", _SNOWFLAKE)
    if not _job_delivered(ctx.tenant_id, interaction_id):
        raise StepFailed(ERROR_TRANSIENT, "the job's own reply is not delivered yet")
    body = message_body(msg)
    body.pop("flags", None)  # the deferral fixed the visibility (discord-protocol.md §4)
    edited = ctx.lifecycle.replies.edit(
        _field(data, "application_id", _SNOWFLAKE), _field(data, "interaction_token"), body
    )
    if not edited:
        log.info("push flow %s: the interaction token is gone; nothing to edit", interaction_id)
    return {"edited": edited}


def _job_delivered(tenant_id: str, interaction_id: str) -> bool:
    from pynamodb.exceptions import DoesNotExist

    from chalicelib.jobs import InteractionRecord

    try:
        rec = InteractionRecord.get(tenant_id, interaction_id, consistent_read=True)
    except DoesNotExist:
        return True  # started without a job (another workflow, or a test): nothing to wait for
    return str(rec.status) == "DONE"

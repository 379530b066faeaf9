"""The jobs Lambda's core: run a deferred interaction once, then finish its Discord reply.

Per message: parse → claim (ledger) → run the handler → store the rendered reply → deliver it by
editing `@original` → mark done. A user error is shown to the user; any other failure is retried by
SQS redelivery until the last allowed receive, which tells the user instead. A reply whose interaction
token has expired (15 minutes) goes to the channel with the bot token, unless it is private.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from chalicelib.discord import Reply, Update, error_reply, message_body
from chalicelib.discord.reply_editor import ReplyEditor
from chalicelib.discord.rest import DiscordRest
from chalicelib.errors import UserError, ValidationError
from chalicelib.jobs.handlers import JobRegistry
from chalicelib.jobs.ledger import InteractionLedger
from chalicelib.jobs.messages import JobMessage
from chalicelib.tracing import Tracer

__all__ = ["JobRunner"]

log = logging.getLogger(__name__)


class JobRunner:
    """Runs job messages from the jobs queue."""

    def __init__(
        self,
        *,
        jobs: JobRegistry,
        context_for: Callable[[JobMessage], Any],
        ledger: InteractionLedger,
        rest: DiscordRest,
        tracer: Tracer,
        max_receives: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._replies = ReplyEditor(rest, clock=clock)
        self._jobs = jobs
        self._context_for = context_for
        self._ledger = ledger
        self._rest = rest
        self._tracer = tracer
        self._max_receives = max_receives
        self._clock = clock

    def run(self, body: str, receive_count: int = 1, trace_header: str | None = None) -> str:
        """Process one queue message; returns what happened (for logs and tests).

        Raises:
            Exception: a transient failure before the last allowed receive, so SQS redelivers.
        """
        try:
            msg = JobMessage.from_json(body)
        except ValidationError as exc:
            log.error("dropping malformed job message: %s", exc.message)
            return "malformed"
        handler = self._jobs.get(msg.kind)
        if handler is not None and not _fits(handler, msg.args):
            # Arguments the job does not take would raise TypeError on every receive (a retry storm).
            log.error("dropping malformed job message: its arguments do not fit job %s", msg.kind)
            return "malformed"
        with self._tracer.segment("job", trace_header or msg.trace) as span:
            span.annotate("tenant", msg.tenant_id)
            span.annotate("command", msg.command[:100])
            span.annotate("job", msg.kind)
            outcome = self._run(msg, receive_count)
            span.annotate("outcome", outcome)
            return outcome

    def _run(self, msg: JobMessage, receive_count: int) -> str:
        claim = self._ledger.claim(msg.tenant_id, msg.interaction_id, msg.kind)
        if not claim.run and claim.stored_reply is None:
            log.info("job %s for %s already handled", msg.kind, msg.interaction_id)
            return "duplicate"
        kept = True
        if claim.stored_reply is not None:
            reply_json = claim.stored_reply
        else:
            reply = self._execute(msg, receive_count)
            reply_json = json.dumps(_body(reply))
            # A secret (a one-time password, a sign-in link) is delivered once and never stored: a
            # redelivery after a failed Discord call shows a notice to ask again instead.
            stored = json.dumps(_body(_secret_notice(msg))) if self._jobs.is_secret(msg.kind) else reply_json
            kept = self._ledger.ran(msg.tenant_id, msg.interaction_id, stored)
        via = self._deliver(msg, json.loads(reply_json))
        if kept:
            self._ledger.done(msg.tenant_id, msg.interaction_id, via)
        return via

    def _execute(self, msg: JobMessage, receive_count: int) -> Reply | Update:
        handler = self._jobs.get(msg.kind)
        if handler is None:
            return error_reply(ValidationError(f"gangway no longer knows how to finish `{msg.command}`."))
        try:
            result: Reply | Update = handler(self._context_for(msg), **msg.args)
            return result
        except UserError as exc:
            return error_reply(exc)
        except Exception as exc:
            if receive_count < self._max_receives:
                log.warning("job %s failed (receive %d); will retry", msg.kind, receive_count, exc_info=True)
                self._ledger.release(msg.tenant_id, msg.interaction_id)
                raise
            log.exception("job %s failed on its last receive", msg.kind)
            return error_reply(exc)

    def _deliver(self, msg: JobMessage, body: Mapping[str, Any]) -> str:
        if self._replies.alive(msg.created_at):
            if self._replies.edit(msg.application_id, msg.token, body):
                return "edited"
            log.info("interaction token for %s is gone; falling back", msg.interaction_id)
        return self._fallback(msg, body)

    def _fallback(self, msg: JobMessage, body: Mapping[str, Any]) -> str:
        """Post to the channel with the bot token; private replies become a content-free notice."""
        if msg.channel_id is None:
            return "undeliverable"
        if msg.ephemeral:
            notice = {
                "content": f"<@{msg.user_id}> your `/{msg.command}` finished, but its private reply "
                "expired before it could be shown. Run the command again to see it.",
                "allowed_mentions": {"users": [msg.user_id]},
            }
            self._rest.create_message(msg.channel_id, notice)
            return "channel-notice"
        public = {k: v for k, v in body.items() if k != "flags"}
        self._rest.create_message(msg.channel_id, public)
        return "channel"


def _fits(handler: Callable[..., Any], args: Mapping[str, Any]) -> bool:
    """Whether `handler(ctx, **args)` matches its signature: the names, and the values of the plain
    types jobs take (`str`, `int`, `float`), which a wrong type would fail on every receive."""
    sig = inspect.signature(handler)
    try:
        sig.bind(None, **args)
    except TypeError:
        return False
    for name, value in args.items():
        check = _PLAIN.get(str(sig.parameters[name].annotation))
        if check is not None and not check(value):
            return False
    return True


_PLAIN: Final[dict[str, Callable[[Any], bool]]] = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and math.isfinite(v))
    ),
}


def _secret_notice(msg: JobMessage) -> Reply:
    return Reply(
        content=f"🔒 Your `/{msg.command}` reply held a one-time secret, and Discord did not take it the "
        "first time; gangway keeps no copy. Run the command again for a new one.",
        ephemeral=True,
    )


def _body(reply: Reply | Update) -> dict[str, Any]:
    body = message_body(reply)
    # The deferral fixed the visibility; an edit cannot change it (discord-protocol.md §4).
    body.pop("flags", None)
    return body

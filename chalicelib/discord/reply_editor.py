"""The one place that edits an interaction's original reply (`PATCH …/messages/@original`).

Three parts of gangway finish what a command began by editing its reply: the jobs Lambda (a deferred
command's answer), the workflows (progress while a game starts or stops) and web push (the address a
browser let in). They share the rules here: a token lives 15 minutes (discord-protocol.md §4), and
once it is gone Discord answers with one of two codes (§8), which is not an error to retry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from chalicelib.discord.replies import Reply, message_body
from chalicelib.discord.rest import DiscordRest
from chalicelib.errors import DiscordApiError

__all__ = ["TOKEN_GONE_CODES", "TOKEN_LIFETIME", "ReplyEditor", "reply_ref", "token_gone"]

log = logging.getLogger(__name__)

# Interaction tokens last 15 minutes (discord-protocol.md §4); stop trusting one a little earlier.
TOKEN_LIFETIME: Final = 15 * 60 - 30
# Unknown webhook / invalid webhook token: the token is gone (discord-protocol.md §8).
TOKEN_GONE_CODES: Final = frozenset({10015, 50027})
_GONE_STATUSES: Final = frozenset({401, 404})


def token_gone(exc: DiscordApiError) -> bool:
    """Whether Discord refused an edit because the interaction token no longer works."""
    return exc.code in TOKEN_GONE_CODES or exc.status in _GONE_STATUSES


def reply_ref(application_id: str, token: str, *, at: float | None = None) -> dict[str, Any]:
    """Where a workflow edits its progress: the interaction's reply, while its token lives."""
    return {"application_id": application_id, "token": token, "at": time.time() if at is None else at}


class ReplyEditor:
    """Edits original replies through the bot's REST client."""

    def __init__(self, rest: DiscordRest, *, clock: Callable[[], float] = time.time) -> None:
        self._rest = rest
        self._clock = clock

    def alive(self, issued_at: float) -> bool:
        """Whether a token issued at `issued_at` (epoch seconds) may still be used."""
        return self._clock() - issued_at < TOKEN_LIFETIME

    def edit(self, application_id: str, token: str, body: Mapping[str, Any]) -> bool:
        """Edit the reply; False when its token is gone (nothing to retry).

        Raises:
            DiscordApiError: any other refusal (the caller's retry decides).
        """
        try:
            self._rest.edit_original(application_id, token, body)
        except DiscordApiError as exc:
            if not token_gone(exc):
                raise
            return False
        return True

    def tell(self, ref: object, text: str, *, keep_components: bool = False) -> None:
        """Show `text` in the reply `ref` (a `reply_ref`) as a courtesy: never raises.

        Progress must not undo a start or a stop: a dead token, a missing reference or a Discord outage
        is logged and dropped. `keep_components` leaves the reply's buttons and selects as they are.
        """
        if not isinstance(ref, Mapping) or not ref.get("token"):
            return
        if not self.alive(float(ref.get("at", 0))):
            return
        body = message_body(Reply(content=text))
        body.pop("flags", None)  # the deferral fixed the visibility (discord-protocol.md §4)
        if keep_components:
            body.pop("components", None)
        try:
            self.edit(str(ref["application_id"]), str(ref["token"]), body)
        except Exception:
            log.warning("could not edit a workflow's reply", exc_info=True)

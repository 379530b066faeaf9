"""The interactions endpoint, independent of any web framework (lesson L3).

Pipeline: size → signature → JSON → PING → dispatch → encode. Every failure has one named outcome:
401 for anything wrong with the signature, 413 for oversized bodies, 400 for signed non-interactions,
and an ephemeral message (never a 500) for anything that goes wrong after that.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Final

from nacl.signing import VerifyKey

from chalicelib.discord.payloads import CallbackType, InteractionType
from chalicelib.discord.verify import verify_request
from chalicelib.errors import BadRequest, PayloadTooLarge, RequestError
from chalicelib.http import HttpReply

__all__ = ["MAX_BODY_BYTES", "InteractionEndpoint"]

log = logging.getLogger(__name__)

# Discord's largest interactions (a modal with five 4000-character fields plus resolved data) stay far
# below this; anything larger is not from Discord.
MAX_BODY_BYTES: Final = 64 * 1024
_PONG: Final = {"type": CallbackType.PONG}


def _error(exc: RequestError) -> HttpReply:
    return HttpReply.json(exc.STATUS, {"error": exc.message})


class InteractionEndpoint:
    """Verify and answer one interaction request; `dispatch` is built lazily on first use."""

    def __init__(
        self,
        key: VerifyKey,
        answer: Callable[[], Callable[[object], HttpReply]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._answer_factory = answer
        self._answer: Callable[[object], HttpReply] | None = None
        self._clock = clock

    def handle(self, body: bytes | str, headers: Mapping[str, str]) -> HttpReply:
        """Answer the request with `body` (raw bytes) and `headers` (any case)."""
        if isinstance(body, str):
            body = body.encode()
        try:
            if len(body) > MAX_BODY_BYTES:
                raise PayloadTooLarge(f"body larger than {MAX_BODY_BYTES} bytes")
            lower = {k.lower(): v for k, v in headers.items()}
            verify_request(
                self._key,
                signature=lower.get("x-signature-ed25519"),
                timestamp=lower.get("x-signature-timestamp"),
                body=body,
                now=self._clock(),
            )
            try:
                payload = json.loads(body)
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # nested past the stack
                raise BadRequest("body is not JSON") from exc
            if isinstance(payload, dict) and payload.get("type") == InteractionType.PING:
                return HttpReply.json(200, _PONG)
            if self._answer is None:
                self._answer = self._answer_factory()
            return self._answer(payload)
        except RequestError as exc:
            if exc.STATUS == 401:
                log.info("rejected interaction: %s", exc.message)
            return _error(exc)

"""Telling people what a workflow is doing: edits of the command's reply while its token lives."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Final

from chalicelib.discord import Reply, message_body

__all__ = ["tell"]

log = logging.getLogger(__name__)
_TOKEN_LIFETIME: Final = 15 * 60 - 30


def tell(services: Any, data: Mapping[str, Any], text: str, *, keep_components: bool = False) -> None:
    """Edit the reply of the interaction that started the workflow; never fails the workflow.

    `keep_components` leaves the reply's buttons and selects as they are (an edit without the field).

    Progress is a courtesy: a dead token (older than 15 minutes) or a Discord outage must not undo a
    start or a stop, so errors are logged and dropped.
    """
    reply = data.get("reply")
    if not isinstance(reply, Mapping) or not reply.get("token"):
        return
    if time.time() - float(reply.get("at", 0)) > _TOKEN_LIFETIME:
        return
    body = message_body(Reply(content=text))
    body.pop("flags", None)
    if keep_components:
        body.pop("components", None)
    try:
        services.rest.edit_original(str(reply["application_id"]), str(reply["token"]), body)
    except Exception:
        log.warning("could not edit the reply of %s", data.get("game"), exc_info=True)

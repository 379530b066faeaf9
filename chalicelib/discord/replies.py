"""What handlers return, and how each becomes Discord JSON (lesson L6; discord-protocol.md §3).

Handlers never call Discord: they return a `Reply`, an `Update` of the message carrying a component,
a `Deferred` job, a `Modal` or autocomplete `Choices`. The endpoint and the job runner encode them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from chalicelib.discord.components import ActionRow, Embed, TextInput, checked_custom_id, clip
from chalicelib.discord.payloads import JSON, LIMITS, CallbackType, MessageFlag
from chalicelib.errors import UserError

__all__ = [
    "Choice",
    "Choices",
    "Deferred",
    "Job",
    "Modal",
    "Reply",
    "Response",
    "Update",
    "callback_body",
    "error_reply",
    "message_body",
]

GENERIC_APOLOGY: Final = (
    "Sorry, something went wrong on our side. Nothing was changed; please try again in a minute."
)
# Never let user-supplied text ping anyone (discord-protocol.md §3.3 "Allowed Mentions").
_NO_MENTIONS: Final[JSON] = {"parse": []}


@dataclass(frozen=True)
class Reply:
    """A message: a new one (type 4), or the content of a deferred reply's edit."""

    content: str = ""
    embeds: tuple[Embed, ...] = ()
    components: tuple[ActionRow, ...] = ()
    ephemeral: bool = False


@dataclass(frozen=True)
class Update:
    """Replace the message that carries the clicked component (type 7)."""

    content: str = ""
    embeds: tuple[Embed, ...] = ()
    components: tuple[ActionRow, ...] = ()


@dataclass(frozen=True)
class Job:
    """Deferred work: a job kind the job runner knows and its JSON-safe arguments."""

    kind: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deferred:
    """Acknowledge now (type 5, or 6 for a component update) and finish `job` from the jobs Lambda.

    Visibility is fixed here: Discord keeps the deferral's ephemeral flag (discord-protocol.md §4).
    """

    job: Job
    ephemeral: bool = True
    update: bool = False


@dataclass(frozen=True)
class Modal:
    """A form; only valid as the first response to a command or component."""

    custom_id: str
    title: str
    fields: tuple[TextInput, ...]


@dataclass(frozen=True)
class Choice:
    """One autocomplete suggestion."""

    name: str
    value: str | int | float


@dataclass(frozen=True)
class Choices:
    """Autocomplete result; Discord shows at most 25."""

    choices: tuple[Choice, ...] = ()


Response: TypeAlias = Reply | Update | Deferred | Modal | Choices


def message_body(msg: Reply | Update) -> JSON:
    """The message object for a type 4/7 response, a webhook edit or a follow-up."""
    body: JSON = {
        "content": clip(msg.content, LIMITS.content),
        "embeds": [e.to_dict() for e in msg.embeds[: LIMITS.embeds]],
        "components": [r.to_dict() for r in msg.components[: LIMITS.action_rows]],
        "allowed_mentions": _NO_MENTIONS,
    }
    if isinstance(msg, Reply) and msg.ephemeral:
        body["flags"] = int(MessageFlag.EPHEMERAL)
    return body


def callback_body(resp: Response) -> JSON:
    """The inline HTTP response body for `resp` (discord-protocol.md §3.2)."""
    if isinstance(resp, Reply):
        return {"type": CallbackType.CHANNEL_MESSAGE, "data": message_body(resp)}
    if isinstance(resp, Update):
        return {"type": CallbackType.UPDATE_MESSAGE, "data": message_body(resp)}
    if isinstance(resp, Deferred):
        if resp.update:
            return {"type": CallbackType.DEFERRED_UPDATE_MESSAGE}
        flags = int(MessageFlag.EPHEMERAL) if resp.ephemeral else 0
        return {"type": CallbackType.DEFERRED_CHANNEL_MESSAGE, "data": {"flags": flags}}
    if isinstance(resp, Modal):
        return {
            "type": CallbackType.MODAL,
            "data": {
                "custom_id": checked_custom_id(resp.custom_id),
                "title": clip(resp.title, LIMITS.modal_title),
                "components": [f.to_dict() for f in resp.fields[: LIMITS.modal_components]],
            },
        }
    return {
        "type": CallbackType.AUTOCOMPLETE_RESULT,
        "data": {
            "choices": [
                {"name": clip(c.name, LIMITS.choice_name), "value": c.value}
                for c in resp.choices[: LIMITS.choices]
            ]
        },
    }


def error_reply(exc: BaseException) -> Reply:
    """The one place an error becomes words for a user (errors.py draws the tree)."""
    if isinstance(exc, UserError):
        return Reply(content=f"⚠️ {exc.message}", ephemeral=True)
    return Reply(content=GENERIC_APOLOGY, ephemeral=True)

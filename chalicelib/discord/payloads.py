"""Discord wire numbers and shapes (discord-protocol.md); no behaviour lives here.

A bare 4 or 64 never appears in handler code: these enums name every protocol number we use.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag
from typing import Any, Final, TypeAlias

__all__ = [
    "JSON",
    "LIMITS",
    "ButtonStyle",
    "CallbackType",
    "CommandType",
    "ComponentType",
    "InteractionType",
    "MessageFlag",
    "OptionType",
    "Permission",
    "TextInputStyle",
]

JSON: TypeAlias = dict[str, Any]


class InteractionType(IntEnum):
    """Interaction types (discord-protocol.md §2)."""

    PING = 1
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class CallbackType(IntEnum):
    """Interaction callback (response) types (discord-protocol.md §3.2)."""

    PONG = 1
    CHANNEL_MESSAGE = 4
    DEFERRED_CHANNEL_MESSAGE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    AUTOCOMPLETE_RESULT = 8
    MODAL = 9


class CommandType(IntEnum):
    """Application command types (discord-protocol.md §5)."""

    CHAT_INPUT = 1
    USER = 2
    MESSAGE = 3


class OptionType(IntEnum):
    """Application command option types (discord-protocol.md §5)."""

    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


class ComponentType(IntEnum):
    """Component types (discord-protocol.md §6)."""

    ACTION_ROW = 1
    BUTTON = 2
    STRING_SELECT = 3
    TEXT_INPUT = 4
    USER_SELECT = 5
    ROLE_SELECT = 6
    MENTIONABLE_SELECT = 7
    CHANNEL_SELECT = 8
    TEXT_DISPLAY = 10
    LABEL = 18


class ButtonStyle(IntEnum):
    """Button styles (discord-protocol.md §6); LINK needs a url and sends no interaction."""

    PRIMARY = 1
    SECONDARY = 2
    SUCCESS = 3
    DANGER = 4
    LINK = 5


class TextInputStyle(IntEnum):
    """Text input styles (discord-protocol.md §6)."""

    SHORT = 1
    PARAGRAPH = 2


class MessageFlag(IntFlag):
    """Message flags we send (discord-protocol.md §3.3)."""

    SUPPRESS_EMBEDS = 1 << 2
    EPHEMERAL = 1 << 6
    SUPPRESS_NOTIFICATIONS = 1 << 12


class Permission(IntFlag):
    """Permission bits we check or register (discord-protocol.md §7); sent as decimal strings."""

    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    VIEW_AUDIT_LOG = 1 << 7
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    MENTION_EVERYONE = 1 << 17
    MANAGE_NICKNAMES = 1 << 27
    MANAGE_ROLES = 1 << 28
    MANAGE_WEBHOOKS = 1 << 29
    MANAGE_GUILD_EXPRESSIONS = 1 << 30
    MANAGE_EVENTS = 1 << 33
    MANAGE_THREADS = 1 << 34
    MODERATE_MEMBERS = 1 << 40


class _Limits:
    """Discord's documented size limits (discord-protocol.md §3.3, §5, §6)."""

    content: Final = 2000
    embeds: Final = 10
    embed_title: Final = 256
    embed_description: Final = 4096
    embed_fields: Final = 25
    embed_field_name: Final = 256
    embed_field_value: Final = 1024
    embed_total: Final = 6000
    action_rows: Final = 5
    buttons_per_row: Final = 5
    select_options: Final = 25
    custom_id: Final = 100
    button_label: Final = 80
    button_url: Final = 512
    select_placeholder: Final = 150
    modal_title: Final = 45
    modal_components: Final = 5
    text_input_value: Final = 4000
    command_name: Final = 32
    command_description: Final = 100
    options: Final = 25
    choices: Final = 25
    choice_name: Final = 100
    choice_value: Final = 100
    command_total_chars: Final = 8000
    commands: Final = 100
    string_option_length: Final = 6000


LIMITS: Final = _Limits()

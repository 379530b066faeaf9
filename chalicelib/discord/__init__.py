"""The Discord HTTP-interactions protocol: verification, payloads, the command model, the endpoint,
the REST client and registration. It knows nothing about games or tenants."""

from __future__ import annotations

from chalicelib.discord.commands import Command, CommandRegistry, Level, Route
from chalicelib.discord.components import (
    ActionRow,
    Button,
    Embed,
    EmbedField,
    LinkButton,
    RoleSelect,
    SelectOption,
    StringSelect,
    TextInput,
)
from chalicelib.discord.endpoint import InteractionEndpoint
from chalicelib.discord.interaction import Interaction, parse_interaction
from chalicelib.discord.options import Autocomplete, Length, OneOf, Range
from chalicelib.discord.payloads import ButtonStyle, CallbackType, InteractionType, MessageFlag, Permission
from chalicelib.discord.replies import (
    Choice,
    Choices,
    Deferred,
    Job,
    Modal,
    Reply,
    Response,
    Update,
    callback_body,
    error_reply,
    message_body,
)
from chalicelib.discord.verify import load_verify_key, verify_request

__all__ = [
    "ActionRow",
    "Autocomplete",
    "Button",
    "ButtonStyle",
    "CallbackType",
    "Choice",
    "Choices",
    "Command",
    "CommandRegistry",
    "Deferred",
    "Embed",
    "EmbedField",
    "Interaction",
    "InteractionEndpoint",
    "InteractionType",
    "Job",
    "Length",
    "Level",
    "LinkButton",
    "MessageFlag",
    "Modal",
    "OneOf",
    "Permission",
    "Range",
    "Reply",
    "Response",
    "RoleSelect",
    "Route",
    "SelectOption",
    "StringSelect",
    "TextInput",
    "Update",
    "callback_body",
    "error_reply",
    "load_verify_key",
    "message_body",
    "parse_interaction",
    "verify_request",
]

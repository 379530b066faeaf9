"""Message components and embeds as frozen values that serialise to Discord's JSON (§3.3, §6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from chalicelib.discord.payloads import JSON, LIMITS, ButtonStyle, ComponentType, TextInputStyle

__all__ = [
    "ActionRow",
    "Button",
    "Component",
    "Embed",
    "EmbedField",
    "LinkButton",
    "RoleSelect",
    "SelectOption",
    "StringSelect",
    "TextInput",
    "checked_custom_id",
    "clip",
]


def clip(text: str, limit: int) -> str:
    """Cut `text` to Discord's limit, marking the cut, so a long value never fails a whole reply."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def checked_custom_id(value: str) -> str:
    """`value`, or ValueError: a custom_id carries state, so cutting it would break the next step."""
    if not 1 <= len(value) <= LIMITS.custom_id:
        raise ValueError(f"custom_id must be 1-{LIMITS.custom_id} characters: {value!r}")
    return value


@dataclass(frozen=True)
class Button:
    """A button that sends a component interaction with `custom_id`."""

    label: str
    custom_id: str
    style: ButtonStyle = ButtonStyle.SECONDARY
    disabled: bool = False

    def to_dict(self) -> JSON:
        return {
            "type": ComponentType.BUTTON,
            "style": self.style,
            "label": clip(self.label, LIMITS.button_label),
            "custom_id": checked_custom_id(self.custom_id),
            "disabled": self.disabled,
        }


@dataclass(frozen=True)
class LinkButton:
    """A button that opens a URL and sends no interaction."""

    label: str
    url: str

    def to_dict(self) -> JSON:
        # Discord refuses a label over 80 or a url over 512 characters (50035); a cut URL is a broken one.
        if not 1 <= len(self.url) <= LIMITS.button_url:
            raise ValueError(f"a link button's url must be 1-{LIMITS.button_url} characters")
        return {
            "type": ComponentType.BUTTON,
            "style": ButtonStyle.LINK,
            "label": clip(self.label, LIMITS.button_label),
            "url": self.url,
        }


@dataclass(frozen=True)
class SelectOption:
    """One option of a string select."""

    label: str
    value: str
    description: str = ""
    default: bool = False

    def to_dict(self) -> JSON:
        out: JSON = {"label": clip(self.label, 100), "value": self.value[:100], "default": self.default}
        if self.description:
            out["description"] = clip(self.description, 100)
        return out


@dataclass(frozen=True)
class StringSelect:
    """A select of up to 25 fixed options."""

    custom_id: str
    options: tuple[SelectOption, ...]
    placeholder: str = ""
    min_values: int = 1
    max_values: int = 1

    def __post_init__(self) -> None:
        # Discord refuses a select without options (50035, BASE_TYPE_MIN_LENGTH): fail here, not there.
        if not self.options:
            raise ValueError("a string select needs at least one option")

    def to_dict(self) -> JSON:
        return {
            "type": ComponentType.STRING_SELECT,
            "custom_id": checked_custom_id(self.custom_id),
            "options": [o.to_dict() for o in self.options[: LIMITS.select_options]],
            "placeholder": clip(self.placeholder, LIMITS.select_placeholder),
            "min_values": self.min_values,
            "max_values": min(self.max_values, len(self.options[: LIMITS.select_options]) or 1),
        }


@dataclass(frozen=True)
class RoleSelect:
    """A select that Discord fills with the guild's roles."""

    custom_id: str
    placeholder: str = ""
    default_role_ids: tuple[str, ...] = ()
    min_values: int = 1
    max_values: int = 5

    def to_dict(self) -> JSON:
        return {
            "type": ComponentType.ROLE_SELECT,
            "custom_id": checked_custom_id(self.custom_id),
            "placeholder": clip(self.placeholder, LIMITS.select_placeholder),
            "min_values": self.min_values,
            "max_values": self.max_values,
            "default_values": [{"id": r, "type": "role"} for r in self.default_role_ids],
        }


@dataclass(frozen=True)
class TextInput:
    """A text field of a modal, wrapped in a Label as Discord now expects."""

    custom_id: str
    label: str
    style: TextInputStyle = TextInputStyle.SHORT
    value: str = ""
    placeholder: str = ""
    required: bool = True
    min_length: int = 0
    max_length: int = LIMITS.text_input_value

    def to_dict(self) -> JSON:
        field: JSON = {
            "type": ComponentType.TEXT_INPUT,
            "custom_id": checked_custom_id(self.custom_id),
            "style": self.style,
            "required": self.required,
            "min_length": self.min_length,
            "max_length": self.max_length,
        }
        if self.value:
            field["value"] = clip(self.value, self.max_length)
        if self.placeholder:
            field["placeholder"] = clip(self.placeholder, 100)
        return {"type": ComponentType.LABEL, "label": clip(self.label, 45), "component": field}


Component: TypeAlias = Button | LinkButton | StringSelect | RoleSelect


@dataclass(frozen=True)
class ActionRow:
    """Up to five buttons, or exactly one select."""

    components: tuple[Component, ...]

    def __post_init__(self) -> None:
        selects = [c for c in self.components if isinstance(c, StringSelect | RoleSelect)]
        if (
            not self.components
            or len(self.components) > LIMITS.buttons_per_row
            or (selects and len(self.components) > 1)
        ):
            raise ValueError("an action row holds 1-5 buttons or exactly one select")

    def to_dict(self) -> JSON:
        return {"type": ComponentType.ACTION_ROW, "components": [c.to_dict() for c in self.components]}


@dataclass(frozen=True)
class EmbedField:
    """A name/value pair inside an embed."""

    name: str
    value: str
    inline: bool = False


@dataclass(frozen=True)
class Embed:
    """A rich block of text; limits are applied when serialised."""

    title: str = ""
    description: str = ""
    fields: tuple[EmbedField, ...] = ()
    colour: int | None = None
    footer: str = ""
    url: str = ""

    def to_dict(self) -> JSON:
        out: JSON = {}
        if self.title:
            out["title"] = clip(self.title, LIMITS.embed_title)
        if self.description:
            out["description"] = clip(self.description, LIMITS.embed_description)
        if self.fields:
            out["fields"] = [
                {
                    "name": clip(f.name, LIMITS.embed_field_name),
                    "value": clip(f.value, LIMITS.embed_field_value),
                    "inline": f.inline,
                }
                for f in self.fields[: LIMITS.embed_fields]
            ]
        if self.colour is not None:
            out["color"] = self.colour
        if self.footer:
            out["footer"] = {"text": clip(self.footer, 2048)}
        if self.url:
            out["url"] = self.url
        return out

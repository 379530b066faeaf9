"""DynamoDB's typed JSON (`{"S": "x"}`, `{"N": "12"}`, …) read strictly into Python values.

The rules are PynamoDB's, so a row read here equals the row its models read: an attribute that is
missing, empty or `{"NULL": true}` takes the model's default; one of another type than the model
declares is an error (PynamoDB's AttributeDeserializationError), never a guess; attributes the model
does not declare are ignored. Numbers decode as JSON numbers (PynamoDB's NumberAttribute).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final, TypeVar, overload

from chalicelib.errors import InfraError

__all__ = [
    "AttributeValue",
    "Item",
    "MalformedItem",
    "boolean",
    "number",
    "required_number",
    "required_text",
    "text",
    "text_list",
    "text_set",
    "version",
]

# One attribute as DynamoDB sends it: exactly one type key. JSON decoding gives these shapes.
AttributeValue = Mapping[str, object]
Item = Mapping[str, AttributeValue]

_NULL: Final = "NULL"
_T = TypeVar("_T")


class MalformedItem(InfraError):
    """A stored row whose attribute has another type than the model declares (a bug or a foreign
    writer); the user sees the generic apology, the log names the attribute."""


def _raw(item: Item, name: str, kind: str) -> object | None:
    """The attribute's payload of type `kind`, or None when it is absent, empty or NULL."""
    value = item.get(name)
    if not value or _NULL in value:
        return None
    if not isinstance(value, Mapping) or kind not in value:
        raise MalformedItem(f"attribute {name!r} is not of type {kind}: {str(value)[:80]}")
    return value[kind]


def _typed(name: str, raw: object, kind: type[_T]) -> _T:
    if not isinstance(raw, kind) or isinstance(raw, bool) is not (kind is bool):
        raise MalformedItem(f"attribute {name!r} holds {type(raw).__name__}, not {kind.__name__}")
    return raw


@overload
def text(item: Item, name: str, default: str) -> str: ...
@overload
def text(item: Item, name: str, default: None = None) -> str | None: ...
def text(item: Item, name: str, default: str | None = None) -> str | None:
    """A string attribute (`S`)."""
    raw = _raw(item, name, "S")
    return default if raw is None else _typed(name, raw, str)


@overload
def number(item: Item, name: str, default: float) -> float: ...
@overload
def number(item: Item, name: str, default: None = None) -> float | None: ...
def number(item: Item, name: str, default: float | None = None) -> float | None:
    """A number attribute (`N`, a decimal string), as JSON decodes it: int or float."""
    raw = _raw(item, name, "N")
    if raw is None:
        return default
    try:
        value = json.loads(_typed(name, raw, str))
    except ValueError as exc:
        raise MalformedItem(f"attribute {name!r} is not a number") from exc
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedItem(f"attribute {name!r} is not a number")
    return value


def version(item: Item, name: str) -> int | None:
    """A version counter (PynamoDB's VersionAttribute: a number cast to int)."""
    value = number(item, name)
    return None if value is None else int(value)


@overload
def boolean(item: Item, name: str, default: bool) -> bool: ...
@overload
def boolean(item: Item, name: str, default: None = None) -> bool | None: ...
def boolean(item: Item, name: str, default: bool | None = None) -> bool | None:
    """A boolean attribute (`BOOL`)."""
    raw = _raw(item, name, "BOOL")
    return default if raw is None else _typed(name, raw, bool)


def text_set(item: Item, name: str) -> set[str] | None:
    """A string set (`SS`); DynamoDB has no empty sets, so absence means none."""
    raw = _raw(item, name, "SS")
    if raw is None:
        return None
    return {_typed(name, v, str) for v in _typed(name, raw, list)}


def text_list(item: Item, name: str) -> list[str | None] | None:
    """A list of strings (`L` of `S`); a NULL element reads as None, as in PynamoDB."""
    raw = _raw(item, name, "L")
    if raw is None:
        return None
    out: list[str | None] = []
    for index, element in enumerate(_typed(name, raw, list)):
        if not isinstance(element, Mapping):
            raise MalformedItem(f"attribute {name!r}[{index}] is not an attribute value")
        if _NULL in element:
            out.append(None)
        elif "S" in element:
            out.append(_typed(f"{name}[{index}]", element["S"], str))
        else:
            raise MalformedItem(f"attribute {name!r}[{index}] is not of type S")
    return out


def required_text(item: Item, name: str) -> str:
    """A string attribute the model declares without default or null: its absence is an error."""
    found = text(item, name)
    if found is None:
        raise MalformedItem(f"attribute {name!r} is missing")
    return found


def required_number(item: Item, name: str) -> float:
    """A number attribute the model declares without default or null."""
    found = number(item, name)
    if found is None:
        raise MalformedItem(f"attribute {name!r} is missing")
    return found

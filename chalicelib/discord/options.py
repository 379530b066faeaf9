"""From a handler's typed signature to Discord's option schema (lesson L5; discord-protocol.md §5).

`Annotated` markers carry what a plain type cannot: lengths, ranges, fixed choices, autocomplete.
A `T | None = None` parameter is optional; the rest are required and registered first.
"""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Union, get_args, get_origin, get_type_hints

from chalicelib.discord.payloads import JSON, LIMITS, OptionType

__all__ = ["Autocomplete", "Length", "OneOf", "OptionSpec", "Range", "options_from_signature"]

# Discord's rule for CHAT_INPUT command and option names, lowercase form (§5).
NAME_RE: Final = re.compile(r"^[-_\w]{1,32}$")

_OPTION_TYPES: Final[Mapping[type, OptionType]] = {
    str: OptionType.STRING,
    int: OptionType.INTEGER,
    bool: OptionType.BOOLEAN,
    float: OptionType.NUMBER,
}


@dataclass(frozen=True)
class Length:
    """Minimum and maximum length of a string option."""

    min: int = 0
    max: int = LIMITS.string_option_length


@dataclass(frozen=True)
class Range:
    """Minimum and maximum value of a number option."""

    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class OneOf:
    """The only values an option accepts, as (shown name, value) pairs."""

    pairs: tuple[tuple[str, str | int | float], ...]


@dataclass(frozen=True)
class Autocomplete:
    """Discord asks the named provider for suggestions while the user types."""

    provider: str


@dataclass(frozen=True)
class OptionSpec:
    """One option: its schema for Discord and the Python parameter it fills."""

    name: str
    param: str
    type: OptionType
    description: str
    required: bool
    length: Length | None = None
    range: Range | None = None
    choices: OneOf | None = None
    autocomplete: Autocomplete | None = None

    def to_dict(self) -> JSON:
        out: JSON = {
            "type": self.type,
            "name": self.name,
            "description": self.description,
            "required": self.required,
        }
        if self.length is not None:
            out["min_length"] = self.length.min
            out["max_length"] = self.length.max
        if self.range is not None:
            if self.range.min is not None:
                out["min_value"] = self.range.min
            if self.range.max is not None:
                out["max_value"] = self.range.max
        if self.choices is not None:
            out["choices"] = [{"name": n, "value": v} for n, v in self.choices.pairs]
        if self.autocomplete is not None:
            out["autocomplete"] = True
        return out

    def check(self, value: object) -> str | None:
        """Why `value` is not acceptable for this option, or None when it is."""
        expected = {v: k for k, v in _OPTION_TYPES.items()}[self.type]
        if type(value) is not expected and not (expected is float and type(value) is int):
            return f"`{self.name}` must be a {expected.__name__}"
        if (
            self.length is not None
            and isinstance(value, str)
            and not self.length.min <= len(value) <= self.length.max
        ):
            return f"`{self.name}` must be {self.length.min}-{self.length.max} characters long"
        if self.range is not None and isinstance(value, int | float):
            lo, hi = self.range.min, self.range.max
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                return f"`{self.name}` must be between {lo} and {hi}"
        if self.choices is not None and value not in [v for _, v in self.choices.pairs]:
            return f"`{self.name}` must be one of: " + ", ".join(n for n, _ in self.choices.pairs)
        return None


def _arg_docs(doc: str) -> dict[str, str]:
    """Descriptions of parameters from the Google-style `Args:` section of a docstring."""
    out: dict[str, str] = {}
    in_args = False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped == "Args:":
            in_args = True
            continue
        if in_args:
            match = re.match(r"(\w+):\s*(.+)", stripped)
            if match:
                out[match.group(1)] = match.group(2)
            elif stripped and not line.startswith(" " * 8):
                in_args = False
    return out


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(get_args(hint)) == 2:
            return args[0], True
        raise TypeError(f"unsupported union option type {hint!r}")
    return hint, False


def options_from_signature(fn: Callable[..., Any], *, skip: int = 1) -> tuple[OptionSpec, ...]:
    """Build the option specs of `fn`, skipping its first `skip` parameters (the context).

    Raises:
        TypeError: a parameter has an unsupported type or no description in the docstring.
    """
    hints = get_type_hints(fn, include_extras=True)
    docs = _arg_docs(inspect.getdoc(fn) or "")
    specs: list[OptionSpec] = []
    for param in list(inspect.signature(fn).parameters.values())[skip:]:
        hint = hints.get(param.name)
        markers: tuple[Any, ...] = ()
        base, optional = _unwrap_optional(hint)
        if get_origin(base) is Annotated:
            base, *extra = get_args(base)
            markers = tuple(extra)
            base, inner_optional = _unwrap_optional(base)
            optional = optional or inner_optional
        if base not in _OPTION_TYPES:
            raise TypeError(f"{fn.__name__}.{param.name}: unsupported option type {base!r}")
        if optional != (param.default is None):
            raise TypeError(f"{fn.__name__}.{param.name}: optional options must be `T | None = None`")
        name = param.name.lower()
        if name not in docs:
            raise TypeError(f"{fn.__name__}.{param.name}: describe it in the docstring's Args section")

        def marker(kind: type[Any], _m: tuple[Any, ...] = markers) -> Any:
            return next((m for m in _m if isinstance(m, kind)), None)

        specs.append(
            OptionSpec(
                name=name,
                param=param.name,
                type=_OPTION_TYPES[base],
                description=docs[name],
                required=not optional,
                length=marker(Length),
                range=marker(Range),
                choices=marker(OneOf),
                autocomplete=marker(Autocomplete),
            )
        )
    # Discord requires required options before optional ones (§5).
    return tuple(sorted(specs, key=lambda s: not s.required))

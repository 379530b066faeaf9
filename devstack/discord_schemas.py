"""Validate request bodies against Discord's published schemas, and refuse like Discord does.

A stand-in that accepts what Discord refuses hides a bug until a user's evening (DESIGN §2). The
schemas come from `discord_schemas.json`, vendored from Discord's OpenAPI file by
`discord_schemas_extract.py`; they are checked with `jsonschema` (Draft 2020-12) through a
`referencing` registry that holds the vendored document, so every `#/components/schemas/…` reference
resolves exactly as it does in the full file.

A refusal has Discord's shape: `{"code": 50035, "message": "Invalid Form Body", "errors": {...}}`,
where `errors` nests by field name and list index down to `{"_errors": [{"code", "message"}]}`.
Where the schema is a union (`anyOf`/`oneOf`: callback types, component types, option types) Discord
picks the branch by the payload's `type` and reports that branch's problems; `_branch` does the same
by choosing the branch whose discriminator matched and whose errors go deepest.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from chalicelib.discord.rest import describe_errors

__all__ = [
    "CALLBACK_ROUTE",
    "INVALID_FORM_BODY",
    "DiscordSchemas",
    "InvalidFormBody",
    "check_callback",
    "refusal",
    "schemas",
]

INVALID_FORM_BODY: Final = 50035
CALLBACK_ROUTE: Final = "POST /interactions/{interaction_id}/{interaction_token}/callback"
_VENDORED: Final = Path(__file__).with_name("discord_schemas.json")
_BASE: Final = "urn:gangway:discord-schemas"
_DISCRIMINATOR: Final = "type"


class InvalidFormBody(Exception):
    """A body Discord would refuse with 50035; `errors` is Discord's nested layout."""

    def __init__(self, route: str, errors: dict[str, Any]) -> None:
        super().__init__(f"Discord would refuse {route}: Invalid Form Body ({describe_errors(errors)})")
        self.route = route
        self.errors = errors


def refusal(errors: dict[str, Any]) -> dict[str, Any]:
    """Discord's 400 body for an invalid form body."""
    return {"code": INVALID_FORM_BODY, "message": "Invalid Form Body", "errors": errors}


class DiscordSchemas:
    """The vendored route schemas, matched against concrete request paths."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._document = document
        resource = Resource.from_contents(dict(document), default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(_BASE, resource)
        self._routes: list[tuple[re.Pattern[str], str]] = []
        # Literal segments (@original) must win over placeholders ({message_id}) that also match them.
        for key in sorted(document["routes"], key=lambda k: (k.count("{"), k)):
            method, template = key.split(" ", 1)
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            self._routes.append((re.compile(f"^{re.escape(method)} {pattern}$"), key))
        self._validators: dict[str, Draft202012Validator] = {}

    @classmethod
    def vendored(cls) -> DiscordSchemas:
        return cls(json.loads(_VENDORED.read_text(encoding="utf-8")))

    def route(self, method: str, path: str) -> str | None:
        """The schema key ("METHOD /openapi/{path}") for a concrete request, or None if not vendored."""
        probe = f"{method.upper()} {path.split('?', 1)[0]}"
        for pattern, key in self._routes:
            if pattern.match(probe):
                return key
        return None

    def errors(self, route: str, body: Any, *, present: bool = True) -> dict[str, Any] | None:
        """Discord's nested `errors` for `body` on `route`, or None when Discord would accept it."""
        spec = self._document["routes"][route]
        if spec is None:
            return None  # Discord reads no body on this route (member roles) and ignores one
        if not present:
            if not spec["required"]:
                return None
            return {"_errors": [_err("BASE_TYPE_REQUIRED", "This field is required")]}
        layout: dict[str, Any] = {}
        for error in _leaves(self._validator(route).iter_errors(body)):
            _place(layout, error)
        return layout or None

    def check(self, route: str, body: Any) -> None:
        """Raise InvalidFormBody if Discord would refuse `body` on `route`."""
        errors = self.errors(route, body)
        if errors:
            raise InvalidFormBody(route, errors)

    def _validator(self, route: str) -> Draft202012Validator:
        if route not in self._validators:
            pointer = "/routes/" + route.replace("~", "~0").replace("/", "~1") + "/schema"
            ref = {"$ref": f"{_BASE}#{quote(pointer, safe='/~@')}"}
            self._validators[route] = Draft202012Validator(ref, registry=self._registry)
        return self._validators[route]


@cache
def schemas() -> DiscordSchemas:
    """The vendored schemas, loaded once per process."""
    return DiscordSchemas.vendored()


def check_callback(body: Any) -> None:
    """Raise InvalidFormBody if Discord would refuse `body` as a synchronous interaction response."""
    schemas().check(CALLBACK_ROUTE, body)


# -- from jsonschema's errors to Discord's layout ------------------------------------------------------


def _leaves(errors: Iterable[ValidationError]) -> Iterable[ValidationError]:
    for error in errors:
        if error.validator in ("anyOf", "oneOf") and error.context:
            yield from _leaves(_branch(error))
        elif error.validator == "allOf" and error.context:
            yield from _leaves(error.context)
        else:
            yield error


def _branch(error: ValidationError) -> list[ValidationError]:
    """The errors of the union branch Discord would have chosen for this payload."""
    base = len(error.absolute_path)
    by_branch: dict[Any, list[ValidationError]] = {}
    for sub in error.context or []:
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)

    def score(subs: list[ValidationError]) -> tuple[bool, int, int]:
        wrong_kind = any(
            (len(s.absolute_path) == base and s.validator == "type")
            or (len(s.absolute_path) == base + 1 and s.absolute_path[-1] == _DISCRIMINATOR)
            for s in subs
        )
        return wrong_kind, -max(len(s.absolute_path) for s in subs), len(subs)

    best = min(by_branch.values(), key=score)
    if score(best)[0]:
        # No branch fits the payload's kind: Discord names the kinds it accepts, once.
        kinds = sorted(
            {
                v
                for s in error.context or []
                if s.validator == "enum"
                and s.absolute_path
                and s.absolute_path[-1] == _DISCRIMINATOR
                and len(s.absolute_path) == base + 1
                for v in s.validator_value
            }
        )
        if kinds:
            at = deque([*error.absolute_path, _DISCRIMINATOR])
            instance = error.instance.get(_DISCRIMINATOR) if isinstance(error.instance, dict) else None
            return [
                ValidationError(
                    "not a known type", validator="enum", validator_value=kinds, instance=instance, path=at
                )
            ]
    return best


def _err(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _place(layout: dict[str, Any], error: ValidationError) -> None:
    path = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        missing = set(error.validator_value) - set(error.instance)
        for name in sorted(missing):
            _add(layout, [*path, name], _err("BASE_TYPE_REQUIRED", "This field is required"))
        return
    _add(layout, path, _translate(error))


def _add(layout: dict[str, Any], path: list[str], item: dict[str, str]) -> None:
    node = layout
    for key in path:
        node = node.setdefault(key, {})
    listed = node.setdefault("_errors", [])
    if item not in listed:
        listed.append(item)


_BOUNDS: Final = {
    "maxLength": ("BASE_TYPE_MAX_LENGTH", "Must be {} or fewer in length."),
    "maxItems": ("BASE_TYPE_MAX_LENGTH", "Must be {} or fewer in length."),
    "maxProperties": ("BASE_TYPE_MAX_LENGTH", "Must be {} or fewer in length."),
    "minLength": ("BASE_TYPE_MIN_LENGTH", "Must be {} or more in length."),
    "minItems": ("BASE_TYPE_MIN_LENGTH", "Must be {} or more in length."),
    "minProperties": ("BASE_TYPE_MIN_LENGTH", "Must be {} or more in length."),
    "maximum": ("NUMBER_TYPE_MAX", "int value should be less than or equal to {}."),
    "minimum": ("NUMBER_TYPE_MIN", "int value should be greater than or equal to {}."),
    "pattern": ("STRING_TYPE_REGEX", "String value did not match validation regex ({})."),
}
_TYPES: Final = (
    ("object", "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType"),
    ("array", "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"),
    ("integer", "NUMBER_TYPE_COERCE", "Value {} is not int."),
    ("number", "NUMBER_TYPE_COERCE", "Value {} is not int."),
    ("boolean", "BOOLEAN_TYPE_CONVERT", "Only booleans may be used in a BooleanType"),
    ("string", "STRING_TYPE_CONVERT", "Could not interpret {} as string."),
)


def _translate(error: ValidationError) -> dict[str, str]:
    """Discord's error code and wording for one schema failure (as close as its docs and answers show)."""
    kind, value, instance = str(error.validator), error.validator_value, error.instance
    if kind in _BOUNDS:
        code, text = _BOUNDS[kind]
        return _err(code, text.format(value))
    if kind in ("enum", "const"):
        shown = ", ".join(json.dumps(c) for c in (value if kind == "enum" else [value]))
        return _err("BASE_TYPE_CHOICES", f"Value must be one of {{{shown}}}.")
    if kind == "type":
        kinds = value if isinstance(value, list) else [value]
        for name, code, text in _TYPES:
            if name in kinds:
                return _err(code, text.format(json.dumps(instance)))
    return _err(f"BASE_TYPE_{kind.upper()}", error.message[:200])

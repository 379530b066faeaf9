"""The command model: typed signatures become option schemas, Discord's limits are enforced at
declaration, and the registration payload is pinned by a golden file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pytest

from chalicelib.commands import registry
from chalicelib.discord import Autocomplete, CommandRegistry, Length, Level, OneOf, Permission, Range, Reply
from chalicelib.discord.payloads import OptionType

GOLDEN = Path(__file__).parent / "golden" / "commands.json"


def test_registration_payload_matches_golden_file() -> None:
    """Regenerate with `gangway register --print > tests/golden/commands.json` after a deliberate change."""
    assert registry.payload_json() == GOLDEN.read_text()


def test_typed_signature_generates_option_schema() -> None:
    reg = CommandRegistry()

    @reg.command(level=Level.MAIN)
    def extend(
        ctx: object,
        game: Annotated[str, Length(2, 32)],
        size: Annotated[int, Range(1, 48)],
        mode: Annotated[str, OneOf((("Fast", "fast"), ("Safe", "safe")))] | None = None,
        force: bool | None = None,
    ) -> Reply:
        """Grow a game's disk.

        Args:
            game: The game
            size: New size in GB
            mode: How to grow it
            force: Skip the safety check
        """
        return Reply()

    (cmd,) = reg.to_payload()
    assert cmd["name"] == "extend" and cmd["description"] == "Grow a game's disk."
    assert cmd["default_member_permissions"] is None
    assert cmd["options"] == [
        {
            "type": OptionType.STRING,
            "name": "game",
            "description": "The game",
            "required": True,
            "min_length": 2,
            "max_length": 32,
        },
        {
            "type": OptionType.INTEGER,
            "name": "size",
            "description": "New size in GB",
            "required": True,
            "min_value": 1,
            "max_value": 48,
        },
        {
            "type": OptionType.STRING,
            "name": "mode",
            "description": "How to grow it",
            "required": False,
            "choices": [{"name": "Fast", "value": "fast"}, {"name": "Safe", "value": "safe"}],
        },
        {
            "type": OptionType.BOOLEAN,
            "name": "force",
            "description": "Skip the safety check",
            "required": False,
        },
    ]


def test_required_options_are_registered_before_optional_ones() -> None:
    reg = CommandRegistry()

    @reg.command()
    def order(ctx: object, later: str | None = None, *, first: str) -> Reply:
        """Order options.

        Args:
            later: Optional
            first: Required
        """
        return Reply()

    assert [o["name"] for o in reg.to_payload()[0]["options"]] == ["first", "later"]


def test_admin_level_and_explicit_permission_set_default_member_permissions() -> None:
    payload = {c["name"]: c for c in registry.to_payload()}
    assert payload["setup"]["default_member_permissions"] == str(int(Permission.MANAGE_GUILD))
    assert payload["help"]["default_member_permissions"] is None
    assert all(c["contexts"] == [0] for c in payload.values())


def _declare(fn_doc: str, name: str = "ok", **kw: object) -> None:
    reg = CommandRegistry()

    def fn(ctx: object) -> Reply:
        return Reply()

    fn.__doc__ = fn_doc
    reg.command(name=name, **kw)(fn)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "doc", "error"),
    [
        ("Bad", "Upper case.", "invalid command name"),
        ("has space", "Space.", "invalid command name"),
        ("x" * 33, "Too long.", "invalid command name"),
        ("empty", "", "description must be 1-100"),
        ("long", "d" * 101, "description must be 1-100"),
    ],
)
def test_definitions_breaking_discord_limits_fail_at_declaration(name: str, doc: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        _declare(doc, name=name)


def test_undocumented_option_fails_at_declaration() -> None:
    reg = CommandRegistry()
    with pytest.raises(TypeError, match="describe it"):

        @reg.command()
        def bad(ctx: object, game: str) -> Reply:
            """No Args section."""
            return Reply()


def test_unsupported_option_type_fails_at_declaration() -> None:
    reg = CommandRegistry()
    with pytest.raises(TypeError, match="unsupported option type"):

        @reg.command()
        def bad(ctx: object, games: list[str]) -> Reply:
            """Lists are not options.

            Args:
                games: Several
            """
            return Reply()


def test_more_than_25_options_fail_at_declaration() -> None:
    params = ", ".join(f"o{i}: str" for i in range(26))
    docs = "\n".join(f"        o{i}: Option {i}" for i in range(26))
    src = f'def many(ctx, {params}):\n    """Many.\n\n    Args:\n{docs}\n    """\n'
    namespace: dict[str, object] = {}
    exec(src, namespace)  # noqa: S102 - builds a signature with 26 parameters
    reg = CommandRegistry()
    with pytest.raises(ValueError, match="more than 25 options"):
        many: Any = namespace["many"]
        reg.command()(many)


def test_duplicate_command_fails_at_declaration() -> None:
    reg = CommandRegistry()

    def first(ctx: object) -> Reply:
        """One."""
        return Reply()

    reg.command(name="same")(first)
    with pytest.raises(ValueError, match="declared twice"):
        reg.command(name="same")(first)


def test_option_naming_a_missing_autocomplete_provider_fails_validation() -> None:
    reg = CommandRegistry()

    @reg.command()
    def pick(ctx: object, game: Annotated[str, Autocomplete("nowhere")]) -> Reply:
        """Pick.

        Args:
            game: The game
        """
        return Reply()

    with pytest.raises(ValueError, match="no provider 'nowhere'"):
        reg.validate()


def test_every_registered_command_fits_discords_limits() -> None:
    payload = registry.to_payload()
    assert len(payload) <= 100
    for cmd in payload:
        assert 1 <= len(cmd["description"]) <= 100
        assert len(cmd["options"]) <= 25
        assert len(json.dumps(cmd)) < 8000

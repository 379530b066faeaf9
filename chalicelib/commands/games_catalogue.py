"""The game catalogue in Discord (issue 17): /newgame's form for a catalogue game, its autocomplete,
/gameoption for the settings the form had no room for, /updategame, and how to join a game.

Discord's modals hold at most five components (discord-protocol.md, modals): the name and the
description take two, so the form shows the entry's first three settings; the rest keep their
defaults and `/gameoption` changes any of them while the game is stopped.
"""

from __future__ import annotations

import json
from typing import Annotated, Final, TypeAlias

from chalicelib.catalogue import Entry, catalogue, entry
from chalicelib.commands.catalogue import GameName, registry
from chalicelib.commands.context import Context
from chalicelib.commands.games_claim import claim_game
from chalicelib.discord import Autocomplete, Choice, Choices, Length, Level, Modal, Reply, TextInput
from chalicelib.errors import Conflict, NotFound, ValidationError
from chalicelib.games import Game, GameState, SettingChanges, check_name
from chalicelib.games.cost import NoPrice, estimate
from chalicelib.tenancy import Tenant

__all__ = [
    "CUSTOM",
    "MODAL_SETTINGS",
    "GameType",
    "catalogue_choices",
    "catalogue_form",
    "create_from_catalogue",
    "gameoption",
    "how_to_join",
    "join_notes",
    "player_names",
    "updategame",
]

# The catalogue's "no entry" choice: today's empty server, installed by the admin.
CUSTOM: Final = "custom"
# Discord allows five components in a modal; the name and description take two.
MODAL_SETTINGS: Final = 3
# /newgame's `game_type` option: a catalogue entry's id, autocompleted with the entries' descriptions.
GameType: TypeAlias = Annotated[str, Length(2, 32), Autocomplete("catalogue")]


def _kind(game: Game) -> Entry | None:
    """A catalogue game's entry; None for a custom one (without reading the catalogue's files)."""
    return entry(game.settings.catalogue_id) if game.settings.catalogue_id else None


def _find(game_id: str) -> Entry:
    found = entry(game_id.strip().lower())
    if found is None:
        raise NotFound(
            f"`{game_id[:32]}` isn't a game in gangway's catalogue. Pick one from the list `/newgame` "
            "offers, or **Custom** to install a server yourself."
        )
    return found


@registry.autocomplete("catalogue")
def catalogue_choices(ctx: Context, partial: str) -> Choices:
    """Catalogue games whose name, id or description has what the caller typed; "Custom" too."""
    typed = partial.strip().lower()
    custom = Choice(name="Custom: an empty server; you install the game yourself", value=CUSTOM)
    matches = [
        Choice(name=f"{e.name}: {e.description}"[:100], value=e.id)
        for e in catalogue()
        if typed in e.id or typed in e.name.lower() or typed in e.description.lower()
    ]
    return Choices(tuple([*matches, custom][:25] if typed not in ("", CUSTOM) else [custom, *matches][:25]))


def catalogue_form(game_id: str, name: str | None) -> Modal:
    """/newgame's form for a catalogue game: name, description, and the entry's first settings."""
    found = _find(game_id)
    settings = tuple(
        TextInput(
            f.id,
            f.label,
            value=f.default,
            required=f.required if f.type == "integer" else f.required and f.min > 0,
            min_length=0 if f.type == "integer" else f.min,
            max_length=10 if f.type == "integer" else f.max,
            placeholder=f"{f.min} to {f.max}" if f.type == "integer" else "",
        )
        for f in found.form[:MODAL_SETTINGS]
    )
    return Modal(
        f"games:create:{found.id}",
        f"New {found.name} game"[:45],
        (
            TextInput(
                "name",
                "Short name (lowercase letters, digits, -)",
                value=name or found.id[:32],
                min_length=2,
                max_length=32,
            ),
            TextInput("description", "Description", value=found.name, required=False, max_length=100),
            *settings,
        ),
    )


def _cost(tenant: Tenant, instance_type: str, disk_gb: int) -> str:
    try:
        price = estimate(tenant.region, instance_type, disk_gb)
    except NoPrice:
        return ""
    return f" (~${price.on_demand_hourly:.3f}/h on-demand while it runs)"


def create_from_catalogue(ctx: Context, game_id: str) -> tuple[Game, str]:
    """The /newgame form of a catalogue game was submitted: claim the name with the entry's size,
    ports and form values; returns the claimed game and what to say about it.

    Raises:
        ValidationError / NotFound / Conflict: a bad name or value, an unknown entry, a taken name;
            nothing is created.
    """
    found = _find(game_id)
    fields = ctx.interaction.fields
    name = check_name(str(fields.get("name", "")).strip().lower())
    description = str(fields.get("description", "")).strip() or found.name
    given = {f.id: str(fields[f.id]) for f in found.form if f.id in fields}
    try:
        values = found.check_values(given)
    except ValueError as exc:
        raise ValidationError(f"{exc}. Nothing was created; run `/newgame` again.") from exc
    settings: SettingChanges = {
        "catalogue_id": found.id,
        "install_version": found.install.version,
        "game_options": json.dumps(values, sort_keys=True),
        "instance_type": found.sizes.x86,
        "disk_gb": found.sizes.disk_gb,
        "ports": list(found.ports.normalised()),
    }
    game, tenant = claim_game(ctx, name, description, settings)
    arm = f" (or `{found.sizes.arm64}` on Arm, usually cheaper)" if found.sizes.arm64 else ""
    rest = [f.label for f in found.form[MODAL_SETTINGS:]]
    later = f" `/gameoption` changes its other settings ({', '.join(rest)})." if rest else ""
    cost = _cost(tenant, found.sizes.x86, found.sizes.disk_gb)
    return game, (
        f"{found.name}, recommended size `{found.sizes.x86}`{arm}{cost}"
        f" with {found.sizes.memory_gb:g} GB of memory; its ports are opened for you.{later}"
    )


def _option_names(game: Game) -> str:
    found = _kind(game)
    return ", ".join(f"`{f.id}`" for f in found.form) if found else ""


@registry.command(level=Level.ADMIN)
def gameoption(
    ctx: Context,
    game: GameName,
    setting: Annotated[str, Length(1, 32)],
    value: Annotated[str, Length(0, 100)],
) -> Reply:
    """Change one setting of a catalogue game (server name, max players…) while it is stopped.

    Args:
        game: The game to change
        setting: The setting's id, for example max_players
        value: Its new value
    """
    found = ctx.game(game)
    kind = _kind(found)
    if kind is None:
        raise ValidationError(
            f"**{found.name}** is a custom game: its settings are in its own files (`/files`), not gangway's."
        )
    current = dict(found.settings.options)
    field = kind.field(setting.strip().lower())
    if field is None:
        raise ValidationError(f"{kind.name} has no setting `{setting[:32]}`; it has {_option_names(found)}.")
    try:
        values = kind.check_values({**current, field.id: value})
    except ValueError as exc:
        raise ValidationError(f"{exc}; nothing was changed.") from exc
    ctx.services.games.change(
        ctx.tenant_id,
        found.name,
        expected_version=found.version,
        states=frozenset({GameState.STOPPED}),
        game_options=json.dumps(values, sort_keys=True),
    )
    return Reply(
        content=f"✅ **{found.name}**: {field.label} is now `{values[field.id] or '(empty)'}`. "
        "It applies at the next `/start`.",
        ephemeral=True,
    )


def _next_version(version: str) -> str:
    """The install version after `version` (`1` → `2`; `1.4` → `1.5`; anything else gains `.1`)."""
    head, _, last = version.rpartition(".")
    if last.isdigit():
        return f"{head}.{int(last) + 1}" if head else str(int(last) + 1)
    return f"{version}.1"[:32]


@registry.command(level=Level.ADMIN)
def updategame(ctx: Context, game: GameName) -> Reply:
    """Update a catalogue game's server to the newest version, keeping its world (backed up first).

    Args:
        game: The game to update
    """
    from chalicelib.lifecycle import begin_backup, reply_ref

    found = ctx.game(game)
    kind = _kind(found)
    if kind is None:
        raise ValidationError(
            f"**{found.name}** is a custom game: update its server through `/files` or `/terminal`."
        )
    if found.state not in (GameState.STOPPED, GameState.RUNNING):
        raise Conflict(
            f"**{found.name}** is {found.state.word}; run `/updategame` again once it is running or stopped."
        )
    version = _next_version(found.settings.install_version or kind.install.version)
    it = ctx.interaction
    if found.state is GameState.RUNNING:
        # The backup claims the game first (one at a time); its last step asks the agent to reinstall.
        begin_backup(
            ctx.lifecycle,
            found,
            interaction_id=it.id,
            reply=reply_ref(it.application_id, it.token),
            install_after=True,
        )
    ctx.services.games.change(
        ctx.tenant_id,
        found.name,
        # Stopped: only the version read (two /updategame at once bump it once); running: the backup's claim
        # (one at a time) already wrote the row, so the state is the condition.
        expected_version=found.version if found.state is GameState.STOPPED else None,
        states=frozenset({found.state}),
        install_version=version,
    )
    if found.state is GameState.RUNNING:
        return Reply(
            content=f"⏳ Updating **{found.name}** ({kind.name}): backing it up first, then the server "
            "reinstalls the game and starts it again; its world is kept. This message says how far it is."
        )
    return Reply(
        content=f"✅ **{found.name}** ({kind.name}) will update at its next `/start`: the game is installed "
        "again (its world is kept), and its latest snapshot is the backup from before the update.",
    )


def how_to_join(ctx: Context, name: str) -> Reply:
    """/help game: how players join that game, with the address it runs at now."""
    found = ctx.game(name)
    kind = _kind(found)
    host = found.resources.address if found.state is GameState.RUNNING else None
    if kind is None:
        return Reply(
            content=f"**{found.name}** is a custom game: ask an admin which client to use. "
            + (f"It runs at `{host}`." if host else "Start it with `/start`; `/ip` then shows its address."),
            ephemeral=True,
        )
    where = (
        f"Join at `{kind.connect_string(host)}`."
        if host
        else f"It is {found.state.word}; start it with `/start game:{found.name}`, then `/ip` shows where "
        "to join."
    )
    return Reply(
        content=f"**How to join {found.name}** ({kind.name}): {kind.join}\n{where} If you can't connect, "
        "run `/addip` first.",
        ephemeral=True,
    )


def player_names(game: Game) -> str | None:
    """Who is on a running game, by name, where its query protocol gives names and the count is fresh."""
    from chalicelib.lifecycle.players import online as players_online

    if game.player_names is None or players_online(game) is None:
        return None
    return ", ".join(game.player_names) if game.player_names else "nobody"


def join_notes(game: Game, host: str | None) -> list[str]:
    """A running catalogue game's join line (or that it is not playable yet) and its players by name."""
    kind = _kind(game)
    if kind is None or game.state is not GameState.RUNNING:
        return []
    if game.playable_at is None:
        notes = [f"installing or starting {kind.name}: not playable yet"]
    elif host:
        notes = [f"join with `{kind.connect_string(host)}`"]
    else:
        notes = []
    names = player_names(game)
    return [*notes, f"playing: {names}"] if names else notes

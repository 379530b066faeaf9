"""Commands everyone may use: /help, and the autocomplete of command names."""

from __future__ import annotations

from typing import Annotated

from chalicelib.commands.catalogue import GameName, registry
from chalicelib.commands.context import Context
from chalicelib.commands.games_catalogue import how_to_join
from chalicelib.discord import Autocomplete, Choice, Choices, Embed, EmbedField, Length, Level, Reply
from chalicelib.errors import NotFound

__all__ = ["help_"]

_LEVEL_TITLES = {
    Level.WELCOME: "For everyone",
    Level.MAIN: "For the main role",
    Level.ADMIN: "For admins",
}


@registry.command(needs_tenant=False)
def help_(
    ctx: Context,
    command: Annotated[str, Length(1, 32), Autocomplete("commands")] | None = None,
    game: GameName | None = None,
) -> Reply:
    """Show what you can do with gangway, how to use one command, or how to join a game.

    Args:
        command: A command to explain, for example games
        game: A game to explain how to join
    """
    if game is not None:
        if not ctx.has_tenant:
            raise NotFound("This server isn't set up yet, so it has no games: an admin can run `/setup`.")
        return how_to_join(ctx, game)
    if command is not None:
        return _explain(ctx, command.removeprefix("/").strip().lower())
    fields = []
    for level in Level:
        if level > ctx.level:
            continue
        cmds = [c for c in ctx.services.registry.describe(ctx.level) if c.level is level]
        if cmds:
            lines = "\n".join(f"`/{c.name}` {c.description}" for c in cmds)
            fields.append(EmbedField(name=_LEVEL_TITLES[level], value=lines))
    notes = [f"Your access here: **{ctx.level.label}**."]
    if not ctx.has_tenant:
        notes.append("This server isn't set up yet: someone with **Manage Server** can run `/setup`.")
    notes.append("`/help command:<name>` explains one command; `/help game:<name>` how to join a game.")
    return Reply(
        embeds=(Embed(title="gangway commands", description="\n".join(notes), fields=tuple(fields)),),
        ephemeral=True,
    )


def _explain(ctx: Context, name: str) -> Reply:
    cmd = ctx.services.registry.by_name(name)
    if cmd is None:
        raise NotFound(f"`/{name[:32]}` isn't a gangway command. `/help` lists them all.")
    fields = [
        EmbedField(
            name=f"{o.name}{'' if o.required else ' (optional)'}",
            value=o.description,
        )
        for o in cmd.options
    ]
    allowed = cmd.level <= ctx.level
    who = f"Needs the **{cmd.level.label}** level" + ("" if allowed else " (you don't have it here)")
    desc = f"{cmd.description}\n\nUsage: `{cmd.usage}`\n{who}."
    if cmd.usage_notes:
        desc += f"\n\n{cmd.usage_notes}"
    return Reply(
        embeds=(Embed(title=f"/{cmd.name}", description=desc, fields=tuple(fields)),), ephemeral=True
    )


@registry.autocomplete("commands")
def command_names(ctx: Context, partial: str) -> Choices:
    """Command names the caller may use that start with what they typed."""
    prefix = partial.removeprefix("/").lower()
    names = [c.name for c in ctx.services.registry.describe(ctx.level) if c.name.startswith(prefix)]
    return Choices(tuple(Choice(name=f"/{n}", value=n) for n in names))

"""Commands for the main role: /games and /status, and the autocomplete of game names."""

from __future__ import annotations

import time
from collections import Counter

from chalicelib.commands.catalogue import GameName, jobs, registry
from chalicelib.commands.context import Context
from chalicelib.commands.games_catalogue import join_notes, player_names
from chalicelib.commands.games_edit import idle_words
from chalicelib.config import Settings
from chalicelib.discord import Choice, Choices, Deferred, Embed, EmbedField, Job, Level, Reply
from chalicelib.games import Game, GameState
from chalicelib.games.cost import NoPrice, estimate
from chalicelib.instances import dns_name
from chalicelib.tenancy import Tenant

__all__ = ["games", "status"]


def _ts(epoch: float) -> str:
    """A Discord timestamp that each reader sees in their own time zone (DESIGN.md §2a)."""
    return f"<t:{int(epoch)}:R>"


@registry.command(level=Level.MAIN)
def games(ctx: Context, game: GameName | None = None) -> Reply:
    """List this server's games, or show one game's details.

    Args:
        game: The game to show
    """
    if game is not None:
        found = ctx.game(game)
        return Reply(
            embeds=(_details(found, ctx.services.tenants.require(ctx.tenant_id), ctx.services.settings),),
            ephemeral=True,
        )
    listed = ctx.services.games.all(ctx.tenant_id)
    if not listed:
        hint = (
            "Create one with `/newgame`."
            if ctx.level >= Level.ADMIN
            else "An admin can create one with `/newgame`."
        )
        return Reply(content=f"This server has no games yet. {hint}", ephemeral=True)
    counts = Counter(g.state for g in listed)
    summary = ", ".join(f"{n} {s.word}" for s, n in sorted(counts.items()))
    lines = [
        f"{g.state.emoji} **{g.name}** · {_state(g)}"
        + (f" · {g.settings.description}" if g.settings.description else "")
        + "".join(f" · {note}" for note in join_notes(g, g.resources.address))
        for g in listed
    ]
    return Reply(
        embeds=(Embed(title=f"Games ({len(listed)}: {summary})", description="\n".join(lines)),),
        ephemeral=True,
    )


def _state(game: Game) -> str:
    """The state in words; a game brought up by /editgame runs without the game (games_edit.py)."""
    if game.resources.editing and game.state is GameState.RUNNING:
        return f"{game.state.word} (up for editing, without the game)"
    if game.resources.editing and game.state is GameState.STARTING:
        return f"{game.state.word} (for editing)"
    return game.state.word


def _details(game: Game, tenant: Tenant, settings: Settings) -> Embed:
    from chalicelib.lifecycle.players import online as players_online

    fields = [
        EmbedField(name="Status", value=_state(game), inline=True),
        EmbedField(name="Created", value=_ts(game.created_at), inline=True),
        EmbedField(name="Last change", value=_ts(game.updated_at), inline=True),
    ]
    playing = players_online(game)
    if playing is not None:
        fields.append(
            EmbedField(
                name="Players",
                value=f"{playing} player{'' if playing == 1 else 's'} online, {_ts(game.players_at or 0)}"
                + (f": {names}" if (names := player_names(game)) else ""),
                inline=False,
            )
        )
    name = dns_name(tenant, game.name)
    if name and game.state is GameState.RUNNING:
        fields.append(EmbedField(name="Address", value=f"`{name}`", inline=False))
    fields.append(EmbedField(name="Idle shutdown", value=f"It {idle_words(game, settings)}.", inline=False))
    joining = join_notes(game, name or game.resources.address)
    if joining:
        fields.append(EmbedField(name="Joining", value="; ".join(joining), inline=False))
    fields.append(EmbedField(name="Cost estimate", value=_cost(game, tenant.region), inline=False))
    return Embed(
        title=f"{game.state.emoji} {game.name}",
        description=game.settings.description or "No description yet.",
        fields=tuple(fields),
    )


def _cost(game: Game, region: str) -> str:
    """Per hour played and per month idle for the game's choices (chalicelib/games/cost.py)."""
    try:
        return "\n".join(
            estimate(region, game.settings.instance_type, game.settings.disk_gb).lines(
                spot=game.settings.spot
            )
        )
    except NoPrice as exc:
        return f"No estimate: gangway's price table has {exc}."


@registry.autocomplete("games")
def game_names(ctx: Context, partial: str) -> Choices:
    """The tenant's game names starting with what the caller typed."""
    names = ctx.services.games.names(ctx.tenant_id, partial.strip().lower())
    return Choices(tuple(Choice(name=n, value=n) for n in names))


@registry.command()
def status(ctx: Context) -> Deferred:
    """Check that gangway is working here, and how this server is set up."""
    return Deferred(Job("status", {"queued_at": time.time()}), ephemeral=True)


@jobs.job("status")
def status_report(ctx: Context, queued_at: float) -> Reply:
    """Runs in the jobs Lambda: the whole path Discord → endpoint → queue → job → webhook works."""
    tenant = ctx.services.tenants.require(ctx.tenant_id)
    listed = ctx.services.games.all(ctx.tenant_id)
    counts = Counter(g.state for g in listed)
    by_state = ", ".join(f"{counts.get(s, 0)} {s.word}" for s in GameState) if listed else "none yet"
    delay_ms = max(0.0, (time.time() - float(queued_at)) * 1000)

    def roles(ids: frozenset[str]) -> str:
        return " ".join(f"<@&{r}>" for r in sorted(ids)) or "not chosen yet (run `/setup`)"

    return Reply(
        embeds=(
            Embed(
                title="✅ gangway is working here",
                description=f"Your access: **{ctx.level.label}**. This reply went through the job queue "
                f"in {delay_ms:.0f} ms.",
                fields=(
                    EmbedField(name="Main role", value=roles(tenant.main_role_ids), inline=True),
                    EmbedField(name="Admin role", value=roles(tenant.admin_role_ids), inline=True),
                    EmbedField(
                        name="AWS account",
                        value=f"{tenant.account_mode} account, region `{tenant.region}`",
                        inline=False,
                    ),
                    EmbedField(name=f"Games ({len(listed)})", value=by_state, inline=False),
                    EmbedField(name="Set up", value=f"{_ts(tenant.created_at)} by <@{tenant.created_by}>"),
                ),
            ),
        ),
        ephemeral=True,
    )

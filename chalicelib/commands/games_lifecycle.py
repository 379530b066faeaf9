"""/newgame, /start and /stop: create a game, and start or stop it through its workflows."""

from __future__ import annotations

from typing import Annotated, Any, Final

from chalicelib.commands.catalogue import GameName, registry
from chalicelib.commands.context import Context
from chalicelib.commands.games_catalogue import CUSTOM, GameType, catalogue_form, create_from_catalogue
from chalicelib.commands.games_claim import claim_game
from chalicelib.discord import (
    ActionRow,
    Button,
    ButtonStyle,
    Length,
    Level,
    Modal,
    Reply,
    SelectOption,
    StringSelect,
    TextInput,
    Update,
)
from chalicelib.errors import Conflict, ValidationError
from chalicelib.games import Game, GameState, check_name
from chalicelib.games.cost import price_table
from chalicelib.tenancy import plan_named

__all__ = ["create_game", "newgame", "start", "stop", "stop_cancelled", "stop_confirmed"]


@registry.command(level=Level.ADMIN)
def newgame(
    ctx: Context, name: Annotated[str, Length(2, 32)] | None = None, game_type: GameType | None = None
) -> Modal:
    """Create a new game server (a form asks for its name and description).

    Args:
        name: The game's short name, e.g. valheim
        game_type: A game from gangway's catalogue (installed for you), or Custom
    """
    if game_type is not None and game_type.strip().lower() != CUSTOM:
        return catalogue_form(game_type, name)
    return Modal(
        "games:create",
        "New game",
        (
            TextInput(
                "name",
                "Short name (lowercase letters, digits, -)",
                value=name or "",
                min_length=2,
                max_length=32,
                placeholder="valheim",
            ),
            TextInput(
                "description",
                "Description",
                required=False,
                max_length=100,
                placeholder="Viking survival with friends",
            ),
        ),
    )


@registry.route("games:create", level=Level.ADMIN)
def create_game(ctx: Context, *args: str) -> Reply:
    """The /newgame form was submitted (`games:create[:<catalogue id>]`)."""
    if len(args) > 1:
        raise ValidationError("That form isn't one gangway made; run `/newgame` again.")
    if args:
        game, about = create_from_catalogue(ctx, args[0])
        return Reply(
            content=f"⏳ Creating **{game.name}**: {about} Now {summary(game)}. Change these below if you "
            "like; this message says when it is ready to `/start`.",
            components=choices(game),
            ephemeral=True,
        )
    fields = ctx.interaction.fields
    name = check_name(str(fields.get("name", "")).strip().lower())
    description = str(fields.get("description", "")).strip()
    # One conditional write claims the name (CREATING); the CreateGame workflow makes its security group.
    game, _ = claim_game(ctx, name, description)
    return Reply(
        content=f"⏳ Creating **{game.name}**"
        + (f" ({description})" if description else "")
        + f": {summary(game)}. Change these below if you like; this message says when it is ready to "
        "`/start`.",
        components=choices(game),
        ephemeral=True,
    )


@registry.command(level=Level.MAIN)
def start(ctx: Context, game: GameName | None = None) -> Reply:
    """Start a game server.

    Args:
        game: The game to start
    """
    if game is None:
        stopped = [g for g in ctx.services.games.all(ctx.tenant_id) if g.state is GameState.STOPPED]
        if not stopped:
            return Reply(
                content="No game is stopped right now. `/games` shows what each one is doing.", ephemeral=True
            )
        options = tuple(SelectOption(g.name, g.name, g.settings.description[:100]) for g in stopped[:25])
        return Reply(
            content="Which game?",
            ephemeral=True,
            components=(ActionRow((StringSelect("games:start", options, placeholder="Pick a game"),)),),
        )
    return _start(ctx, ctx.game(game))


@registry.route("games:start", level=Level.MAIN)
def start_picked(ctx: Context) -> Update:
    """A game was picked from /start's select."""
    reply = _start(ctx, ctx.game((ctx.interaction.values or ("",))[0]))
    return Update(content=reply.content)


def _start(ctx: Context, game: Game) -> Reply:
    from chalicelib.lifecycle import begin_start, reply_ref

    if game.state is not GameState.STOPPED:
        raise Conflict(f"**{game.name}** is {game.state.word}, so it can't be started now.")
    it = ctx.interaction
    begin_start(ctx.lifecycle, game, reply=reply_ref(it.application_id, it.token))
    if it.channel_id:  # where its idle warnings go
        ctx.services.games.note_channel(ctx.tenant_id, game.name, it.channel_id)
    return Reply(content=f"⏳ Starting **{game.name}**…")


@registry.command(level=Level.MAIN)
def stop(ctx: Context, game: GameName) -> Reply:
    """Stop a running game server (its world is saved and snapshotted first).

    Args:
        game: The game to stop
    """
    from chalicelib.lifecycle.players import online as players_online

    found = ctx.game(game)
    if found.state is not GameState.RUNNING:
        raise Conflict(f"**{found.name}** is {found.state.word}; only a running game can be stopped.")
    playing = players_online(found)
    if playing:  # people are on it right now (a fresh count from its agent): ask first
        return Reply(
            content=f"**{playing} player{'s are' if playing != 1 else ' is'} online** on **{found.name}** "
            f"(as of <t:{int(found.players_at or 0)}:R>); stop it anyway? Their world is saved first.",
            components=(
                ActionRow(
                    (
                        Button(f"Stop {found.name}", f"games:stop:{found.name}", ButtonStyle.DANGER),
                        Button("Cancel", f"games:keep:{found.name}"),
                    )
                ),
            ),
            ephemeral=True,
        )
    return _stop(ctx, found)


def _stop(ctx: Context, found: Game) -> Reply:
    from chalicelib.lifecycle import begin_stop, reply_ref

    it = ctx.interaction
    begin_stop(
        ctx.lifecycle, found, reply=reply_ref(it.application_id, it.token), reason=f"/stop by <@{it.user_id}>"
    )
    return Reply(content=f"⏳ Stopping **{found.name}**…")


@registry.route("games:stop", level=Level.MAIN)
def stop_confirmed(ctx: Context, *args: str) -> Update:
    """/stop's danger button (`games:stop:<game>`): the same stop, without asking again."""
    if len(args) != 1:
        raise ValidationError("That button isn't one gangway made; run `/stop` again.")
    found = ctx.game(args[0])
    if found.state is not GameState.RUNNING:
        return Update(content=f"**{found.name}** is {found.state.word} now, so there is nothing to stop.")
    return Update(content=_stop(ctx, found).content)


@registry.route("games:keep", level=Level.MAIN)
def stop_cancelled(ctx: Context, *args: str) -> Update:
    """/stop's cancel button (`games:keep:<game>`): nothing happens, and the buttons go away."""
    if len(args) != 1:
        raise ValidationError("That button isn't one gangway made; run `/stop` again.")
    return Update(content=f"👍 **{ctx.game(args[0]).name}** keeps running; nothing was stopped.")


# -- a new game's choices: selects on the /newgame reply, each saved at once (only while stopped) ------

# x86 types first, then AWS Graviton (arm64) ones: each boots the Debian image of its own architecture
# (instances/images.py). Discord allows 25 options in a select; the fallback select shows all but one.
X86_TYPES: Final = (
    "t3.small",
    "t3.medium",
    "t3.large",
    "t3.xlarge",
    "m6i.large",
    "m6i.xlarge",
    "m6i.2xlarge",
    "c6i.large",
    "c6i.xlarge",
    "c6i.2xlarge",
)
ARM_TYPES: Final = (
    "t4g.small",
    "t4g.medium",
    "t4g.large",
    "t4g.xlarge",
    "m7g.large",
    "m7g.xlarge",
    "m7g.2xlarge",
    "c7g.large",
    "c7g.xlarge",
    "c7g.2xlarge",
)
INSTANCE_TYPES: Final = X86_TYPES + ARM_TYPES
# Where the selects' prices come from (prices.json): gangway's default region.
_PRICE_REGION: Final = "us-east-1"
DISK_SIZES: Final = (12, 16, 24, 32, 48, 64, 128)
MARKETS: Final = {
    "on-demand": (
        "On-demand",
        "Always available; the normal price",
        {"spot": False, "on_demand_fallback": True},
    ),
    "spot": (
        "Spot, else on-demand",
        "Up to ~70 % cheaper; on-demand when Spot has no room",
        {"spot": True, "on_demand_fallback": True},
    ),
    "spot-only": (
        "Spot only",
        "Cheapest; the start fails when Spot has no room",
        {"spot": True, "on_demand_fallback": False},
    ),
}
# Fast snapshot restore is billed per snapshot and zone hour, at least one hour (prices.json).
_FSR_HOURLY: Final = float(price_table()["regions"]["us-east-1"]["fsr_dsu_hourly"])
# How StartGame warms a disk made from a snapshot (lifecycle/preload.py); a first start has none.
PRELOADS: Final = {
    "off": ("No preloading", "The disk warms up as the game reads it (slow first minutes)"),
    "rate": ("Provisioned rate", "The volume is initialised at 200 MiB/s while it starts"),
    "fsr": (
        "Fast snapshot restore",
        # AWS's volume-creation credits start at zero when it is switched on (bench/start_model.py).
        f"~${_FSR_HOURLY:.2f} a start; full speed only if AWS has a credit, ~6 min after it is on",
    ),
    "read": (
        "Read the whole disk first",
        "The server reads every block before the game starts: a longer start, no stutter",
    ),
}


def type_hint(instance_type: str) -> str:
    """A type's option description: its architecture and list prices, so Graviton's saving shows."""
    table = price_table()
    hourly = table["regions"][_PRICE_REGION]["on_demand_hourly"].get(instance_type)
    arch = "Arm (Graviton)" if instance_type in ARM_TYPES else "x86"
    if hourly is None:
        return arch
    low, high = (float(hourly) * (1 - float(table["spot"][k])) for k in ("savings_high", "savings_low"))
    return f"{arch}: ~${float(hourly):.3f}/h on-demand, ~${low:.3f}-{high:.3f}/h Spot ({_PRICE_REGION})"


def choices(game: Game) -> tuple[ActionRow, ...]:
    """The selects that change what a stopped game runs on; each custom_id carries the game."""

    def select(field: str, opts: tuple[SelectOption, ...], placeholder: str, many: bool = False) -> ActionRow:
        return ActionRow(
            (
                StringSelect(
                    f"games:set:{game.name}:{field}",
                    opts,
                    placeholder=placeholder,
                    min_values=0 if many else 1,
                    max_values=len(opts) if many else 1,
                ),
            )
        )

    market = (
        "on-demand"
        if not game.settings.spot
        else ("spot" if game.settings.on_demand_fallback else "spot-only")
    )
    return (
        select(
            "type",
            tuple(
                SelectOption(t, t, type_hint(t), default=t == game.settings.instance_type)
                for t in INSTANCE_TYPES
            ),
            "Instance type",
        ),
        select(
            "market",
            tuple(
                SelectOption(label, key, hint, default=key == market)
                for key, (label, hint, _) in MARKETS.items()
            ),
            "Spot or on-demand",
        ),
        select(
            "disk",
            tuple(SelectOption(f"{n} GB", str(n), default=n == game.settings.disk_gb) for n in DISK_SIZES),
            "Disk size",
        ),
        select(
            "preload",
            tuple(
                SelectOption(label, key, hint, default=key == game.settings.preload)
                for key, (label, hint) in PRELOADS.items()
            ),
            "Disk preloading",
        ),
        select(
            "fallback",
            tuple(
                SelectOption(t, t, type_hint(t), default=t in game.settings.fallback_types)
                for t in INSTANCE_TYPES
                if t != game.settings.instance_type
            ),
            "If AWS has no room for it: other types to try",
            many=True,
        ),
    )


def summary(game: Game) -> str:
    market = (
        "Spot" + (", else on-demand" if game.settings.on_demand_fallback else " only")
        if game.settings.spot
        else "on-demand"
    )
    others = ", ".join(f"`{t}`" for t in game.settings.fallback_types if t != game.settings.instance_type)
    return (
        f"`{game.settings.instance_type}`" + (f" (else {others})" if others else "") + f", {market}, "
        f"{game.settings.disk_gb} GB disk, preloading: "
        f"{PRELOADS.get(game.settings.preload, (game.settings.preload,))[0].lower()}"
    )


@registry.route("games:set", level=Level.ADMIN)
def set_choice(ctx: Context, name: str, field: str) -> Update:
    """One of the /newgame selects changed: save it (plan limits apply) and redraw the message."""
    game = ctx.game(name)
    values = ctx.interaction.values or ()
    value = (values or ("",))[0]
    plan = plan_named(ctx.services.tenants.require(ctx.tenant_id).plan)
    changes: dict[str, Any]
    if field == "fallback" and len(values) < len(INSTANCE_TYPES) and set(values) <= set(INSTANCE_TYPES):
        picked = [t for t in dict.fromkeys(values) if t != game.settings.instance_type]
        for t in picked:  # the plan's limit applies to every type a start may use
            plan.check_instance(t)
        changes = {"fallback_types": picked}
    elif field == "type" and value in INSTANCE_TYPES:
        plan.check_instance(value)
        changes = {"instance_type": value}
    elif field == "market" and value in MARKETS:
        changes = dict(MARKETS[value][2])
    elif field == "disk" and value.isdigit() and int(value) in DISK_SIZES:
        plan.check_disk(int(value))
        changes = {"disk_gb": int(value)}
    elif field == "preload" and value in PRELOADS:
        changes = {"preload": value}
    else:
        raise ValidationError("That choice isn't one gangway offers; run `/newgame` or `/games` again.")
    game = ctx.services.games.change(
        ctx.tenant_id, game.name, states=frozenset({GameState.STOPPED, GameState.CREATING}), **changes
    )
    return Update(
        content=f"✅ **{game.name}**: {summary(game)}. Changes apply at the next `/start`.",
        components=choices(game),
    )

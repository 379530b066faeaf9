"""/setup: register the guild as a tenant, choose its roles, pick its AWS account, or remove it.

Everything after the first /setup happens on the settings message's components; each custom_id
carries what the next step needs, and every step re-checks Manage Server.
"""

from __future__ import annotations

from chalicelib.commands.catalogue import jobs, registry
from chalicelib.commands.context import Context
from chalicelib.discord import (
    ActionRow,
    Button,
    ButtonStyle,
    Deferred,
    Embed,
    EmbedField,
    Job,
    Level,
    Permission,
    Reply,
    RoleSelect,
    Update,
)
from chalicelib.errors import Conflict, ValidationError
from chalicelib.games import GameState
from chalicelib.tenancy import RoleKind, Tenant, plan_named, purge_tenant

__all__ = [
    "account_summary",
    "choose_roles",
    "require_games_stay",
    "set_dns",
    "setdns",
    "settings_view",
    "setup",
]

_ROLE_HELP = {
    "main": "can list, start and stop games, and get guest links",
    "admin": "can also create, change and delete games and change these settings",
}
MANAGE = Permission.MANAGE_GUILD


@registry.command(permission=MANAGE, needs_tenant=False)
def setup(ctx: Context) -> Reply:
    """Connect this server to gangway and choose who may run games.

    Needs the Manage Server permission. Running it again shows the current settings to change them,
    switch AWS accounts, or remove gangway from the server.
    """
    it = ctx.interaction
    if it.guild_id is None:  # Discord offers /setup in servers only; a forged DM must not make a tenant ""
        raise ValidationError("`/setup` connects a server: run it in the server you want to use gangway in.")
    tenant, created = ctx.services.tenants.ensure(it.guild_id, created_by=it.user_id)
    intro = (
        "✅ This server is now connected to gangway. Pick the roles below; games run in gangway's "
        "hosting account until you connect your own."
        if created
        else "This server is connected to gangway. Change its settings below."
    )
    return Reply(embeds=(settings_view(tenant, intro),), components=_components(tenant), ephemeral=True)


@registry.route("setup:main", permission=MANAGE)
def choose_main(ctx: Context) -> Update:
    """The main-role select was changed."""
    return choose_roles(ctx, "main")


@registry.route("setup:admin", permission=MANAGE)
def choose_admin(ctx: Context) -> Update:
    """The admin-role select was changed."""
    return choose_roles(ctx, "admin")


def choose_roles(ctx: Context, kind: RoleKind) -> Update:
    """Save the chosen roles and redraw the settings message in place."""
    tenant = ctx.services.tenants.set_roles(ctx.tenant_id, kind, ctx.interaction.chosen_ids())
    note = f"✅ Saved the {kind} role."
    if tenant.roles_configured:
        note += " Setup is complete: members with these roles can now use gangway (`/help` shows how)."
    return Update(embeds=(settings_view(tenant, note),), components=_components(tenant))


@registry.route("setup:hosting", permission=MANAGE)
def use_hosting(ctx: Context) -> Update:
    """Run this server's games in gangway's own AWS account."""
    _require_no_running_games(ctx, "switch accounts")
    require_games_stay(ctx, account=ctx.services.hosting_account(), region=ctx.services.settings.region)
    tenant = ctx.services.tenants.use_hosting_account(ctx.tenant_id, ctx.services.settings.region)
    ctx.services.broker.forget(ctx.tenant_id)
    return Update(
        embeds=(settings_view(tenant, "✅ Games now run in gangway's hosting account."),),
        components=_components(tenant),
    )


@registry.route("setup:remove", permission=MANAGE)
def remove(ctx: Context, *confirm: str) -> Reply | Deferred:
    """Ask for confirmation, then remove the tenant in the jobs Lambda."""
    if confirm != ("confirm",):
        tenant = ctx.services.tenants.require(ctx.tenant_id)
        data = (
            "Your games' snapshots stay in your own AWS account; their firewall and log groups are deleted."
            if tenant.account_mode == "customer"
            else "Your games' snapshots (their saved worlds) are deleted too: they are in gangway's account."
        )
        return Reply(
            content="**Remove gangway from this server?** This deletes its games, settings, audit log and "
            f"every other record gangway keeps for it. {data}",
            components=(
                ActionRow((Button("Yes, remove gangway", "setup:remove:confirm", ButtonStyle.DANGER),)),
            ),
            ephemeral=True,
        )
    _require_no_running_games(ctx, "remove gangway")
    return Deferred(Job("tenant.remove"), update=True)


@jobs.job("tenant.remove")
def remove_tenant(ctx: Context) -> Update:
    """Delete every row of the tenant (games, ledger, audit, and whatever else registers), then itself."""
    from chalicelib.lifecycle.teardown import release_games

    tenant_id = ctx.tenant_id
    _require_no_running_games(ctx, "remove gangway")
    hosting = ctx.services.tenants.require(tenant_id).account_mode != "customer"
    released = release_games(
        ctx.lifecycle,
        ctx.services.games.all(tenant_id),
        stage=ctx.services.settings.stage,
        hosting=hosting,
    )
    counts = purge_tenant(tenant_id, ctx.services.tenant_tables())
    ctx.services.broker.forget(tenant_id)
    ctx.services.tenants.get(tenant_id)  # refresh the cache: the tenant is gone
    removed = sum(counts.values())
    groups = f"{released.groups} security group{'s' * (released.groups != 1)}"
    aws = (
        f"{released.snapshots} snapshot{'s' * (released.snapshots != 1)} and {groups} were deleted from "
        "gangway's account."
        if hosting
        else f"{groups} deleted; your snapshots are still in your AWS account."
    )
    left = (" Left behind: " + "; ".join(released.problems) + ".") if released.problems else ""
    return Update(
        content=f"gangway was removed from this server ({removed} records deleted). {aws}{left} "
        "Run `/setup` to start again.",
    )


@registry.command(level=Level.ADMIN)
def setdns(ctx: Context, zone_id: str | None = None, domain: str | None = None) -> Deferred:
    """Give running games DNS names (game.domain) in your Route 53 zone; no options turns it off.

    Args:
        zone_id: The Route 53 hosted zone id, e.g. Z0123456789ABCDEFGHIJ
        domain: The domain for game names, e.g. games.example.net (the zone's name or inside it)
    """
    from chalicelib.instances import parse_zone

    if bool(zone_id) != bool(domain):
        raise ValidationError("Give both `zone_id` and `domain`, or neither to turn game DNS names off.")
    if zone_id and ctx.services.tenants.require(ctx.tenant_id).account_mode != "customer":
        # No function role may change Route 53 (zones take no tag conditions): a zone is reached only
        # through the customer's own access role, which grants the one zone it names.
        raise ValidationError(
            "Game DNS names use a Route 53 zone in your own AWS account, and this server's games run in "
            "gangway's. Use `/setup` → Connect your AWS account (with your zone's id as the stack's "
            "HostedZoneId), then run `/setdns` again."
        )
    zone, name = parse_zone(zone_id, domain or "") if zone_id else ("", "")
    _require_no_running_games(ctx, "change DNS names")
    return Deferred(Job("tenant.dns", {"zone_id": zone, "domain": name}), ephemeral=True)


@jobs.job("tenant.dns")
def set_dns(ctx: Context, zone_id: str, domain: str) -> Reply:
    """Runs in the jobs Lambda: check the zone through the tenant's AWS access, then save it."""
    # A name set while a game runs would be left behind by the stop, which removes the new one.
    _require_no_running_games(ctx, "change DNS names")
    if not zone_id:
        ctx.services.tenants.set_dns(ctx.tenant_id, None, None)
        return Reply(content="✅ Game DNS names are off; `/games` shows no names.", ephemeral=True)
    tenant = ctx.services.tenants.require(ctx.tenant_id)
    zone = ctx.services.gateways().dns(tenant, actor=ctx.interaction.user_id).check_zone(zone_id, domain)
    ctx.services.tenants.set_dns(ctx.tenant_id, zone, domain)
    return Reply(
        content=f"✅ Running games get a DNS name in `{domain}` (zone `{zone}`), like `valheim.{domain}`, "
        "set when the game is up and removed when it stops.",
        ephemeral=True,
    )


def require_games_stay(ctx: Context, *, account: str, region: str) -> None:
    """Refuse to move a tenant with games to another account or region.

    A game lives where it was made: its snapshots (the saved world), its security group and its logs
    are in the tenant's current account and region. Moving the tenant would strand them, and the next
    `/start` would fail. Re-verifying the same account (after updating its role stack) is not a move.
    """
    tenant = ctx.services.tenants.require(ctx.tenant_id)
    here = tenant.aws_account_id if tenant.account_mode == "customer" else ctx.services.hosting_account()
    if (account, region) == (here, tenant.region):
        return
    games = [g.name for g in ctx.services.games.all(ctx.tenant_id)]
    if games:
        raise Conflict(
            f"This server's games live in AWS account `{here}`, region `{tenant.region}`: their saved "
            "worlds (snapshots), firewall and logs are there, and gangway cannot take them along. "
            "Delete them with `/deletegame` before moving to another account or region: "
            + ", ".join(f"`{n}`" for n in games)
            + "."
        )


def _require_no_running_games(ctx: Context, what: str) -> None:
    busy = [g.name for g in ctx.services.games.all(ctx.tenant_id) if g.state is not GameState.STOPPED]
    if busy:
        raise Conflict(f"Stop these games before you {what}: " + ", ".join(f"`{n}`" for n in busy) + ".")


def account_summary(tenant: Tenant) -> str:
    """One paragraph on where this tenant's games run."""
    if tenant.account_mode == "customer":
        text = f"Your account `{tenant.aws_account_id}`, region `{tenant.region}`"
        if tenant.verified_at:
            text += f", verified <t:{int(tenant.verified_at)}:R>"
    else:
        text = f"gangway's hosting account, region `{tenant.region}`"
    if tenant.pending_role_arn:
        text += f"\nConnecting `{tenant.pending_role_arn}`: not verified yet"
    if tenant.verify_problem:
        text += f"\n❌ Last check: {tenant.verify_problem}"
    return text


def settings_view(tenant: Tenant, intro: str) -> Embed:
    def mentions(ids: frozenset[str]) -> str:
        return " ".join(f"<@&{r}>" for r in sorted(ids)) or "*not chosen yet*"

    plan = plan_named(tenant.plan)
    return Embed(
        title="gangway setup",
        description=intro,
        fields=(
            EmbedField(name="Main role", value=f"{mentions(tenant.main_role_ids)}\n{_ROLE_HELP['main']}"),
            EmbedField(name="Admin role", value=f"{mentions(tenant.admin_role_ids)}\n{_ROLE_HELP['admin']}"),
            EmbedField(name="AWS account", value=account_summary(tenant)),
            EmbedField(name="Plan", value=f"**{plan.name}** (`/plan` shows usage and limits)"),
        ),
        footer="Server administrators always count as admins.",
    )


def _components(tenant: Tenant) -> tuple[ActionRow, ...]:
    account_buttons = (
        Button("Connect your AWS account", "setup:connect", ButtonStyle.PRIMARY),
        Button("Use gangway's hosting account", "setup:hosting", disabled=tenant.account_mode == "hosting"),
        Button("Remove gangway…", "setup:remove", ButtonStyle.DANGER),
    )
    return (
        ActionRow(
            (
                RoleSelect(
                    "setup:main",
                    placeholder="Main role: who may run games",
                    default_role_ids=tuple(sorted(tenant.main_role_ids)),
                ),
            )
        ),
        ActionRow(
            (
                RoleSelect(
                    "setup:admin",
                    placeholder="Admin role: who manages games and settings",
                    default_role_ids=tuple(sorted(tenant.admin_role_ids)),
                ),
            )
        ),
        ActionRow(account_buttons),
    )

"""/setup: register the guild as a tenant and choose its main and admin roles with role selects."""

from __future__ import annotations

from chalicelib.commands.catalogue import registry
from chalicelib.commands.context import Context
from chalicelib.discord import ActionRow, Embed, EmbedField, Permission, Reply, RoleSelect, Update
from chalicelib.tenancy import RoleKind, Tenant

__all__ = ["choose_roles", "setup"]

_ROLE_HELP = {
    "main": "can list, start and stop games, and get guest links",
    "admin": "can also create, change and delete games and change these settings",
}


@registry.command(permission=Permission.MANAGE_GUILD, needs_tenant=False)
def setup(ctx: Context) -> Reply:
    """Connect this server to gangway and choose who may run games.

    Needs the Manage Server permission. Running it again shows the current settings to change them.
    """
    tenant, created = ctx.services.tenants.ensure(
        ctx.interaction.guild_id or "", created_by=ctx.interaction.user_id
    )
    intro = (
        "✅ This server is now connected to gangway."
        if created
        else "This server is connected to gangway. Change its settings below."
    )
    return Reply(embeds=(_view(tenant, intro),), components=_selects(tenant), ephemeral=True)


@registry.route("setup:main", permission=Permission.MANAGE_GUILD)
def choose_main(ctx: Context) -> Update:
    """The main-role select was changed."""
    return choose_roles(ctx, "main")


@registry.route("setup:admin", permission=Permission.MANAGE_GUILD)
def choose_admin(ctx: Context) -> Update:
    """The admin-role select was changed."""
    return choose_roles(ctx, "admin")


def choose_roles(ctx: Context, kind: RoleKind) -> Update:
    """Save the chosen roles and redraw the settings message in place."""
    tenant = ctx.services.tenants.set_roles(ctx.tenant_id, kind, ctx.interaction.values)
    note = f"✅ Saved the {kind} role."
    if tenant.roles_configured:
        note += " Setup is complete: members with these roles can now use gangway (`/help` shows how)."
    return Update(embeds=(_view(tenant, note),), components=_selects(tenant))


def _view(tenant: Tenant, intro: str) -> Embed:
    def mentions(ids: frozenset[str]) -> str:
        return " ".join(f"<@&{r}>" for r in sorted(ids)) or "*not chosen yet*"

    return Embed(
        title="gangway setup",
        description=intro,
        fields=(
            EmbedField(name="Main role", value=f"{mentions(tenant.main_role_ids)}\n{_ROLE_HELP['main']}"),
            EmbedField(name="Admin role", value=f"{mentions(tenant.admin_role_ids)}\n{_ROLE_HELP['admin']}"),
            EmbedField(name="AWS account", value=f"{tenant.account_mode} account, region `{tenant.region}`"),
        ),
        footer="Server administrators always count as admins.",
    )


def _selects(tenant: Tenant) -> tuple[ActionRow, ...]:
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
    )

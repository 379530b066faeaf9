"""/join and /leave: members give themselves the main role, or take it off, without asking an admin.

The original bot did this to show or hide its main channel; here the main role is also what lets a member
use `/games`, `/start` and `/stop`. Role changes go through Discord's REST API with the bot token, so
they run as jobs (a 429 wait must not break the 3-second answer), and each names its command in the
server's audit log.
"""

from __future__ import annotations

from typing import Final

from chalicelib.commands.catalogue import jobs, registry
from chalicelib.commands.context import Context
from chalicelib.discord import Deferred, Job, Permission, Reply
from chalicelib.errors import DiscordApiError, Forbidden, NotFound, ValidationError

__all__ = ["join", "join_job", "leave", "leave_job"]

# Discord's JSON error codes (discord-protocol.md; "JSON Error Codes" in Discord's reference).
UNKNOWN_ROLE: Final = 10011
UNKNOWN_MEMBER: Final = 10007
MISSING_ACCESS: Final = 50001
MISSING_PERMISSIONS: Final = 50013
UNKNOWN_GUILD: Final = 10004

# What /join never hands out: a role that can administer, moderate or reshape the server. gangway
# gives the main role to anyone who asks, so a main role with one of these would give it to anyone.
DANGEROUS: Final = {
    Permission.ADMINISTRATOR: "Administrator",
    Permission.MANAGE_GUILD: "Manage Server",
    Permission.MANAGE_ROLES: "Manage Roles",
    Permission.MANAGE_CHANNELS: "Manage Channels",
    Permission.MANAGE_WEBHOOKS: "Manage Webhooks",
    Permission.MANAGE_MESSAGES: "Manage Messages",
    Permission.MANAGE_THREADS: "Manage Threads",
    Permission.MANAGE_NICKNAMES: "Manage Nicknames",
    Permission.MANAGE_GUILD_EXPRESSIONS: "Manage Expressions",
    Permission.MANAGE_EVENTS: "Manage Events",
    Permission.KICK_MEMBERS: "Kick Members",
    Permission.BAN_MEMBERS: "Ban Members",
    Permission.MODERATE_MEMBERS: "Timeout Members",
    Permission.MENTION_EVERYONE: "Mention @everyone",
    Permission.VIEW_AUDIT_LOG: "View Audit Log",
}


@registry.command()
def join(ctx: Context) -> Reply | Deferred:
    """Give yourself the main role, to start and stop games."""
    tenant = ctx.tenant
    if tenant is None or not tenant.main_role_ids:
        raise ValidationError(
            "This server has no main role for gangway yet, so there is nothing to join. An admin can "
            "choose one with `/setup`."
        )
    if ctx.interaction.role_ids & tenant.main_role_ids:
        return Reply(content="You already have the main role: `/help` shows what you can do.", ephemeral=True)
    return Deferred(Job("members.join"))


@jobs.job("members.join")
def join_job(ctx: Context) -> Reply:
    """Give the member the main role; with several main roles, the first (in Discord's id order)."""
    role = min(ctx.tenant.main_role_ids if ctx.tenant else (), key=int, default=None)
    if role is None:
        raise ValidationError(
            "This server no longer has a main role for gangway. An admin can set one in `/setup`."
        )
    _check_harmless(ctx, role)
    _change(ctx, role, add=True)
    return Reply(
        content=f"✅ You now have <@&{role}>. `/games` lists the game servers and `/start` starts one; "
        "`/leave` takes the role off again.",
        ephemeral=True,
    )


@registry.command()
def leave(ctx: Context) -> Reply | Deferred:
    """Take the main role off yourself (admin roles are never touched)."""
    tenant = ctx.tenant
    mine = ctx.interaction.role_ids & (tenant.main_role_ids if tenant else frozenset())
    if not mine:
        return Reply(
            content="You don't have gangway's main role, so there is nothing to leave.", ephemeral=True
        )
    return Deferred(Job("members.leave"))


@jobs.job("members.leave")
def leave_job(ctx: Context) -> Reply:
    """Take every main role the member had when they asked; admin roles stay."""
    mine = ctx.interaction.role_ids & (ctx.tenant.main_role_ids if ctx.tenant else frozenset())
    for role in sorted(mine, key=int):
        _change(ctx, role, add=False)
    roles = ", ".join(f"<@&{r}>" for r in sorted(mine, key=int))
    return Reply(
        content=f"✅ Removed {roles or 'the main role'} from you. `/join` gives it back.", ephemeral=True
    )


def _check_harmless(ctx: Context, role: str) -> None:
    """Refuse to hand out a role that carries a dangerous permission (read from Discord now: an admin
    may have changed the role since /setup).

    Raises:
        Forbidden: the role may administer or moderate.  NotFound: the role or the server is gone.
    """
    try:
        roles = ctx.lifecycle.rest.guild_roles(ctx.interaction.guild_id or "")
    except DiscordApiError as exc:
        if exc.code == UNKNOWN_GUILD:
            raise NotFound(
                "Discord says gangway is no longer in this server; an admin can invite it again."
            ) from exc
        raise
    found = next((r for r in roles if str(r.get("id")) == role), None)
    if found is None:
        raise NotFound(
            "gangway's main role no longer exists on this server. An admin can choose another in `/setup`."
        )
    try:
        bits = int(str(found.get("permissions", "0")))
    except ValueError:
        bits = int(Permission.ADMINISTRATOR)  # unreadable: assume the worst
    risky = [word for bit, word in DANGEROUS.items() if bits & bit]
    if risky:
        raise Forbidden(
            f"<@&{role}> can do more than start and stop games ({', '.join(risky)}), so gangway won't hand "
            "it to whoever asks. An admin can take those permissions off the role in Server Settings → "
            "Roles, or choose a plain role as the main role in `/setup`."
        )


def _change(ctx: Context, role: str, *, add: bool) -> None:
    """One role change through Discord, its refusals turned into what an admin must fix."""
    it = ctx.interaction
    rest = ctx.lifecycle.rest
    verb = "join" if add else "leave"
    try:
        if add:
            rest.add_member_role(it.guild_id or "", it.user_id, role, reason=f"/{verb} by {it.user_name}")
        else:
            rest.remove_member_role(it.guild_id or "", it.user_id, role, reason=f"/{verb} by {it.user_name}")
    except DiscordApiError as exc:
        if exc.code in (MISSING_PERMISSIONS, MISSING_ACCESS) or exc.status == 403:
            raise Forbidden(
                f"I'm not allowed to change <@&{role}>. An admin can fix it: in Server Settings → Roles, "
                "give gangway's role **Manage Roles** and drag it above that role."
            ) from exc
        if exc.code == UNKNOWN_ROLE:
            raise NotFound(
                "gangway's main role no longer exists on this server. "
                "An admin can choose another in `/setup`."
            ) from exc
        if exc.code == UNKNOWN_MEMBER:
            raise NotFound("Discord says you are no longer a member of this server.") from exc
        raise

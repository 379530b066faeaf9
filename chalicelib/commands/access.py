"""Player access commands: /addip, /addguestip, /ip and /ipsettings (issue 5).

Links are private things: every answer here is ephemeral (DESIGN.md §2), never a DM.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Annotated

from chalicelib.commands.catalogue import jobs, registry
from chalicelib.commands.context import Context
from chalicelib.commands.games_catalogue import join_notes
from chalicelib.discord import (
    ActionRow,
    Button,
    Deferred,
    Embed,
    EmbedField,
    Job,
    Level,
    LinkButton,
    Range,
    Reply,
)
from chalicelib.errors import ValidationError
from chalicelib.games import GameState

if TYPE_CHECKING:
    from chalicelib.access import Grant

__all__ = ["addguestip", "addip", "addip_push", "confirm_push", "ip", "ipsettings"]

log = logging.getLogger(__name__)


def _ts(epoch: int, style: str = "R") -> str:
    return f"<t:{int(epoch)}:{style}>"


def _button(label: str, url: str) -> tuple[ActionRow, ...]:
    return (ActionRow((LinkButton(label, url),)),)


def _need_site(ctx: Context) -> None:
    if not ctx.services.settings.site_url:
        raise ValidationError("The IPAuth page isn't configured for this deployment (SITE_URL is empty).")


@registry.command()
def addip(ctx: Context) -> Reply | Deferred:
    """Let your current IP address through the game servers' firewall (a personal link)."""
    _need_site(ctx)
    if _pushes(ctx):
        # The member's browser authorises itself (issue 7): a workflow pushes, waits and edits the reply.
        return Deferred(Job("addip.push"), ephemeral=True)
    return _link_reply(ctx)


def _pushes(ctx: Context) -> bool:
    """Whether the member turned on automatic authorisation; web push never breaks /addip."""
    try:
        return bool(ctx.services.push().wants_push(ctx.tenant_id, ctx.interaction.user_id))
    except Exception:
        log.exception("could not read the member's push subscriptions; answering with the link")
        return False


@jobs.job("addip.push")
def addip_push(ctx: Context) -> Reply:
    """Runs in the jobs Lambda: start the push workflow (idempotent on the interaction id)."""
    it = ctx.interaction
    timeout = ctx.services.settings.push_wait_seconds
    try:
        ctx.services.push().start(
            tenant_id=ctx.tenant_id,
            user_id=it.user_id,
            flow=it.id,
            application_id=it.application_id,
            interaction_token=it.token,
            timeout=timeout,
        )
    except Exception:
        log.exception("could not start the push flow; answering with the link")
        return _link_reply(ctx)
    return Reply(
        content=f"📲 Asking your browser to let your IP address in… This message changes when it answers "
        f"(within {timeout} seconds); if it doesn't, your personal link appears here instead.",
        ephemeral=True,
    )


def _link_reply(ctx: Context) -> Reply:
    now = int(time.time())
    access = ctx.services.access()
    link = access.member_link(ctx.tenant_id, ctx.interaction.user_id, now)
    days = access.grants.policy(ctx.tenant_id).member_days
    text = (
        "Open this **personal link** on the device you play on: it detects your IP address and lets it "
        f"through the firewall of this server's games for {days} days. If you did this before, it replaces "
        f"your previous address.\nThe link works until {_ts(link.claims.expires_at)}; don't share it "
        "(guests can get their own with `/addguestip`).\n" + f"<{link.url}>"
    )
    # A browser this link turns on for automatic authorisation pushes only once its member confirms it
    # here: someone else holding a leaked link cannot make theirs a way in.
    confirm = Button("Confirm automatic authorisation", f"push:confirm:{link.claims.nonce}")
    text += (
        "\nTurned on *automatic authorisation* on that page? Press **Confirm automatic authorisation** "
        "below, so that browser may let you in by itself."
    )
    rows = (ActionRow((LinkButton("Authorise my IP address", link.url), confirm)),)
    return Reply(content=text, components=rows, ephemeral=True)


@registry.route("push:confirm")
def confirm_push(ctx: Context, link: str = "") -> Reply:
    """The member confirms the browser(s) they turned on automatic authorisation in with this link."""
    if not re.fullmatch(r"[0-9a-f]{8,64}", link):
        raise ValidationError("That button is damaged; run `/addip` again.")
    count = ctx.services.push().confirm(ctx.tenant_id, ctx.interaction.user_id, link, int(time.time()))
    if not count:
        text = (
            "No browser has turned on automatic authorisation with that link yet (or it was already "
            "confirmed). Open the link, choose **Turn on**, then press this button again."
        )
    else:
        text = (
            f"✅ Confirmed {count} browser{'s' if count != 1 else ''}: next time you run `/addip`, "
            "it lets your IP address in by itself. `/revokeip` undoes it."
        )
    return Reply(content=text, ephemeral=True)


@registry.command(level=Level.MAIN)
def addguestip(ctx: Context, uses: Annotated[int, Range(1, 100)] | None = None) -> Reply:
    """Get a shareable link that lets guests outside Discord join for a few days.

    Args:
        uses: How many addresses the link may authorise (default 10)
    """
    _need_site(ctx)
    now = int(time.time())
    access = ctx.services.access()
    link = access.guest_link(ctx.tenant_id, now, max_uses=uses, issued_by=ctx.interaction.user_id)
    days = access.grants.policy(ctx.tenant_id).guest_days
    text = (
        "Share this **guest link** with people outside Discord. Each person who opens it gets their IP "
        f"address through the firewall of this server's games for {days} days.\n"
        f"It works for up to **{link.claims.max_uses}** addresses until {_ts(link.claims.expires_at, 'f')} "
        f"({_ts(link.claims.expires_at)}). Members should use `/addip` for long-term access. "
        f"This is link `{link.claims.nonce}`: admins can withdraw it, and every address it let in, "
        "with `/access`.\n"
        f"```\n{link.url}\n```"
    )
    return Reply(content=text, components=_button("Open the guest link", link.url), ephemeral=True)


@registry.command()
def ip(ctx: Context) -> Reply:
    """Show the running games' addresses and whether your IP address is let in."""
    now = int(time.time())
    running = [g for g in ctx.services.games.all(ctx.tenant_id) if g.state is GameState.RUNNING]
    if running:
        # A game records its instance's address once it runs (lifecycle start.attach), and its ports
        # come from /openport.
        lines = "\n".join(
            f"{GameState.RUNNING.emoji} **{g.name}** · running · "
            + (
                f"`{g.resources.address}`"
                if g.resources.address
                else "address not known yet (it appears once the server is up)"
            )
            + (f" · ports {', '.join(g.settings.ports)}" if g.settings.ports else "")
            + "".join(f" · {note}" for note in join_notes(g, g.resources.address))
            for g in running
        )
    else:
        lines = "No games are running right now. When one is, its address and DNS name show here."
    grant = ctx.services.access().member_grant(ctx.tenant_id, ctx.interaction.user_id, now)
    return Reply(
        embeds=(
            Embed(
                title="Game servers",
                description=lines,
                fields=(EmbedField(name="Your IP address", value=_your_grant(grant)),),
            ),
        ),
        ephemeral=True,
    )


def _your_grant(grant: Grant | None) -> str:
    if grant is None:
        return (
            "You haven't let an address in yet (or it expired). Use `/addip` on the device you play on; "
            "without it the game servers' firewall won't let you connect."
        )
    return (
        f"`{grant.address}` is let in until {_ts(grant.expires_at, 'f')} ({_ts(grant.expires_at)}). "
        "Playing from somewhere else? Use `/addip` there: it replaces this address."
    )


@registry.command(level=Level.ADMIN)
def ipsettings(
    ctx: Context,
    member_days: Annotated[int, Range(1, 365)] | None = None,
    guest_days: Annotated[int, Range(1, 30)] | None = None,
    # 500 keeps a full firewall sync of IPv6 addresses under the agent's 64 KiB message limit.
    max_grants: Annotated[int, Range(1, 500)] | None = None,
    guest_link_uses: Annotated[int, Range(1, 100)] | None = None,
) -> Reply:
    """Show or change how long IP access lasts and how many addresses are let in.

    Args:
        member_days: Days a member's address stays let in (default 90)
        guest_days: Days a guest's address stays let in, and a guest link works (default 3)
        max_grants: Most addresses let in at once; guests, then the oldest, make room (default 200)
        guest_link_uses: Default number of addresses one guest link may let in (default 10)
    """
    from chalicelib.access import AccessPolicy

    store = ctx.services.access().grants
    current = store.policy(ctx.tenant_id)
    changes = {
        k: v
        for k, v in {
            "member_days": member_days,
            "guest_days": guest_days,
            "max_grants": max_grants,
            "guest_link_uses": guest_link_uses,
        }.items()
        if v is not None
    }
    policy = AccessPolicy(**{**current.__dict__, **changes})
    if changes:
        store.set_policy(ctx.tenant_id, policy, int(time.time()))
    intro = "✅ Saved. Changes apply to addresses let in from now on." if changes else "Current settings."
    return Reply(
        embeds=(
            Embed(
                title="IP access settings",
                description=intro,
                fields=(
                    EmbedField(name="Members", value=f"{policy.member_days} days", inline=True),
                    EmbedField(name="Guests", value=f"{policy.guest_days} days", inline=True),
                    EmbedField(name="Most addresses", value=str(policy.max_grants), inline=True),
                    EmbedField(name="Guest link uses", value=str(policy.guest_link_uses), inline=True),
                ),
            ),
        ),
        ephemeral=True,
    )

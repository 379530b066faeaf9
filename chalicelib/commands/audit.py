"""/audit (admins): who used this server's AWS access, paged with buttons; /plan: usage and limits."""

from __future__ import annotations

import re

from chalicelib.commands.catalogue import registry
from chalicelib.commands.context import Context
from chalicelib.discord import ActionRow, Button, Embed, EmbedField, Level, Reply, Update
from chalicelib.errors import ValidationError
from chalicelib.games import GameState
from chalicelib.tenancy import AuditEntry, Usage, plan_named

__all__ = ["audit", "audit_page", "plan"]

PAGE = 10
_CURSOR = re.compile(r"\d{13}#[0-9a-f]{8}")


def _line(e: AuditEntry) -> str:
    who = f"<@{e.actor}>" if e.actor.isdigit() else e.actor
    outcome = "✅" if e.outcome == "ok" else f"❌ {e.outcome}"
    target = f" `{e.resource[:60]}`" if e.resource else ""
    return f"<t:{int(e.at)}:R> `{e.action}`{target} {outcome} · {who}"


def _page(ctx: Context, before: str | None) -> tuple[Embed, tuple[ActionRow, ...]]:
    if before is not None and not _CURSOR.fullmatch(before):
        raise ValidationError("That page link is damaged; run `/audit` again.")
    entries = ctx.services.audit.recent(ctx.tenant_id, limit=PAGE, before=before)
    text = "\n".join(_line(e) for e in entries) or "No AWS access has been recorded for this server yet."
    embed = Embed(
        title="Audit log: AWS access for this server",
        description=text,
        footer="Newest first. Every credential fetch and AWS call gangway makes for you is listed.",
    )
    buttons = [Button("Newest", "audit:page", disabled=before is None)]
    if len(entries) == PAGE:
        buttons.append(Button("Older →", f"audit:page:{entries[-1].entry_id}"))
    return embed, (ActionRow(tuple(buttons)),)


@registry.command(level=Level.ADMIN)
def audit(ctx: Context) -> Reply:
    """Show who used this server's AWS access, newest first."""
    embed, rows = _page(ctx, None)
    return Reply(embeds=(embed,), components=rows, ephemeral=True)


@registry.route("audit:page", level=Level.ADMIN)
def audit_page(ctx: Context, *cursor: str) -> Update:
    """Another page of the audit log, in place."""
    embed, rows = _page(ctx, cursor[0] if cursor else None)
    return Update(embeds=(embed,), components=rows)


@registry.command(level=Level.MAIN)
def plan(ctx: Context) -> Reply:
    """Show this server's plan: what it uses against its limits."""
    tenant = ctx.services.tenants.require(ctx.tenant_id)
    limits = plan_named(tenant.plan)
    games = ctx.services.games.all(ctx.tenant_id)
    usage = Usage(games=len(games), running=sum(g.state is not GameState.STOPPED for g in games))
    return Reply(
        embeds=(
            Embed(
                title=f"Plan: {limits.name}",
                fields=(
                    EmbedField(name="Games", value=f"{usage.games} of {limits.max_games}", inline=True),
                    EmbedField(
                        name="Running at once", value=f"{usage.running} of {limits.max_running}", inline=True
                    ),
                    EmbedField(name="Largest instance", value=f"`{limits.largest_instance}`", inline=True),
                    EmbedField(name="Disk per game", value=f"up to {limits.max_disk_gb} GB", inline=True),
                    EmbedField(
                        name="Snapshots kept",
                        value=f"newest {limits.snapshot_retention} per game",
                        inline=True,
                    ),
                ),
                footer="The operator of this gangway deployment sets plans.",
            ),
        ),
        ephemeral=True,
    )

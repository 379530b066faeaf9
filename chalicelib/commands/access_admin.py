"""Taking access back (issue 15): /access (admins: who is let in, by whom, until when, paged, with a
menu that revokes a member's address or a guest link, and a button that revokes everything) and
/revokeip (anyone: their own address).

Every revocation reaches the running games' firewalls at once (a numbered delta, chalicelib/access).
`custom_id`s carry the page (`access:page:<n>`) and the revoked owner comes as the select's value,
which is checked against its two shapes before anything changes.
"""

from __future__ import annotations

import math
import re
import time
from typing import TYPE_CHECKING, Final

from chalicelib.commands.catalogue import registry
from chalicelib.commands.context import Context
from chalicelib.discord import (
    ActionRow,
    Button,
    ButtonStyle,
    Embed,
    Level,
    Reply,
    SelectOption,
    StringSelect,
    Update,
)
from chalicelib.errors import ValidationError

if TYPE_CHECKING:
    from chalicelib.access import AccessEntry, Revoked

__all__ = ["access", "access_everything", "access_page", "access_revoke", "access_sure", "revokeip"]

PAGE: Final = 10
# A select value: a member (`user#<discord id>`) or a guest link (`link#<link id>`, tokens.py's nonce).
_OWNER: Final = re.compile(r"(user#\d{1,20})|(link#[A-Za-z0-9_-]{4,64})")


def _ts(epoch: int) -> str:
    return f"<t:{int(epoch)}:R>"


def _who(e: AccessEntry) -> str:
    owner = e.grant.owner
    if owner.startswith("user#"):
        return f"member <@{owner.removeprefix('user#')}>"
    made = f", made by <@{e.issued_by}>" if e.issued_by and e.issued_by.isdigit() else ""
    return f"guest of link `{owner.removeprefix('link#')}`{made}"


def _line(e: AccessEntry) -> str:
    return f"`{e.grant.address}` · {_who(e)} · until {_ts(e.grant.expires_at)}"


def _option(owner: str, entries: list[AccessEntry]) -> SelectOption:
    mine = [e for e in entries if e.grant.owner == owner]
    if owner.startswith("user#"):
        label = f"Member {owner.removeprefix('user#')}: " + ", ".join(e.grant.address for e in mine)
        return SelectOption(label=label, value=owner, description="Takes this member's address off")
    n = len(mine)
    return SelectOption(
        label=f"Guest link {owner.removeprefix('link#')} ({n} address{'es' if n != 1 else ''} on this page)",
        value=owner,
        description="Withdraws the link and every address it let in",
    )


def _page(ctx: Context, page: int, note: str = "") -> tuple[Embed, tuple[ActionRow, ...]]:
    entries = ctx.services.access().revocations.entries(ctx.tenant_id, int(time.time()))
    pages = max(1, math.ceil(len(entries) / PAGE))
    page = min(max(page, 0), pages - 1)
    shown = entries[page * PAGE : (page + 1) * PAGE]
    if shown:
        text = "\n".join(_line(e) for e in shown)
    else:
        text = "Nobody is let in right now. Members use `/addip`; guests open a link from `/addguestip`."
    embed = Embed(
        title="Who is let in",
        description=(f"{note}\n\n" if note else "") + text,
        footer=f"Page {page + 1} of {pages} · {len(entries)} address{'es' if len(entries) != 1 else ''}. "
        "Revoking takes effect on the running game servers at once.",
    )
    rows: list[ActionRow] = []
    owners = list(dict.fromkeys(e.grant.owner for e in shown))
    if owners:
        select = StringSelect(
            f"access:revoke:{page}",
            tuple(_option(o, shown) for o in owners),
            placeholder="Revoke a member's address or a guest link…",
        )
        rows.append(ActionRow((select,)))
    rows.append(
        ActionRow(
            (
                Button("← Previous", f"access:page:{page - 1}", disabled=page == 0),
                Button("Next →", f"access:page:{page + 1}", disabled=page >= pages - 1),
                Button("Revoke everything…", "access:sure", style=ButtonStyle.DANGER),
            )
        )
    )
    return embed, tuple(rows)


def _page_number(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 4:
        raise ValidationError("That button is damaged; run `/access` again.")
    return int(raw)


@registry.command(level=Level.ADMIN)
def access(ctx: Context) -> Reply:
    """List who is let through the game servers' firewall, by whom and until when; revoke access."""
    embed, rows = _page(ctx, 0)
    return Reply(embeds=(embed,), components=rows, ephemeral=True)


@registry.route("access:page", level=Level.ADMIN)
def access_page(ctx: Context, page: str = "0") -> Update:
    """Another page of the list, in place."""
    embed, rows = _page(ctx, _page_number(page))
    return Update(embeds=(embed,), components=rows)


def _said(done: Revoked) -> str:
    return _took(done) + _browsers(done)


def _browsers(done: Revoked) -> str:
    n = done.browsers
    if not n:
        return ""
    return f", and forgot {n} browser{'s' if n != 1 else ''} set to authorise by push"


def _took(done: Revoked) -> str:
    n = len(done.addresses)
    if not n:
        return "no address was let in by it any more"
    listed = ", ".join(f"`{a}`" for a in done.addresses[:10]) + (", …" if n > 10 else "")
    took = f"took **{n}** address{'es' if n != 1 else ''} off the firewall ({listed})"
    if not done.games_told:
        return took + "; no game is running, and none will let them in"
    games = ", ".join(f"**{g}**" for g in done.games_told)
    plural = "s" if len(done.games_told) != 1 else ""
    return took + f"; the running game{plural} ({games}) stopped letting them in at once"


@registry.route("access:revoke", level=Level.ADMIN)
def access_revoke(ctx: Context, page: str = "0") -> Update:
    """The admin picked a member or a guest link in the menu: revoke it, and redraw the list."""
    values = ctx.interaction.values
    match = _OWNER.fullmatch(values[0]) if len(values) == 1 else None
    if match is None:
        raise ValidationError("That menu choice is damaged; run `/access` again.")
    owner, now = match.group(0), int(time.time())
    revocations = ctx.services.access().revocations
    if owner.startswith("user#"):
        user = owner.removeprefix("user#")
        done = revocations.member(ctx.tenant_id, user, now)
        note = f"✅ Revoked <@{user}>: {_said(done)}. They can let an address in again with `/addip`."
    else:
        link = owner.removeprefix("link#")
        done = revocations.guest_link(ctx.tenant_id, link, now)
        note = f"✅ Withdrew guest link `{link}`: it lets nobody in any more, and {_said(done)}."
    embed, rows = _page(ctx, _page_number(page), note)
    return Update(embeds=(embed,), components=rows)


@registry.route("access:sure", level=Level.ADMIN)
def access_sure(ctx: Context) -> Update:
    """Ask before revoking everything."""
    entries = ctx.services.access().revocations.entries(ctx.tenant_id, int(time.time()))
    n = len(entries)
    embed = Embed(
        title="Revoke everything?",
        description=f"This takes all **{n}** address{'es' if n != 1 else ''} off the game servers' firewalls "
        "at once and withdraws every guest link. Members can let themselves in again with `/addip`; "
        "guests need a new link.",
    )
    buttons = (
        Button("Yes, revoke everything", "access:everything", style=ButtonStyle.DANGER),
        Button("Cancel", "access:page:0"),
    )
    return Update(embeds=(embed,), components=(ActionRow(buttons),))


@registry.route("access:everything", level=Level.ADMIN)
def access_everything(ctx: Context) -> Update:
    """Revoke every address and every guest link of this server."""
    done = ctx.services.access().revocations.everything(ctx.tenant_id, int(time.time()))
    links = len(done.links)
    note = (
        f"✅ Revoked everything: {_said(done)}, and withdrew {links} guest link{'s' if links != 1 else ''}."
    )
    embed, rows = _page(ctx, 0, note)
    return Update(embeds=(embed,), components=rows)


@registry.command()
def revokeip(ctx: Context) -> Reply:
    """Take your IP address off the game servers' firewall (e.g. on a shared or lost device)."""
    done = ctx.services.access().revocations.member(ctx.tenant_id, ctx.interaction.user_id, int(time.time()))
    if not done.addresses and not done.browsers:
        text = "You have no IP address let in here, so there was nothing to revoke. `/addip` lets one in."
    else:
        text = f"✅ Done: {_said(done)}. Use `/addip` on the device you play on to let an address in again."
    return Reply(content=text, ephemeral=True)

"""Admin tools for one game: /setdescription, /openport, /closeport, /files, /terminal and /extenddisk.

Private things (SFTP passwords, terminal links) are ephemeral replies, never DMs (DESIGN.md §2). What
talks to AWS or waits for the game's agent runs as a job in the jobs Lambda (the 3-second budget).
"""

from __future__ import annotations

import logging
import secrets
import time
import urllib.parse
from typing import Annotated

from chalicelib.commands.catalogue import GameName, jobs, registry
from chalicelib.commands.context import Context
from chalicelib.discord import Deferred, Embed, EmbedField, Job, Length, Level, Range, Reply
from chalicelib.errors import Conflict, UserError, ValidationError
from chalicelib.games import Game, GameState
from chalicelib.tenancy import plan_named

__all__ = [
    "closeport",
    "extenddisk",
    "extenddisk_online",
    "files",
    "files_login",
    "openport",
    "ports_group",
    "setdescription",
    "terminal",
    "terminal_login",
]

log = logging.getLogger(__name__)

SFTP_TTL_SECONDS = 900
# How long EBS may take to report the new size before the agent is asked to grow into it.
RESIZE_WAIT_SECONDS = 15
CLIENTS = (
    "Use an SFTP client: [WinSCP](<https://winscp.net/eng/download.php>) on Windows or "
    "[FileZilla](<https://filezilla-project.org/download.php?type=client>) anywhere. Paste the address, "
    "user name and password; the first time, check that the host key it shows is the one below. "
    "Your IP address must be let in (`/addip`)."
)

PortList = Annotated[str, Length(5, 200)]


def _running(ctx: Context, name: str, what: str) -> Game:
    game = ctx.game(name)
    if game.state is not GameState.RUNNING or not game.resources.instance_id:
        raise Conflict(
            f"**{game.name}** is {game.state.word}; {what} only while it is running. "
            f"Start it with `/start game:{game.name}`."
        )
    return game


@registry.command(level=Level.ADMIN)
def setdescription(ctx: Context, game: GameName, description: Annotated[str, Length(1, 100)]) -> Reply:
    """Change a game's description (in any state).

    Args:
        game: The game to describe
        description: What people see next to its name, e.g. Viking survival with friends
    """
    found = ctx.game(game)
    text = " ".join(description.split())
    if not text:
        raise ValidationError("Give a description with some words in it.")
    ctx.services.games.change(ctx.tenant_id, found.name, description=text)
    return Reply(content=f"✅ Updated the description of **{found.name}**: {text}", ephemeral=True)


@registry.command(level=Level.ADMIN)
def openport(ctx: Context, game: GameName, ports: PortList) -> Reply | Deferred:
    """Open firewall ports of a game server to the players let in (tcp/udp, 1024-65535).

    Args:
        game: The game whose ports to open
        ports: One or more, e.g. udp:2456-2458 tcp:27015
    """
    from chalicelib.lifecycle.tools import open_ports, parse_ports

    found = ctx.game(game)
    wanted = parse_ports(ports)
    after = open_ports(found, wanted)
    if list(found.settings.ports) == after:
        # Nothing to record; a game with a group has it checked again (it may have missed a change).
        return _with_group(ctx, found, f"Those ports were already open on **{found.name}**: {_list(after)}.")
    return _save_ports(ctx, found, after, f"Opened {', '.join(map(str, wanted))}", opening=True)


@registry.command(level=Level.ADMIN)
def closeport(ctx: Context, game: GameName, ports: PortList) -> Reply | Deferred:
    """Close firewall ports of a game server (tcp/udp, 1024-65535).

    Args:
        game: The game whose ports to close
        ports: One or more, e.g. udp:2456-2458 tcp:27015
    """
    from chalicelib.lifecycle.tools import close_ports, parse_ports

    found = ctx.game(game)
    wanted = parse_ports(ports)
    after = close_ports(found, wanted)
    if list(found.settings.ports) == after:
        raise ValidationError(
            f"None of those ports is open on **{found.name}**; its open ports: {_list(after)}."
        )
    return _save_ports(ctx, found, after, f"Closed {', '.join(map(str, wanted))}", opening=False)


def _list(ports: list[str]) -> str:
    return ", ".join(f"`{p}`" for p in ports) or "none"


def _save_ports(ctx: Context, game: Game, after: list[str], did: str, *, opening: bool) -> Reply | Deferred:
    # A lost race with another /openport or a transition is a Conflict: the admin runs it again.
    ctx.services.games.change(ctx.tenant_id, game.name, expected_version=game.version, ports=after)
    # Two filters: the game's security group (which ports the internet may reach at all) and the agent's
    # nftables firewall (which addresses get through). Both are changed by the `games.ports` job: it
    # talks to AWS and, on a running game, waits for the agent to filter the new list first.
    text = f"✅ {did} on **{game.name}**. Its ports now: {_list(after)}."
    if game.state is not GameState.RUNNING:
        text += " They apply when it next starts."
    return _with_group(ctx, game, text, opening=opening)


def _with_group(ctx: Context, game: Game, text: str, *, opening: bool = True) -> Reply | Deferred:
    """The reply, after the running game's firewall and its security group follow its port list (in a
    job: it waits for the agent and calls AWS)."""
    running = game.state is GameState.RUNNING and bool(game.resources.instance_id)
    if not game.resources.security_group_id and not running:  # still being created: CreateGame makes it
        return Reply(content=text, ephemeral=True)
    return Deferred(Job("games.ports", {"game": game.name, "text": text, "opening": opening}), ephemeral=True)


def _filter_running(ctx: Context, game: Game) -> tuple[str, bool]:
    """On a running game, have its agent filter the port list now (one full sync, confirmed).

    Returns what to tell the admin, and whether the agent confirmed.
    """
    from chalicelib.access.agent_events import firewall_ports
    from chalicelib.lifecycle.tools import AgentRefused, AgentSilent, ask_and_wait, tool_request_id

    request = ctx.services.access().full_sync(ctx.tenant_id, int(time.time()), ports=firewall_ports(game))
    try:
        reply = ask_and_wait(
            ctx.lifecycle,
            game,
            "firewall.sync",
            request.body,
            request_id=tool_request_id("firewall", ctx.interaction.id),
        ).body
    except (AgentSilent, AgentRefused) as exc:
        log.warning("%s/%s: the agent did not confirm the port list: %s", ctx.tenant_id, game.name, exc)
        return (
            f"⚠️ **{game.name}** is running, but its firewall didn't confirm the new port list ({exc}). "
            "Run this command again in a minute; the list applies in full at the next start.",
            False,
        )
    let_in = int(reply.get("v4", 0)) + int(reply.get("v6", 0))
    ports = _list(list(game.settings.ports))
    if let_in == 0:
        who = (
            "no IP address is let in yet, so nobody can connect to them: players use `/addip`, "
            "guests a link from `/addguestip`"
        )
    else:
        who = (
            f"they are open only to the **{let_in}** IP address{'es' if let_in != 1 else ''} let in "
            "(members with `/addip`, guests with a guest link); everyone else is refused"
        )
    return f"🔒 **{game.name}** is running: its firewall filters {ports} from now on, and {who}.", True


@jobs.job("games.ports")
def ports_group(ctx: Context, game: str, text: str, opening: bool = True) -> Reply:
    """Filter the running game's ports on its agent, then authorise and revoke the group's rules until
    they are the game's ports plus SFTP (idempotent). A port is opened in the group only once the agent
    filters it, so it is never reachable by everyone, not even for a moment."""
    found = ctx.game(game)
    if found.state is GameState.RUNNING and found.resources.instance_id:
        said, confirmed = _filter_running(ctx, found)
        text = f"{text}\n{said}"
        if opening and not confirmed:
            return Reply(
                content=f"{text}\nIts security group was left as it was: the new ports stay closed to "
                "everyone until its firewall filters them.",
                ephemeral=True,
            )
    group = found.resources.security_group_id
    if not group:
        return Reply(content=text, ephemeral=True)
    groups = ctx.services.gateways().security_groups(found, actor=ctx.interaction.user_id, purpose="ports")
    try:
        added, removed = groups.sync(group, found.settings.ports)
    except UserError:
        raise
    except Exception:
        log.warning("%s/%s: could not update its security group", ctx.tenant_id, game, exc_info=True)
        return Reply(
            content=f"{text}\n⚠️ Its security group `{group}` could not be updated in AWS "
            "just now; gangway brings it up to date at the next `/start`, or run this command again.",
            ephemeral=True,
        )
    changed = f" (+{len(added)} / -{len(removed)} rules)" if added or removed else ""
    return Reply(
        content=f"{text}\nIts security group `{group}` lets these ports in{changed}.",
        ephemeral=True,
    )


# -- /files ------------------------------------------------------------------------------------------


@registry.command(level=Level.ADMIN)
def files(ctx: Context, game: GameName) -> Deferred:
    """Get a one-time SFTP login to view and edit a running game server's files.

    Args:
        game: The running game whose files to open
    """
    found = _running(ctx, game, "its files can be opened")
    # The secret part of the agent request's id: it keys the sealed reply on the game's row and lives
    # only in the job's message on the queue.
    return Deferred(Job("games.files", {"game": found.name, "seal": secrets.token_hex(16)}), ephemeral=True)


@jobs.job("games.files", secret=True)
def files_login(ctx: Context, game: str, seal: str = "") -> Reply:
    """Ask the agent for one-time SFTP credentials and show them privately."""
    from chalicelib.lifecycle.tools import ask_and_wait, tool_request_id

    found = _running(ctx, game, "its files can be opened")
    body: dict[str, object] = {"ttl_s": SFTP_TTL_SECONDS}
    if found.resources.address:
        body["host"] = found.resources.address
    reply = ask_and_wait(
        ctx.lifecycle, found, "sftp.open", body, request_id=tool_request_id("sftp", ctx.interaction.id, seal)
    ).body
    uri, user, password = str(reply["uri"]), str(reply["username"]), str(reply["password"])
    expires = int(float(reply["expires_at"]))
    parts = urllib.parse.urlsplit(uri)
    login = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
    with_login = f"sftp://{login}@{parts.netloc.split('@')[-1]}/"
    return Reply(
        embeds=(
            Embed(
                title=f"🔑 Files of {found.name}",
                description=f"A one-time login: it works for one connection, until <t:{expires}:t> "
                f"(<t:{expires}:R>).\n{CLIENTS}",
                fields=(
                    EmbedField(name="Address", value=f"`{uri}`"),
                    EmbedField(name="User name", value=f"`{user}`", inline=True),
                    EmbedField(name="Password", value=f"`{password}`", inline=True),
                    EmbedField(name="Host key (SHA256)", value=f"`{reply['host_key_sha256']}`"),
                    EmbedField(name="One-click (WinSCP)", value=f"`{with_login}`"),
                ),
            ),
        ),
        ephemeral=True,
    )


# -- /terminal ---------------------------------------------------------------------------------------


@registry.command(level=Level.ADMIN)
def terminal(ctx: Context, game: GameName) -> Deferred:
    """Get a short-lived link to a terminal on a running game server (AWS Session Manager).

    Args:
        game: The running game to open a terminal on
    """
    found = _running(ctx, game, "a terminal can be opened")
    return Deferred(Job("games.terminal", {"game": found.name}), ephemeral=True)


@jobs.job("games.terminal", secret=True)
def terminal_login(ctx: Context, game: str) -> Reply:
    """Assume the terminal role scoped to this instance and show its console link privately."""
    found = _running(ctx, game, "a terminal can be opened")
    tenant = ctx.services.tenants.require(ctx.tenant_id)
    it = ctx.interaction
    terminal = ctx.services.gateways().terminal(tenant, actor=it.user_id)
    link = terminal.link(found.resources.instance_id or "", user_id=it.user_id, now=int(time.time()))
    return Reply(
        embeds=(
            Embed(
                title=f"🖥️ Terminal on {found.name}",
                description=f"[Open a terminal on **{found.name}**]({link.url})\n"
                f"Open it before <t:{link.use_before}:t> (<t:{link.use_before}:R>); the session ends by "
                f"<t:{link.session_ends}:t>. It can only open a shell on this server. Don't share it: "
                "whoever opens it gets that shell.",
            ),
        ),
        ephemeral=True,
    )


# -- /extenddisk -------------------------------------------------------------------------------------


@registry.command(level=Level.ADMIN)
def extenddisk(ctx: Context, game: GameName, size_gb: Annotated[int, Range(1, 16384)]) -> Reply | Deferred:
    """Grow a game's disk to a bigger size in GB (it can't shrink again).

    Args:
        game: The game whose disk to grow
        size_gb: The new size in GB, larger than now
    """
    found = ctx.game(game)
    if found.state not in (GameState.STOPPED, GameState.RUNNING):
        raise Conflict(
            f"**{found.name}** is {found.state.word}; its disk can change once it is stopped or running."
        )
    plan_named(ctx.services.tenants.require(ctx.tenant_id).plan).check_disk(size_gb)
    # A running game may ask for its current size again: that only grows the filesystem into it.
    if size_gb < found.settings.disk_gb or (
        size_gb == found.settings.disk_gb and found.state is GameState.STOPPED
    ):
        raise ValidationError(
            f"**{found.name}**'s disk is already {found.settings.disk_gb} GB; ask for more than that "
            "(disks can't shrink)."
        )
    if found.state is GameState.STOPPED:
        ctx.services.games.change(
            ctx.tenant_id,
            found.name,
            expected_version=found.version,
            states=frozenset({GameState.STOPPED}),
            disk_gb=size_gb,
        )
        return Reply(
            content=f"✅ **{found.name}** gets a {size_gb} GB disk (was {found.settings.disk_gb} GB) from "
            "its next start, made from its latest snapshot. Once it runs, use "
            f"`/extenddisk game:{found.name} size_gb:{size_gb}` to let the server use the new space.",
            ephemeral=True,
        )
    return Deferred(Job("games.extenddisk", {"game": found.name, "size_gb": size_gb}), ephemeral=True)


@jobs.job("games.extenddisk")
def extenddisk_online(ctx: Context, game: str, size_gb: int) -> Reply:
    """ModifyVolume on the running game's data volume, wait for EBS, then the agent grows the filesystem."""
    from chalicelib.lifecycle.tools import AgentRefused, AgentSilent, ask_and_wait, tool_request_id

    found = _running(ctx, game, "its disk can be grown online")
    ec2 = ctx.services.gateways().ec2(found, actor=ctx.interaction.user_id, purpose="extenddisk")
    volume = found.resources.volume_id or ""
    before = ec2.volume_size(volume) or found.settings.disk_gb
    if size_gb < before:
        raise ValidationError(f"**{found.name}**'s disk is already {before} GB; disks can't shrink.")
    if size_gb > before:
        ec2.grow_volume(volume, size_gb)
    # The next start makes its volume from a snapshot of this one: it must be at least this size.
    ctx.services.games.change(ctx.tenant_id, found.name, disk_gb=size_gb)
    deadline = time.monotonic() + RESIZE_WAIT_SECONDS
    while (ec2.volume_size(volume) or 0) < size_gb:
        if time.monotonic() > deadline:
            return Reply(
                content=f"⏳ AWS is still growing **{found.name}**'s disk to {size_gb} GB. In a few "
                f"minutes, run `/extenddisk game:{found.name} size_gb:{size_gb}` again to let the server "
                "use the space.",
                ephemeral=True,
            )
        time.sleep(1)
    grown = f"**{found.name}**'s disk is now {size_gb} GB" + (
        f" (was {before} GB)" if size_gb > before else ""
    )
    try:
        reply = ask_and_wait(
            ctx.lifecycle, found, "disk.extend", {}, request_id=tool_request_id("disk", ctx.interaction.id)
        ).body
    except (AgentSilent, AgentRefused) as exc:
        return Reply(
            content=f"⚠️ {grown}, but the server has not grown its filesystem into it: {exc.message} Run "
            f"`/extenddisk game:{found.name} size_gb:{size_gb}` again to retry.",
            ephemeral=True,
        )
    gib = 1024**3
    size_from = int(reply.get("size_before_bytes") or 0) / gib
    size_to = int(reply.get("size_after_bytes") or 0) / gib
    return Reply(
        content=f"✅ {grown}. The server grew `{reply.get('device')}` ({reply.get('filesystem')}) from "
        f"{size_from:.1f} to {size_to:.1f} GiB: the new space is usable now.",
        ephemeral=True,
    )

"""The link a server admin opens to add gangway to their Discord server, with only the permissions it uses.

Slash commands and their replies need no bot permission at all; the bot token is used for `/join` and
`/leave` (Manage Roles) and for posting a reply to the channel when its interaction token has expired
(View Channel, Send Messages, Embed Links). Nothing else is asked for, and never Administrator.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlencode

from chalicelib.discord.payloads import Permission

__all__ = ["BOT_PERMISSIONS", "invite_url"]

BOT_PERMISSIONS: Final = (
    Permission.VIEW_CHANNEL | Permission.SEND_MESSAGES | Permission.EMBED_LINKS | Permission.MANAGE_ROLES
)


def invite_url(application_id: str, guild_id: str | None = None) -> str:
    """Discord's OAuth2 URL adding the bot with slash commands (optionally preselecting a server)."""
    if not application_id.isdigit() or (guild_id is not None and not guild_id.isdigit()):
        raise ValueError("application and server ids are Discord snowflakes (digits only)")
    query = {
        "client_id": application_id,
        "scope": "bot applications.commands",
        "permissions": str(int(BOT_PERMISSIONS)),
    }
    if guild_id:
        query |= {"guild_id": guild_id, "disable_guild_select": "true"}
    return "https://discord.com/oauth2/authorize?" + urlencode(query)

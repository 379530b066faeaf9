"""One error tree for the whole app; only the renderers turn it into words or HTTP statuses.

    BotError
    ├── UserError            the caller can fix it; shown to them as "⚠️ <message>" (ephemeral)
    │   ├── ValidationError  bad option values, names, ports, sizes
    │   ├── NotFound         no such game / command / component
    │   ├── Conflict         the thing changed under us (version, duplicate, wrong state)
    │   ├── Forbidden        the caller's roles do not allow it
    │   ├── NotSetUp         the guild has not run /setup yet
    │   └── AccountUnreachable  the tenant's AWS role cannot be assumed (they can fix it)
    ├── InfraError           our fault or AWS's; shown as a generic apology, details only in logs
    │   └── DiscordApiError  Discord's REST API answered with an error
    └── RequestError         the HTTP request itself is unacceptable; rendered as a status code
        ├── BadRequest       400: signed but not JSON, or not an interaction
        ├── Unauthorized     401: missing, malformed or wrong signature, stale timestamp
        ├── LinkRejected     403: an IPAuth link that is invalid, expired or used up (`code` says which)
        ├── PayloadTooLarge  413: body over the endpoint's limit
        └── TooManyRequests  429: too many tries for one link or from one address

Domain code raises; the interaction endpoint and the job runner render (discord/replies.py); the
IPAuth API renders RequestErrors as JSON (access/api.py).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccountUnreachable",
    "BadRequest",
    "BotError",
    "Conflict",
    "DiscordApiError",
    "Forbidden",
    "InfraError",
    "LinkRejected",
    "NotFound",
    "NotSetUp",
    "PayloadTooLarge",
    "RequestError",
    "TooManyRequests",
    "Unauthorized",
    "UserError",
    "ValidationError",
]


class BotError(Exception):
    """Root of every error gangway raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UserError(BotError):
    """Something the caller can fix; its message is shown to them."""


class ValidationError(UserError):
    """An option value, name or size is not acceptable."""


class NotFound(UserError):
    """The named thing does not exist (for this tenant)."""


class Conflict(UserError):
    """The thing changed under us or is in the wrong state."""


class Forbidden(UserError):
    """The caller's roles or permissions do not allow this."""


class NotSetUp(UserError):
    """The guild has no tenant yet."""


class AccountUnreachable(UserError):
    """The tenant's own AWS account refused our role assumption; an admin must fix the role."""


class InfraError(BotError):
    """Our fault or AWS's; the user sees a generic apology."""


class DiscordApiError(InfraError):
    """Discord's REST API answered with an error status."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"Discord API {status} (code {code}): {message}")
        self.status = status
        self.code = code


class RequestError(BotError):
    """The HTTP request cannot be processed at all; carries its status code."""

    STATUS: ClassVar[int] = 400


class BadRequest(RequestError):
    """Signed, but not JSON or not an interaction."""

    STATUS = 400


class Unauthorized(RequestError):
    """The signature check failed; Discord requires 401 (discord-protocol.md §1)."""

    STATUS = 401


class PayloadTooLarge(RequestError):
    """The body is larger than any interaction Discord sends."""

    STATUS = 413


class LinkRejected(RequestError):
    """An IPAuth link that cannot be used; `code` is "invalid", "expired" or "used_up" (the page's state)."""

    STATUS = 403

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TooManyRequests(RequestError):
    """Too many tries for one link or from one address; retry after `retry_after` seconds."""

    STATUS = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

"""/terminal's console links; chalicelib/instances/terminal.py holds them now (`TenantGateways.terminal`).

Compatibility shim: removed when the lifecycle re-cut lands.
"""

from __future__ import annotations

from chalicelib.instances.terminal import (
    SESSION_SECONDS,
    SIGNIN_TOKEN_SECONDS,
    TERMINAL_ROLE_NAME,
    Federation,
    TerminalLink,
    session_policy,
    terminal_link,
)

__all__ = [
    "SESSION_SECONDS",
    "SIGNIN_TOKEN_SECONDS",
    "TERMINAL_ROLE_NAME",
    "Federation",
    "TerminalLink",
    "session_policy",
    "terminal_link",
]

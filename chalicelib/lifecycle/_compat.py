"""The gateway factory the old `lc`-taking calls (identity.py, dns.py, game_logs.py) delegate to.

Compatibility shim: removed when the lifecycle re-cut lands.
"""

from __future__ import annotations

from chalicelib.config import Settings
from chalicelib.instances import TenantGateways
from chalicelib.lifecycle.deps import Lifecycle

__all__ = ["gateways"]


def gateways(lc: Lifecycle, settings: Settings) -> TenantGateways:
    """`TenantGateways` over the lifecycle's broker and tenants; the shims never make terminal links."""
    return TenantGateways(lc.broker, lc.tenants, settings, hosting_account=_no_terminal_links)


def _no_terminal_links() -> str:
    raise RuntimeError("the lifecycle's compatibility shims make no terminal links")

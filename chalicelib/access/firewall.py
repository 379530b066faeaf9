"""Keeping game firewalls equal to a tenant's grants: a delta on every change, the full set on connect.

A change is published to each RUNNING game's agent (`gangway/{tenant}/{game}/cmd`, DESIGN.md §4). A
failed publish is logged and does not undo the change: the agent receives the full set whenever it
(re)connects, and its nftables entries carry their own timeouts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from chalicelib.access.store import Grant
from chalicelib.agents import AgentRequest, FirewallGrant, Outgoing, Publisher, cmd_topic, firewall_sync
from chalicelib.errors import InfraError
from chalicelib.games import GameState, GameStore

__all__ = ["FirewallSync", "full_sync_request"]

log = logging.getLogger(__name__)


def _wire(grants: Iterable[Grant]) -> list[FirewallGrant]:
    return [FirewallGrant(g.address, g.expires_at) for g in sorted(grants, key=lambda g: g.address)]


def full_sync_request(live: Iterable[Grant]) -> AgentRequest:
    """The `firewall.sync` request in `full` mode carrying every live grant."""
    return firewall_sync("full", _wire(live))


class FirewallSync:
    """Publishes grant changes to the tenant's running agents."""

    def __init__(self, publisher: Callable[[], Publisher], games: GameStore) -> None:
        self._publisher = publisher  # built on first publish: most requests change nothing
        self._games = games

    def running_games(self, tenant_id: str) -> list[str]:
        return [g.name for g in self._games.all(tenant_id) if g.state is GameState.RUNNING]

    def changed(
        self,
        tenant_id: str,
        grants: Sequence[Grant],
        revoke: Sequence[str] = (),
        *,
        running: Sequence[str] | None = None,
    ) -> list[str]:
        """Send a delta (added or refreshed `grants`, `revoke`d addresses) to the `running` games (read
        from the games table when not given); returns the games told."""
        if not grants and not revoke:
            return []
        games = self.running_games(tenant_id) if running is None else running
        return self._send(tenant_id, games, firewall_sync("delta", _wire(grants), revoke))

    def full(self, tenant_id: str, game: str, live: Iterable[Grant]) -> None:
        """Send one agent the complete set (when it connects)."""
        self._send(tenant_id, [game], full_sync_request(live))

    def _send(self, tenant_id: str, games: Sequence[str], request: AgentRequest) -> list[str]:
        if not games:
            return []
        try:
            payload = request.to_json()
            self._publisher().publish([Outgoing(cmd_topic(tenant_id, name), payload) for name in games])
        except (InfraError, ValueError) as exc:
            log.warning("firewall sync for tenant %s not delivered: %s", tenant_id, exc)
            return []
        return list(games)

"""Keeping game firewalls equal to a tenant's grants: a numbered delta on every change, the full set
when an agent connects, asks for it, or reports a version that is not the current one.

A change takes the next version of the tenant's grant set (agent/contract/README.md, "Firewall
versions") and is published to each RUNNING game's agent (`gangway/{tenant}/{game}/cmd`, DESIGN.md §4).
A failed or lost publish does not undo the change: the agent sees the gap at the next delta and asks for
the full set (`firewall.resync`), and its heartbeat's version tells the backend at the latest a minute
later; its nftables entries carry their own timeouts meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from chalicelib.access.store import Grant, GrantStore
from chalicelib.agents import (
    AgentRequest,
    FirewallGrant,
    FirewallPorts,
    Outgoing,
    Publisher,
    cmd_topic,
    firewall_sync,
)
from chalicelib.errors import InfraError
from chalicelib.games import GameState, GameStore

__all__ = ["FirewallSync", "full_sync_request"]

log = logging.getLogger(__name__)


def _wire(grants: Iterable[Grant]) -> list[FirewallGrant]:
    return [FirewallGrant(g.address, g.expires_at) for g in sorted(grants, key=lambda g: g.address)]


def full_sync_request(
    live: Iterable[Grant], *, version: int | None = None, ports: FirewallPorts | None = None
) -> AgentRequest:
    """The `firewall.sync` request in `full` mode carrying every live grant (and the game's ports)."""
    return firewall_sync("full", _wire(live), version=version, ports=ports)


class FirewallSync:
    """Numbers grant changes and publishes them to the tenant's running agents."""

    def __init__(self, publisher: Callable[[], Publisher], games: GameStore, grants: GrantStore) -> None:
        self._publisher = publisher  # built on first publish: most requests change nothing
        self._games = games
        self._grants = grants

    def running_games(self, tenant_id: str) -> list[str]:
        return [g.name for g in self._games.all(tenant_id) if g.state is GameState.RUNNING]

    def changed(
        self,
        tenant_id: str,
        grants: Sequence[Grant],
        revoke: Sequence[str] = (),
        *,
        now: int,
        running: Sequence[str] | None = None,
    ) -> list[str]:
        """Number a change (added or refreshed `grants`, `revoke`d addresses) and send it as a delta to
        the `running` games (read from the games table when not given); returns the games told.

        The version is taken even when no game runs: an agent starting meanwhile then sees the gap.
        """
        if not grants and not revoke:
            return []
        version = self._grants.next_version(tenant_id, now)
        games = self.running_games(tenant_id) if running is None else running
        request = firewall_sync("delta", _wire(grants), revoke, version=version)
        return self._send(tenant_id, games, request)

    def full(self, tenant_id: str, game: str, now: int, ports: FirewallPorts | None = None) -> AgentRequest:
        """Send one agent the complete set at the current version; returns the request sent."""
        # The version is read before the grants: the set sent is at least as new as its number.
        version = self._grants.version(tenant_id)
        request = full_sync_request(self._grants.live(tenant_id, now), version=version, ports=ports)
        self._send(tenant_id, [game], request)
        return request

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

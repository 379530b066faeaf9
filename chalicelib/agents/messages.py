"""The backend's side of the agent contract (agent/contract/README.md): topics and request envelopes.

Only the shapes live here; `publisher.py` moves them. The contract's example files pin these shapes in
both test suites.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "MAX_MESSAGE_BYTES",
    "AgentRequest",
    "FirewallGrant",
    "FirewallPorts",
    "cmd_topic",
    "evt_topic",
    "firewall_sync",
]

# The agent refuses anything larger (agent/contract/README.md, "Envelope").
MAX_MESSAGE_BYTES: Final = 64 * 1024


def cmd_topic(tenant_id: str, game: str) -> str:
    """Backend → agent requests for one game."""
    return f"gangway/{tenant_id}/{game}/cmd"


def evt_topic(tenant_id: str, game: str) -> str:
    """Agent → backend replies and events for one game."""
    return f"gangway/{tenant_id}/{game}/evt"


@dataclass(frozen=True)
class AgentRequest:
    """One request envelope: `{"id", "type", "body"}`; the agent's reply carries the same id."""

    type: str
    body: Mapping[str, Any]
    id: str = ""

    def to_json(self) -> bytes:
        """The wire bytes (UTF-8 JSON, a fresh UUID id unless one was given).

        Raises:
            ValueError: larger than the agent accepts.
        """
        raw = json.dumps(
            {"id": self.id or uuid.uuid4().hex, "type": self.type, "body": dict(self.body)},
            separators=(",", ":"),
        ).encode()
        if len(raw) > MAX_MESSAGE_BYTES:
            raise ValueError(
                f"{self.type} request is {len(raw)} bytes; the agent accepts {MAX_MESSAGE_BYTES}"
            )
        return raw


@dataclass(frozen=True)
class FirewallGrant:
    """One address the game firewall lets in until `expires_at` (epoch seconds)."""

    address: str
    expires_at: int


@dataclass(frozen=True)
class FirewallPorts:
    """The game's ports the agent's chain filters (port numbers; the agent adds its SFTP port)."""

    tcp: tuple[int, ...]
    udp: tuple[int, ...]


def firewall_sync(
    mode: Literal["full", "delta"],
    grants: Iterable[FirewallGrant],
    revoke: Iterable[str] = (),
    *,
    version: int | None = None,
    ports: FirewallPorts | None = None,
) -> AgentRequest:
    """A `firewall.sync` request: `full` replaces the agent's set (and its ports, when given), `delta`
    adds/refreshes and revokes; `version` numbers the tenant's grant set (agent/contract/README.md)."""
    body: dict[str, Any] = {
        "mode": mode,
        "grants": [{"address": g.address, "expires_at": int(g.expires_at)} for g in grants],
    }
    revoked = sorted(set(revoke))
    if mode == "full" and revoked:
        raise ValueError("a full sync lists the complete set; it has no revoke list")
    if mode == "delta":
        body["revoke"] = revoked
        if ports is not None:
            raise ValueError("ports travel with a full sync only")
    if version is not None:
        body["version"] = version
    if ports is not None:
        body["ports"] = {"tcp": sorted(set(ports.tcp)), "udp": sorted(set(ports.udp))}
    return AgentRequest("firewall.sync", body)

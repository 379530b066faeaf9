"""Player access's part in the agent protocol: an agent that connects receives the full firewall set.

The agent keeps its grants in nftables sets with timeouts and in its state file, but while it was away
(a new instance, a restart, a broker outage) deltas may have been missed; the full set on `ready` makes
its firewall equal to the tenant's live grants again.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from chalicelib.agents.events import AGENT_EVENTS, AgentEvent

if TYPE_CHECKING:
    from chalicelib.lifecycle.collaborators import Lifecycle

__all__ = ["send_firewall_on_ready"]

log = logging.getLogger(__name__)


@AGENT_EVENTS.on("ready")
def send_firewall_on_ready(event: AgentEvent, lc: Lifecycle) -> None:
    """Publish the full grant set to the agent that announced itself, if its game exists."""
    # The topic is the agent's identity, but a game deleted while its instance was still up (or a
    # leftover agent) must not be answered: it would only be told another tenant-wide set.
    if lc.games.get(event.tenant_id, event.game) is None:
        log.warning("ready from agent %s/%s: no such game; ignored", event.tenant_id, event.game)
        return
    lc.access().send_full_sync(event.tenant_id, event.game, int(time.time()))

"""Player access's part in the agent protocol: keeping each agent's firewall at the current grant set.

The agent keeps its grants in nftables sets with timeouts and in its state file, but while it was away
(a new instance, a restart, a broker outage) or when a delta was lost, it misses changes. It gets the
full set (with its game's ports) when it announces itself (`ready`), when it asks (`firewall.resync`: it
saw a gap in the versions, or its link reconnected), and when its heartbeat reports a version that is not
the tenant's current one (agent/contract/README.md, "Firewall versions").
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from chalicelib.agents import FirewallPorts
from chalicelib.agents.events import AGENT_EVENTS, AgentEvent
from chalicelib.games import Game, GameState

if TYPE_CHECKING:
    from chalicelib.lifecycle.collaborators import Lifecycle

__all__ = ["correct_stale_firewall", "firewall_ports", "resend_firewall_on_request", "send_firewall_on_ready"]

log = logging.getLogger(__name__)


def firewall_ports(game: Game) -> FirewallPorts:
    """The ports the game's chain filters: its port list (/openport, /closeport) as port numbers."""
    from chalicelib.lifecycle.tools import port_numbers  # the lifecycle's parser of the stored list

    tcp, udp = port_numbers(game.settings.ports)
    return FirewallPorts(tcp, udp)


def _send_full(event: AgentEvent, lc: Lifecycle, why: str) -> None:
    # The topic is the agent's identity, but a game deleted while its instance was still up (or a
    # leftover agent) must not be answered: it would only be told another tenant-wide set.
    game = lc.games.get(event.tenant_id, event.game)
    if game is None:
        log.warning("%s from agent %s/%s: no such game; ignored", why, event.tenant_id, event.game)
        return
    lc.access().send_full_sync(event.tenant_id, event.game, int(time.time()), firewall_ports(game))


@AGENT_EVENTS.on("ready")
def send_firewall_on_ready(event: AgentEvent, lc: Lifecycle) -> None:
    """Publish the full grant set to the agent that announced itself, if its game exists."""
    _send_full(event, lc, "ready")


@AGENT_EVENTS.on("firewall.resync")
def resend_firewall_on_request(event: AgentEvent, lc: Lifecycle) -> None:
    """The agent skipped a delta (a gap) or reconnected: send it the full set."""
    reason = event.body.get("reason")
    log.info("%s/%s asks for the full firewall set (%.20r)", event.tenant_id, event.game, reason)
    _send_full(event, lc, "firewall.resync")


@AGENT_EVENTS.on("heartbeat")
def correct_stale_firewall(event: AgentEvent, lc: Lifecycle) -> None:
    """A running game's agent whose firewall holds another version than the current one gets the full set."""
    held = event.body.get("firewall_version")
    if held is None or isinstance(held, bool) or not isinstance(held, int):
        return  # the firewall is disabled (or an agent older than versions): nothing to compare
    current = lc.access().grants.version(event.tenant_id)
    if held == current:
        return
    game = lc.games.get(event.tenant_id, event.game)
    if game is None or game.state is not GameState.RUNNING:
        return
    log.warning(
        "%s/%s: firewall at version %d, the grants at %d; sending the full set",
        event.tenant_id,
        event.game,
        held,
        current,
    )
    lc.access().send_full_sync(event.tenant_id, event.game, int(time.time()), firewall_ports(game))

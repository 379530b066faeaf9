"""The backend side of the agent protocol: topics, request envelopes, how they are published, and the
routing of what agents send back."""

from __future__ import annotations

from chalicelib.agents.events import (
    AGENT_EVENTS,
    AgentEvent,
    AgentEventRouter,
    BoundAgentEvents,
    parse_agent_event,
)
from chalicelib.agents.intake import AgentIntake, BatchResponse, IntakeRecord, tenant_of
from chalicelib.agents.messages import (
    MAX_MESSAGE_BYTES,
    AgentRequest,
    FirewallGrant,
    FirewallPorts,
    cmd_topic,
    evt_topic,
    firewall_sync,
)
from chalicelib.agents.publisher import IotDataPublisher, MqttPublisher, Outgoing, Publisher

__all__ = [
    "AGENT_EVENTS",
    "MAX_MESSAGE_BYTES",
    "AgentEvent",
    "AgentEventRouter",
    "AgentIntake",
    "AgentRequest",
    "BatchResponse",
    "BoundAgentEvents",
    "FirewallGrant",
    "FirewallPorts",
    "IntakeRecord",
    "IotDataPublisher",
    "MqttPublisher",
    "Outgoing",
    "Publisher",
    "cmd_topic",
    "evt_topic",
    "firewall_sync",
    "parse_agent_event",
    "tenant_of",
]

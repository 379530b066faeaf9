"""The backend side of the agent protocol: topics, request envelopes and how they are published."""

from __future__ import annotations

from chalicelib.agents.messages import (
    MAX_MESSAGE_BYTES,
    AgentRequest,
    FirewallGrant,
    cmd_topic,
    evt_topic,
    firewall_sync,
)
from chalicelib.agents.publisher import IotDataPublisher, MqttPublisher, Outgoing, Publisher

__all__ = [
    "MAX_MESSAGE_BYTES",
    "AgentRequest",
    "FirewallGrant",
    "IotDataPublisher",
    "MqttPublisher",
    "Outgoing",
    "Publisher",
    "cmd_topic",
    "evt_topic",
    "firewall_sync",
]

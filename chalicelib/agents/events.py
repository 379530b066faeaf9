"""Agent events and replies arriving from the agent-events queue (IoT rule → SQS in AWS, the local
stack's MQTT bridge locally), routed to the handlers domains declare.

A message is the agent's `evt` envelope plus the `topic` it was published on (the IoT rule adds it:
`SELECT *, topic() AS topic FROM 'gangway/+/+/evt'`). The tenant and game come from the topic only:
an agent can publish only on its own topic (IoT policy / broker ACL), so the topic is the identity,
while anything inside the body is the agent's word.

Tracing: the agent knows nothing of traces (its `ready` comes unasked, when it connects). An event
continues the trace of the workflow step waiting on its game, which the step stored with its token
(`GameStore.wait`), so a `/start` stays one trace across the agent's `ready`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

from chalicelib.agents.contract import check_body
from chalicelib.tracing import NullTracer, Tracer

if TYPE_CHECKING:
    from chalicelib.lifecycle.collaborators import Lifecycle

__all__ = [
    "AGENT_EVENTS",
    "AgentEvent",
    "AgentEventRouter",
    "BoundAgentEvents",
    "parse_agent_event",
    "topic_names",
]

log = logging.getLogger(__name__)

MAX_EVENT_BYTES: Final = 64 * 1024
_TOPIC: Final = re.compile(r"gangway/([0-9]{1,20})/([a-z0-9][a-z0-9-]{0,30}[a-z0-9])/evt")
_TYPE: Final = re.compile(r"[a-z][a-z0-9_.]{0,63}")


@dataclass(frozen=True)
class AgentEvent:
    """One event or reply from the agent of (tenant, game)."""

    tenant_id: str
    game: str
    id: str | None
    type: str
    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_reply(self) -> bool:
        return self.type.endswith(".reply") or self.type == "error"


def _no_constant(name: str) -> float:
    raise ValueError(f"agent event has {name}, which JSON does not allow")


def topic_names(topic: object) -> tuple[str, str] | None:
    """(tenant, game) of an `evt` topic, or None when it is not one."""
    found = _TOPIC.fullmatch(topic) if isinstance(topic, str) else None
    return (found.group(1), found.group(2)) if found else None


def parse_agent_event(body: str) -> AgentEvent:
    """Validate a queue message: the envelope, the topic, and the body against the contract.

    Raises:
        ValueError: not an agent event (malformed, oversized, from a topic that names no game, or a
            body that breaks the contract: `agents/contract.py`).
    """
    if len(body.encode()) > MAX_EVENT_BYTES + 512:
        raise ValueError("agent event too large")
    try:
        raw = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("agent event is nested too deeply") from None
    if not isinstance(raw, dict):
        raise ValueError("agent event is not an object")
    topic = topic_names(raw.get("topic"))
    if topic is None:
        raise ValueError("agent event has no valid topic")
    kind, msg_id, data = raw.get("type"), raw.get("id"), raw.get("body", {})
    if not isinstance(kind, str) or not _TYPE.fullmatch(kind):
        raise ValueError("agent event has a malformed type")
    if msg_id is not None and (not isinstance(msg_id, str) or len(msg_id) > 128):
        raise ValueError("agent event has a malformed id")
    if not isinstance(data, dict):
        raise ValueError("agent event body is not an object")
    check_body(kind, data)
    return AgentEvent(topic[0], topic[1], msg_id, kind, data)


Handler = Callable[[AgentEvent, "Lifecycle"], None]
# The trace header an event continues: the waiting step's (see the module docstring), or None.
TraceOf = Callable[[AgentEvent], "str | None"]
_NULL_TRACER: Final = NullTracer()
H = TypeVar("H", bound=Handler)


@dataclass
class AgentEventRouter:
    """Handlers by event type (`*` gets every event); each gets (event, the lifecycle's collaborators)."""

    handlers: dict[str, list[Handler]] = field(default_factory=dict)

    def on(self, kind: str) -> Callable[[H], H]:
        def decorate(fn: H) -> H:
            self.handlers.setdefault(kind, []).append(fn)
            return fn

        return decorate

    def run(
        self,
        body: str,
        lifecycle: Lifecycle,
        tracer: Tracer = _NULL_TRACER,
        trace_of: TraceOf | None = None,
    ) -> str:
        """Handle one queue message; malformed ones are dropped (logged), handler errors propagate so
        the queue redelivers them. `trace_of(event)` names the trace the event continues (None: a new
        one); it is asked only when tracing is on, since it may cost a read."""
        try:
            event = parse_agent_event(body)
        except ValueError as exc:
            log.error("dropping malformed agent event: %s", exc)
            return "malformed"
        handlers = [*self.handlers.get(event.type, []), *self.handlers.get("*", [])]
        with tracer.segment("agent_event", trace_of(event) if trace_of else None) as span:
            span.annotate("tenant", event.tenant_id)
            span.annotate("game", event.game)
            span.annotate("event", event.type)
            for handler in handlers:
                handler(event, lifecycle)
        return f"{event.type}:{len(handlers)}"

    def bind(
        self, lifecycle: Lifecycle, tracer: Tracer = _NULL_TRACER, trace_of: TraceOf | None = None
    ) -> BoundAgentEvents:
        """This router with what its handlers get: what the agent_events Lambda runs."""
        return BoundAgentEvents(self, lifecycle, tracer, trace_of)


@dataclass(frozen=True)
class BoundAgentEvents:
    """A router and its handlers' collaborators: `run(body)` handles one queue message."""

    router: AgentEventRouter
    lifecycle: Lifecycle
    tracer: Tracer = _NULL_TRACER
    trace_of: TraceOf | None = None

    def run(self, body: str) -> str:
        return self.router.run(body, self.lifecycle, self.tracer, self.trace_of)


# The app's agent-event handlers: the modules chalicelib/registry.py lists declare into it
# (`@AGENT_EVENTS.on("ready")`).
AGENT_EVENTS: Final = AgentEventRouter()

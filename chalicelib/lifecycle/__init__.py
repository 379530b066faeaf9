"""The game lifecycle: StartGame/StopGame steps, starting and stopping, and reacting to agents."""

from __future__ import annotations

from chalicelib.lifecycle import agent_events, steps
from chalicelib.lifecycle.control import begin_start, begin_stop, reply_ref
from chalicelib.lifecycle.deps import Lifecycle

__all__ = ["Lifecycle", "agent_events", "begin_start", "begin_stop", "reply_ref", "steps"]

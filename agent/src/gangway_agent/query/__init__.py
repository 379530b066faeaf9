"""The game's own player query (``[query]``): who is on it, asked the way the game answers.

``probe`` and ``answers`` never raise: a game that does not answer, answers late or answers outside its
protocol is *unknown* (None, False), never "no players", so a hung query cannot stop a full server; the
agent counts traffic instead until the query answers again. Every exchange has one deadline and a
bounded reply. The libraries load on first use, so ``gangway-agent --check`` stays quick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from gangway_agent.config import QueryConfig, QueryProtocol

from .players import MAX_NAME_CHARS, MAX_NAMES, Players, clean_names

__all__ = [
    "MAX_NAMES",
    "MAX_NAME_CHARS",
    "PROBE_TIMEOUT_S",
    "GameQuery",
    "Players",
    "ReadinessProbe",
    "answers",
    "clean_names",
    "probe",
]

log = logging.getLogger(__name__)

# The game runs on the same host: a live server answers in milliseconds.
PROBE_TIMEOUT_S: Final = 2.0

Ask = Callable[[str, int, float], Players]  # (host, port, timeout) → players; raises on any failure
Ping = Callable[[str, int, float], None]  # (host, port, timeout); raises unless the game answers
ReadinessProbe = Callable[[], bool]
"""What readiness (``[ready] signal = "query"``) calls: True once the game answers its query."""


def _speakers(protocol: QueryProtocol) -> tuple[Ask, Ping]:
    """The protocol's (players, ping) functions, importing its library now."""
    if protocol is QueryProtocol.QUAKE3:
        from . import quake3
        return quake3.players, quake3.ping
    if protocol is QueryProtocol.A2S:
        from . import steam
        return steam.players, steam.ping
    if protocol is QueryProtocol.MINECRAFT_JAVA:
        from . import minecraft
        return minecraft.java_players, minecraft.java_ping
    if protocol is QueryProtocol.MINECRAFT_BEDROCK:
        from . import minecraft
        return minecraft.bedrock_players, minecraft.bedrock_ping
    raise ValueError(f"no query speaks {protocol.value!r}")


def probe(protocol: QueryProtocol, host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> Players | None:
    """Who is on the game, or None when it is unknown (no answer, a malformed one, or a failure)."""
    try:
        return _speakers(protocol)[0](host, port, timeout)
    except Exception as exc:  # any library's failure means "unknown"; the agent loop must go on
        log.debug("%s query of %s:%d unanswered: %s: %s", protocol.value, host, port, type(exc).__name__, exc)
        return None


def answers(protocol: QueryProtocol, host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the game answers its query now (the cheapest request of the protocol)."""
    try:
        _speakers(protocol)[1](host, port, timeout)
    except Exception as exc:  # as in probe: a failure is a "no"
        log.debug("%s query of %s:%d unanswered: %s: %s", protocol.value, host, port, type(exc).__name__, exc)
        return False
    return True


class GameQuery:
    """The ``[query]`` of this game, bound to its address: what the agent and readiness call."""

    def __init__(self, cfg: QueryConfig, timeout: float = PROBE_TIMEOUT_S) -> None:
        self.cfg = cfg
        self._timeout = min(timeout, cfg.interval_s)

    def players(self) -> Players | None:
        return probe(self.cfg.protocol, self.cfg.host, self.cfg.port, self._timeout)

    def answers(self) -> bool:
        return answers(self.cfg.protocol, self.cfg.host, self.cfg.port, self._timeout)

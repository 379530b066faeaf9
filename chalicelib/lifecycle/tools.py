"""What the admin tools (/openport, /closeport, /files, /extenddisk) do beyond their replies: port lists,
and asking a running game's agent something and waiting for its answer.

Waiting for the agent: the request goes out on MQTT from the jobs Lambda, but its reply comes back
through the agent-events queue into another Lambda invocation. The agent-events handler here stores
a reply whose id is one of ours (`tool-…`) on the game's row (`agent_reply`), and the job that asked
polls that row with consistent reads for a few seconds (`ask_and_wait`). We chose this over a small
workflow with a task token because it adds no state machine, no steps and no deployment: the agent
answers these requests in about a second, a jobs Lambda may run for two minutes, and when the agent
is silent the job simply says so (nothing waits on after it). The row holds one reply at a time: two
admins asking the same game at the same instant may make one of them wait out the timeout and retry,
and a password stays there only until the job that asked reads it (it is one-time and expires anyway).

The row never holds a reply in the clear: it is sealed (XSalsa20-Poly1305) under a key derived from the
request id, and found by a hash of that id. A request id that carries a secret part (`/files` puts a
random one in its job's arguments, which live only on the queue) makes the stored password unreadable to
anyone who reads the table, and a sealed reply older than `SEALED_REPLY_SECONDS` is ignored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from chalicelib.agents.events import AGENT_EVENTS, AgentEvent
from chalicelib.errors import UserError, ValidationError
from chalicelib.games import Game
from chalicelib.lifecycle.collaborators import Lifecycle

__all__ = [
    "MAX_PORTS",
    "MAX_PORT_RANGES",
    "SEALED_REPLY_SECONDS",
    "AgentRefused",
    "AgentReply",
    "AgentSilent",
    "PortRange",
    "ask_and_wait",
    "close_ports",
    "on_tool_reply",
    "open_ports",
    "open_reply",
    "parse_ports",
    "port_numbers",
    "seal_reply",
    "tool_request_id",
]

# The first and last port an admin may open: below 1024 are the system's own services (the old bot's rule).
LOWEST_PORT: Final = 1024
HIGHEST_PORT: Final = 65535
# At most this many ranges per game: a security group allows 60 rules per direction and protocol family.
MAX_PORT_RANGES: Final = 20
# At most this many ports in all: the agent's launch config lists port numbers, not ranges
# (agent/src/gangway_agent/config.py `port_list`), and it travels in the instance's user data (16 KiB).
MAX_PORTS: Final = 200
REPLY_WAIT_SECONDS: Final = 20.0
# A sealed reply no job took within this long is stale (its job gave up after REPLY_WAIT_SECONDS).
SEALED_REPLY_SECONDS: Final = 300
_PREFIX: Final = "tool-"
_PORT: Final = re.compile(r"(?P<proto>[a-z0-9]+):(?P<low>\d{1,5})(?:-(?P<high>\d{1,5}))?")


class AgentSilent(UserError):
    """The game's agent did not answer in time (it may be restarting, or the instance is busy)."""


class AgentRefused(UserError):
    """The game's agent answered with an error (`code` is the contract's error code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, order=True)
class PortRange:
    """One protocol's inclusive range of ports; `str()` is the normalised form (`udp:2456-2458`)."""

    protocol: str
    low: int
    high: int

    def __str__(self) -> str:
        return (
            f"{self.protocol}:{self.low}"
            if self.low == self.high
            else f"{self.protocol}:{self.low}-{self.high}"
        )


def parse_ports(text: str) -> list[PortRange]:
    """`tcp:27015 udp:2456-2458` (spaces or commas between) as ranges; a reversed range is turned round.

    Raises:
        ValidationError: not `<tcp|udp>:<port>[-<port>]`, another protocol, or a port outside 1024-65535.
    """
    items = [t for t in re.split(r"[\s,]+", text.strip().lower()) if t]
    if not items:
        raise ValidationError("Give at least one port, e.g. `udp:2456` or `tcp:7000-8000`.")
    if len(items) > MAX_PORT_RANGES:
        raise ValidationError(f"Give at most {MAX_PORT_RANGES} port ranges at once.")
    ranges = []
    for item in items:
        match = _PORT.fullmatch(item)
        if match is None:
            raise ValidationError(
                f"`{item[:40]}` isn't a valid port range: give the protocol and either one port or a range, "
                "e.g. `udp:12345` or `tcp:7000-8000`."
            )
        proto = match["proto"]
        if proto not in ("tcp", "udp"):
            raise ValidationError(f"`{proto[:10]}` isn't a valid protocol: use `tcp` or `udp`.")
        low, high = int(match["low"]), int(match["high"] or match["low"])
        for port in (low, high):
            if not LOWEST_PORT <= port <= HIGHEST_PORT:
                raise ValidationError(f"Invalid port {port}: ports must be in the range 1024-65535.")
        ranges.append(PortRange(proto, min(low, high), max(low, high)))
    return ranges


def _merged(ranges: Iterable[PortRange]) -> list[PortRange]:
    """Sorted, with overlapping and adjacent ranges of one protocol joined."""
    out: list[PortRange] = []
    for r in sorted(ranges):
        last = out[-1] if out else None
        if last is not None and last.protocol == r.protocol and r.low <= last.high + 1:
            out[-1] = PortRange(r.protocol, last.low, max(last.high, r.high))
        else:
            out.append(r)
    return out


def _stored(game: Game) -> list[PortRange]:
    return parse_ports(" ".join(game.settings.ports)) if game.settings.ports else []


def open_ports(game: Game, ranges: Iterable[PortRange]) -> list[str]:
    """The game's port list with `ranges` added, normalised.

    Raises:
        ValidationError: more ranges than a game may have.
    """
    merged = _merged([*_stored(game), *ranges])
    if len(merged) > MAX_PORT_RANGES:
        raise ValidationError(
            f"Unable to add more ports: a game may have at most {MAX_PORT_RANGES} port ranges. "
            "Close some with `/closeport`, or open one wider range."
        )
    if sum(r.high - r.low + 1 for r in merged) > MAX_PORTS:
        raise ValidationError(
            f"Unable to add more ports: a game may have at most {MAX_PORTS} ports open in all. "
            "Close some with `/closeport`."
        )
    return [str(r) for r in merged]


def port_numbers(ports: Iterable[str]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A game's port list as the agent's launch config wants it: (tcp, udp) port numbers, ranges expanded.

    Raises:
        ValidationError: a stored entry that is not a port range (never written by `/openport`).
    """
    tcp: set[int] = set()
    udp: set[int] = set()
    for r in parse_ports(" ".join(ports)) if ports else []:
        (tcp if r.protocol == "tcp" else udp).update(range(r.low, r.high + 1))
    return tuple(sorted(tcp)), tuple(sorted(udp))


def close_ports(game: Game, ranges: Iterable[PortRange]) -> list[str]:
    """The game's port list with `ranges` taken out (a range may split in two), normalised."""
    remaining = _stored(game)
    for cut in ranges:
        kept = []
        for r in remaining:
            if r.protocol != cut.protocol or cut.high < r.low or cut.low > r.high:
                kept.append(r)
                continue
            if r.low < cut.low:
                kept.append(PortRange(r.protocol, r.low, cut.low - 1))
            if cut.high < r.high:
                kept.append(PortRange(r.protocol, cut.high + 1, r.high))
        remaining = kept
    return [str(r) for r in _merged(remaining)]


# -- asking the agent and waiting for its reply ----------------------------------------------------------


@dataclass(frozen=True)
class AgentReply:
    """A successful reply: its type (`<request>.reply`) and body."""

    type: str
    body: Mapping[str, Any]


def tool_request_id(kind: str, interaction_id: str, secret: str = "") -> str:
    """The request id of one command's request: the same on a redelivered job (the agent answers a repeated
    id again without running it twice), and recognisable by the agent-events handler. `secret` (from the
    job's arguments) keys the sealed reply on the row."""
    return f"{_PREFIX}{kind}-{interaction_id}{'-' + secret if secret else ''}"[:128]


def _derive(purpose: bytes, request_id: str) -> bytes:
    return hashlib.sha256(purpose + b":" + request_id.encode()).digest()


def seal_reply(request_id: str, kind: str, body: Mapping[str, Any], *, now: float) -> str:
    """The row's form of an agent reply: found by a hash of the id, readable only with the id."""
    box = SecretBox(_derive(b"gangway-tool-key", request_id))
    sealed = box.encrypt(json.dumps({"type": kind, "body": dict(body)}).encode())
    lookup = _derive(b"gangway-tool-lookup", request_id).hex()
    return json.dumps({"lookup": lookup, "sealed": base64.b64encode(sealed).decode(), "at": int(now)})


def open_reply(request_id: str, stored: str, *, now: float) -> dict[str, Any] | None:
    """The reply sealed for `request_id`, or None (another request's, stale, or not readable)."""
    try:
        raw = json.loads(stored)
        if raw.get("lookup") != _derive(b"gangway-tool-lookup", request_id).hex():
            return None
        if now - float(raw.get("at", 0)) > SEALED_REPLY_SECONDS:
            return None
        box = SecretBox(_derive(b"gangway-tool-key", request_id))
        opened = json.loads(box.decrypt(base64.b64decode(raw["sealed"])))
    except (ValueError, KeyError, TypeError, AttributeError, CryptoError):
        return None
    return opened if isinstance(opened, dict) else None


def ask_and_wait(
    lc: Lifecycle,
    game: Game,
    kind: str,
    body: Mapping[str, Any],
    *,
    request_id: str,
    wait: float = REPLY_WAIT_SECONDS,
    poll: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> AgentReply:
    """Publish `kind` to the game's agent and wait (≤ `wait` s) for the reply the handler below stores.

    Raises:
        AgentSilent: no reply in time.  AgentRefused: the agent answered with an error.
    """
    lc.ask_agent(game, kind, dict(body), request_id=request_id)
    deadline = clock() + wait
    while True:
        current = lc.games.get(game.tenant_id, game.name)
        stored = current.wait.agent_reply if current is not None else None
        raw = open_reply(request_id, stored, now=time.time()) if stored else None
        if raw is not None:
            lc.games.keep_agent_reply(game.tenant_id, game.name, None)
            reply_body = raw.get("body") or {}
            if raw.get("type") == "error":
                raise AgentRefused(
                    str(reply_body.get("code", "failed")),
                    f"The server of **{game.name}** couldn't do that: "
                    f"{str(reply_body.get('message', 'no reason given'))[:300]}",
                )
            return AgentReply(str(raw.get("type")), reply_body)
        if clock() >= deadline:
            raise AgentSilent(
                f"The server of **{game.name}** didn't answer within {wait:.0f} seconds (it may still be "
                "starting up or busy). Try again in a minute."
            )
        sleep(poll)


@AGENT_EVENTS.on("sftp.open.reply")
@AGENT_EVENTS.on("disk.extend.reply")
@AGENT_EVENTS.on("firewall.sync.reply")
@AGENT_EVENTS.on("error")
def on_tool_reply(event: AgentEvent, lc: Lifecycle) -> None:
    """Keep the agent's answer to one of our requests on its game's row, for the job that waits on it."""
    if not event.id or not event.id.startswith(_PREFIX):
        return
    if lc.games.get(event.tenant_id, event.game) is None:
        return
    reply = seal_reply(event.id, event.type, event.body, now=time.time())
    lc.games.keep_agent_reply(event.tenant_id, event.game, reply)

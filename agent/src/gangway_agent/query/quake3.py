"""Quake III Arena's ``getstatus`` (ioquake3, OpenArena): no kept library speaks it, so it is here, bounded.

One datagram each way: ``\\xff\\xff\\xff\\xffgetstatus <challenge>\\n`` asks, and the server answers
``\\xff\\xff\\xff\\xffstatusResponse\\n``, its info string (``\\key\\value…``), then one line per client:
``<score> <ping> "<name>"``. ioquake3 echoes the challenge in the info string (``\\challenge\\…``), which
tells this reply from a late one to an earlier probe. Bots are listed too (ping 0): they count.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from typing import Final

from gangway_agent.errors import QueryFailed

from .players import Players, clean_names

OUT_OF_BAND: Final = b"\xff\xff\xff\xff"
GETSTATUS: Final = b"getstatus"
STATUS_RESPONSE: Final = b"statusResponse\n"
MAX_REPLY: Final = 65507  # the largest UDP payload over IPv4; ioquake3 answers in one datagram
MAX_DATAGRAMS: Final = 8  # late replies skipped before giving up (each within the deadline)
CHALLENGE_KEY: Final = "challenge"
_PLAYER: Final = re.compile(rb'(-?\d+) (-?\d+) "(.*)"')
# Q_IsColorString: a caret and a letter or digit colours what follows (``^1Red^7``).
COLOUR: Final = re.compile(r"\^[0-9A-Za-z]")


def request(challenge: str) -> bytes:
    return OUT_OF_BAND + GETSTATUS + b" " + challenge.encode() + b"\n"


def _text(raw: bytes) -> str:
    """Names are bytes: UTF-8 where a fork allows it, else the 8-bit charset of the original game."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_info(line: bytes) -> dict[str, str]:
    """``\\key\\value\\key\\value`` → a dict (a trailing key without value is dropped)."""
    parts = _text(line).split("\\")[1:]
    return dict(zip(parts[0::2], parts[1::2], strict=False))


def parse_status(reply: bytes, challenge: str | None = None) -> Players:
    """The players of a ``statusResponse``; raises QueryFailed for anything else.

    With ``challenge``, a reply echoing another challenge is refused (a late answer to an earlier probe).
    """
    if not reply.startswith(OUT_OF_BAND + STATUS_RESPONSE):
        raise QueryFailed("the reply is not a Quake 3 statusResponse")
    info_line, *lines = reply[len(OUT_OF_BAND + STATUS_RESPONSE):].split(b"\n")
    echoed = parse_info(info_line).get(CHALLENGE_KEY)
    if challenge is not None and echoed is not None and echoed != challenge:
        raise QueryFailed("the reply answers another challenge")
    names: list[str] = []
    for line in lines:
        if not line:
            continue
        m = _PLAYER.fullmatch(line)
        if m is None:
            raise QueryFailed("a player line of the statusResponse is malformed")
        names.append(_text(m[3]))
    return Players(len(names), clean_names(names, COLOUR))


def players(host: str, port: int, timeout: float) -> Players:
    """Ask once and wait at most ``timeout`` seconds in all. Raises QueryFailed or OSError."""
    deadline = time.monotonic() + timeout
    challenge = secrets.token_hex(4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))  # a connected socket takes datagrams from the server only
        sock.send(request(challenge))
        for _ in range(MAX_DATAGRAMS):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            reply = sock.recv(MAX_REPLY)
            try:
                return parse_status(reply, challenge)
            except QueryFailed:
                continue
    raise QueryFailed(f"no statusResponse from {host}:{port} within {timeout:g} s")


def ping(host: str, port: int, timeout: float) -> None:
    """The server answers its status query. Raises QueryFailed or OSError."""
    players(host, port, timeout)

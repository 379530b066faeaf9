"""Valve's server queries (A2S): A2S_INFO for the count, A2S_PLAYER for the names.

``python-a2s`` builds the requests and parses the replies (``InfoProtocol``, ``PlayersProtocol``); the
exchange is ours, because the library's waits restart with every datagram and it inflates bzip2-compressed
split replies of any size. Here one deadline covers both requests, a split reply has at most
``MAX_FRAGMENTS`` parts, and a compressed one is refused (only engines from before 2006 send them).
A server may answer a request with a challenge (S2C_CHALLENGE) first; the request is sent again with it.
The count is INFO's players less its bots; the names are what A2S_PLAYER lists (some games refuse it:
then the names are unknown and the count still holds).
"""

from __future__ import annotations

import io
import socket
import struct
import time
from typing import Final, Protocol

from a2s.byteio import ByteReader
from a2s.exceptions import BrokenMessageError
from a2s.info import InfoProtocol
from a2s.players import PlayersProtocol

from gangway_agent.errors import QueryFailed

from .players import Players, clean_names

SIMPLE: Final = b"\xff\xff\xff\xff"  # one-packet reply (and every request)
SPLIT: Final = b"\xfe\xff\xff\xff"  # one part of a split reply
S2C_CHALLENGE: Final = 0x41
MAX_DATAGRAM: Final = 65507
MAX_FRAGMENTS: Final = 16  # 16 parts of ~1.2 KB hold any player list an A2S server sends
MAX_CHALLENGES: Final = 3
_COMPRESSED: Final = 0x80000000  # the split reply's id has its top bit set when the payload is bzip2
_FRAGMENT: Final = struct.Struct("<IBBH")  # id, total, number, size (Source's split header)


class _A2sRequest(Protocol):
    """What python-a2s's InfoProtocol and PlayersProtocol offer (the library has no type hints)."""

    @staticmethod
    def serialize_request(challenge: int) -> bytes: ...

    @staticmethod
    def validate_response_type(response_type: int) -> bool: ...

    @staticmethod
    def deserialize_response(reader: ByteReader, response_type: int, ping: float) -> object: ...


def _datagram(sock: socket.socket, deadline: float) -> bytes:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the A2S reply took too long")
    sock.settimeout(left)
    return sock.recv(MAX_DATAGRAM)


def _reply(sock: socket.socket, deadline: float) -> bytes:
    """One reply's payload, a split one put back together."""
    packet = _datagram(sock, deadline)
    if packet[:4] == SIMPLE:
        return packet[4:]
    if packet[:4] != SPLIT:
        raise QueryFailed("the A2S reply has no A2S header")
    parts: dict[int, bytes] = {}
    first: tuple[int, int] | None = None  # the reply's id and number of parts, from its first part
    total = 1
    while len(parts) < total:
        if packet[:4] != SPLIT or len(packet) < 4 + _FRAGMENT.size:
            raise QueryFailed("a part of the split A2S reply is malformed")
        msg_id, total, number, _size = _FRAGMENT.unpack_from(packet, 4)
        if msg_id & _COMPRESSED:
            raise QueryFailed("the A2S reply is compressed, which gangway does not inflate")
        if not 0 < total <= MAX_FRAGMENTS or number >= total or first not in (None, (msg_id, total)):
            raise QueryFailed("the split A2S reply has more parts than gangway reads, or mixes two")
        first = (msg_id, total)
        parts[number] = packet[4 + _FRAGMENT.size:]
        if len(parts) < total:
            packet = _datagram(sock, deadline)
    payload = b"".join(parts[i] for i in range(total))
    return payload[4:] if payload.startswith(SIMPLE) else payload


def _ask(sock: socket.socket, request: _A2sRequest, deadline: float) -> object:
    """Send one request, answer up to MAX_CHALLENGES challenges, and parse the reply with the library."""
    challenge = 0
    for _ in range(MAX_CHALLENGES + 1):
        sock.send(SIMPLE + request.serialize_request(challenge))
        reader = ByteReader(io.BytesIO(_reply(sock, deadline)), endian="<", encoding="utf-8")
        kind = int(reader.read_uint8())
        if kind == S2C_CHALLENGE:
            challenge = int(reader.read_uint32())
            continue
        if not request.validate_response_type(kind):
            raise QueryFailed(f"the A2S reply is of type {kind:#x}, not the one asked for")
        return request.deserialize_response(reader, kind, 0.0)
    raise QueryFailed("the A2S server keeps answering with challenges")


def _count(sock: socket.socket, deadline: float) -> int:
    info = _ask(sock, InfoProtocol, deadline)
    players, bots = int(getattr(info, "player_count", -1)), int(getattr(info, "bot_count", 0))
    if players < 0 or bots < 0:
        raise QueryFailed("the A2S_INFO reply holds no player count")
    return max(players - bots, 0)


def _open(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))  # datagrams from the server only
    return sock


def players(host: str, port: int, timeout: float) -> Players:
    """INFO (required) then PLAYER (best effort), both within ``timeout``. Raises QueryFailed, OSError or
    the library's parse errors."""
    deadline = time.monotonic() + timeout
    with _open(host, port) as sock:
        count = _count(sock, deadline)
        try:
            listed = _ask(sock, PlayersProtocol, deadline)
        except (QueryFailed, OSError, ValueError, struct.error, BrokenMessageError):
            return Players(count, None)
    if not isinstance(listed, list):
        return Players(count, None)
    return Players.of(count, clean_names(str(getattr(p, "name", "")) for p in listed))


def ping(host: str, port: int, timeout: float) -> None:
    """The server answers A2S_INFO."""
    with _open(host, port) as sock:
        _count(sock, time.monotonic() + timeout)

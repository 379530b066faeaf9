"""Minecraft's status protocols through ``mcstatus``: Java's Server List Ping (TCP) and Bedrock's
unconnected ping (RakNet, UDP).

Java: mcstatus reads a length-prefixed reply of any length the server claims, and its socket timeout
restarts with every byte, so the connection it reads from is ours: one deadline for the whole exchange
and at most ``MAX_JAVA_REPLY`` bytes (mcstatus 14's own client over its connection class, pinned).
Bedrock: one datagram of at most 2 KiB each way, awaited under one deadline.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from typing import Final, cast

from mcstatus import BedrockServer
from mcstatus._net.address import Address
from mcstatus._protocol.io.connection import TCPSocketConnection, _SocketConnection
from mcstatus._protocol.java_client import JavaClient
from mcstatus.responses import JavaStatusResponse

from gangway_agent.errors import QueryFailed

from .players import Players, clean_names

# A vanilla status JSON is at most 32767 characters; modded servers add their mod list. Past this, refuse.
MAX_JAVA_REPLY: Final = 256 * 1024
# The protocol version the handshake announces (mcstatus's default; any version may ask for status).
JAVA_PROTOCOL_VERSION: Final = 47
# Plugins fill the sample with lines of text under the nil UUID; they are not players.
NIL_UUID: Final = "00000000-0000-0000-0000-000000000000"
# The section sign and a code colour or format what follows (``§6Gold``).
COLOUR: Final = re.compile(r"§[0-9A-Za-z]")


class _BoundedConnection(_SocketConnection):
    """mcstatus's TCP connection (the same reads and writes) with one deadline and a budget of bytes."""

    def __init__(self, address: Address, deadline: float, budget: int) -> None:
        super().__init__()
        self.socket = socket.create_connection(address, timeout=max(deadline - time.monotonic(), 0.001))
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._deadline, self._budget = deadline, budget

    def write(self, data: bytes | bytearray, /) -> None:
        self.socket.settimeout(max(self._deadline - time.monotonic(), 0.001))
        self.socket.sendall(data)

    def read(self, length: int, /) -> bytes:
        if length > self._budget:
            raise QueryFailed("the Minecraft status reply is larger than gangway reads")
        self._budget -= length
        result = bytearray()
        while len(result) < length:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the Minecraft status reply took too long")
            self.socket.settimeout(left)
            chunk = self.socket.recv(min(length - len(result), 65536))
            if not chunk:
                raise QueryFailed("the Minecraft server closed the connection mid-reply")
            result.extend(chunk)
        return bytes(result)


def java_status(host: str, port: int, timeout: float) -> JavaStatusResponse:
    """One Server List Ping status exchange within ``timeout``. Raises QueryFailed, OSError or ValueError."""
    address = Address(host, port)
    with _BoundedConnection(address, time.monotonic() + timeout, MAX_JAVA_REPLY) as conn:
        # JavaClient calls only read/write (and the varint and bytearray helpers on them).
        tcp = cast(TCPSocketConnection, conn)
        client = JavaClient(tcp, address=address, version=JAVA_PROTOCOL_VERSION)
        client.handshake()
        return client.read_status()


def java_players(host: str, port: int, timeout: float) -> Players:
    """The online count and the sample's names (vanilla samples at most 12 of them), None when the server
    hides them (``hide-online-players``), an empty tuple when nobody is on."""
    players = java_status(host, port, timeout).players
    if players.online < 0:
        raise QueryFailed("the Minecraft server reported a negative player count")
    sample = [p.name for p in players.sample or () if p.id != NIL_UUID]
    if players.online == 0:
        return Players(0, ())
    return Players.of(players.online, clean_names(sample, COLOUR) if sample else None)


def java_ping(host: str, port: int, timeout: float) -> None:
    java_status(host, port, timeout)


def bedrock_players(host: str, port: int, timeout: float) -> Players:
    """The online count from the unconnected pong (Bedrock gives no names)."""

    async def ask() -> int:
        status = await asyncio.wait_for(BedrockServer(host, port, timeout).async_status(), timeout)
        return status.players.online

    online = asyncio.run(ask())
    if online < 0:
        raise QueryFailed("the Minecraft server reported a negative player count")
    return Players(online, None)


def bedrock_ping(host: str, port: int, timeout: float) -> None:
    bedrock_players(host, port, timeout)

"""Loopback game servers that speak the real query protocols, written from their specifications, strict:
a request that breaks the protocol gets no answer (as a real server drops it).

- Minecraft Java Server List Ping (wiki.vg "Server List Ping"): handshake (id 0, protocol version,
  address, port, next state 1), status request (id 0, empty), status response (id 0, JSON string).
- Minecraft Bedrock unconnected ping (0x01, time, RakNet magic, client GUID) → unconnected pong (0x1c,
  time, server GUID, magic, ``MCPE;motd;protocol;version;online;max;…``).
- Valve A2S_INFO / A2S_PLAYER (developer.valvesoftware.com "Server queries"), with the challenge
  (S2C_CHALLENGE 0x41) every request must carry, as servers do since 2020; optionally split replies.
- Quake 3 ``getstatus`` (ioquake3 SVC_Status): ``statusResponse``, the info string with the echoed
  challenge, one ``score ping "name"`` line per client.
"""

from __future__ import annotations

import json
import secrets
import socket
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

RAKNET_MAGIC = bytes.fromhex("00ffff00fefefefefdfdfdfd12345678")


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= 0xFFFFFFFF
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(sock: socket.socket) -> int:
    value = 0
    for shift in range(0, 35, 7):
        b = sock.recv(1)
        if not b:
            raise ConnectionError("closed")
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
    raise ValueError("varint too long")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


class _Server(ABC):
    """A socket served on a thread until ``close``."""

    def __init__(self, kind: int) -> None:
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> _Server:
        self.sock.settimeout(0.1)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                self.serve_one()
            except (TimeoutError, ConnectionError, ValueError, struct.error):
                continue
            except OSError:
                return

    @abstractmethod
    def serve_one(self) -> None:
        """Answer one request on the socket (each responder speaks its game's wire format)."""

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()


class JavaStatusServer(_Server):
    """Minecraft Java's status: ``status`` is the JSON it answers; ``reply`` may replace the whole frame
    (bytes sent as they are, for hostile servers); ``drip_s`` sends it a byte at a time; ``junk`` bytes
    of zeros follow it, as fast as the client takes them (``sent`` counts them)."""

    def __init__(self, status: dict[str, Any], reply: bytes | None = None, drip_s: float = 0.0,
                 junk: int = 0) -> None:
        super().__init__(socket.SOCK_STREAM)
        self.sock.listen()
        self.status, self.reply, self.drip_s, self.junk = status, reply, drip_s, junk
        self.sent = 0  # bytes of junk the client took before it hung up
        self.answered = threading.Event()  # set when an answer is over (sent, or the client hung up)

    def serve_one(self) -> None:
        conn, _ = self.sock.accept()
        try:
            self._answer(conn)
        finally:
            self.answered.set()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            length = _read_varint(conn)
            handshake = _recv_exact(conn, length)
            if handshake[0] != 0x00 or handshake[-1] != 0x01:  # packet id 0, next state 1 (status)
                return
            if _recv_exact(conn, 2) != b"\x01\x00":  # status request: length 1, packet id 0
                return
            self.requests += 1
            body = json.dumps(self.status).encode()
            frame = self.reply
            if frame is None:
                packet = b"\x00" + _varint(len(body)) + body
                frame = _varint(len(packet)) + packet
            if self.drip_s:
                for i in range(len(frame)):
                    if self._stop.wait(self.drip_s):
                        return
                    conn.sendall(frame[i:i + 1])
            else:
                conn.sendall(frame)
            chunk = b"\x00" * 65536
            while self.sent < self.junk and not self._stop.is_set():
                try:
                    self.sent += conn.send(chunk)
                except OSError:  # the client hung up (or reset): stop
                    return


class BedrockServer(_Server):
    """Minecraft Bedrock's unconnected pong for ``online`` of ``max_players``."""

    def __init__(self, online: int, max_players: int = 10) -> None:
        super().__init__(socket.SOCK_DGRAM)
        self.online, self.max_players = online, max_players

    def serve_one(self) -> None:
        data, peer = self.sock.recvfrom(2048)
        if len(data) != 33 or data[0] != 0x01 or data[9:25] != RAKNET_MAGIC:
            return
        self.requests += 1
        ident = (f"MCPE;gangway;766;1.21.50;{self.online};{self.max_players};1234;Bedrock level;Survival;1;"
                 "19132;19133;")
        pong = b"\x1c" + data[1:9] + struct.pack(">q", 42) + RAKNET_MAGIC
        self.sock.sendto(pong + struct.pack(">H", len(ident)) + ident.encode(), peer)


def _cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


class A2sServer(_Server):
    """A Source server: every request needs the challenge it handed out; ``players`` are (name, score,
    seconds); ``bots`` are counted in INFO; ``split`` sends the PLAYER reply in parts of that many bytes;
    ``refuse_players`` never answers A2S_PLAYER (as some games); ``extra_listed`` are listed by A2S_PLAYER
    but not counted by INFO's players (bots)."""

    def __init__(self, players: list[tuple[str, int, float]], bots: int = 0, split: int = 0,
                 refuse_players: bool = False, raw: Callable[[bytes], list[bytes]] | None = None,
                 extra_listed: list[tuple[str, int, float]] | None = None) -> None:
        super().__init__(socket.SOCK_DGRAM)
        self.players, self.bots, self.split, self.refuse_players = players, bots, split, refuse_players
        self.extra_listed = extra_listed or []  # listed by A2S_PLAYER only (bots, as Source lists them)
        self.raw = raw
        self.challenge = secrets.token_bytes(4)

    def _challenge_ok(self, got: bytes, peer: tuple[str, int]) -> bool:
        if got == self.challenge:
            return True
        self.sock.sendto(b"\xff\xff\xff\xff\x41" + self.challenge, peer)
        return False

    def info(self) -> bytes:
        names = _cstr("gangway test") + _cstr("de_dust2") + _cstr("csgo") + _cstr("Counter-Strike")
        counts = bytes([len(self.players) + self.bots, 32, self.bots])
        return (b"\x49\x11" + names + struct.pack("<H", 730) + counts
                + b"dl\x00\x01" + _cstr("1.0.0.1") + b"\x00")

    def player_list(self) -> bytes:
        listed = self.players + self.extra_listed
        out = b"\x44" + bytes([len(listed)])
        for i, (name, score, seconds) in enumerate(listed):
            out += bytes([i]) + _cstr(name) + struct.pack("<lf", score, seconds)
        return out

    def serve_one(self) -> None:
        data, peer = self.sock.recvfrom(1400)
        if data[:4] != b"\xff\xff\xff\xff" or len(data) < 5:
            return
        if self.raw is not None:
            self.requests += 1
            for packet in self.raw(data):
                self.sock.sendto(packet, peer)
            return
        kind = data[4]
        if kind == 0x54 and data[5:25] == b"Source Engine Query\x00":
            if self._challenge_ok(data[25:29], peer):
                self.requests += 1
                self.sock.sendto(b"\xff\xff\xff\xff" + self.info(), peer)
        elif kind == 0x55 and len(data) == 9 and not self.refuse_players and self._challenge_ok(
            data[5:], peer
        ):
            self.requests += 1
            for packet in self._packets(self.player_list()):
                self.sock.sendto(packet, peer)

    def _packets(self, payload: bytes) -> list[bytes]:
        if not self.split:
            return [b"\xff\xff\xff\xff" + payload]
        whole = b"\xff\xff\xff\xff" + payload
        chunks = [whole[i:i + self.split] for i in range(0, len(whole), self.split)]
        return [b"\xfe\xff\xff\xff" + struct.pack("<IBBH", 7, len(chunks), n, self.split) + c
                for n, c in enumerate(chunks)]


class Quake3Server(_Server):
    """ioquake3's getstatus: ``players`` are (score, ping, name) lines."""

    def __init__(self, players: list[tuple[int, int, str]], replay: bytes | None = None) -> None:
        super().__init__(socket.SOCK_DGRAM)
        self.players, self.replay = players, replay

    def serve_one(self) -> None:
        data, peer = self.sock.recvfrom(1400)
        if not data.startswith(b"\xff\xff\xff\xffgetstatus"):
            return
        self.requests += 1
        challenge = data[len(b"\xff\xff\xff\xffgetstatus"):].strip()
        if self.replay is not None:
            # A recorded reply, its challenge replaced by this request's (ioquake3 echoes it).
            head, _, rest = self.replay.partition(b"\\challenge\\")
            self.sock.sendto(head + b"\\challenge\\" + challenge + rest[rest.index(b"\\"):], peer)
            return
        info = b"\\challenge\\" + challenge + b"\\sv_hostname\\^1gang^7way\\mapname\\oa_dm1\\sv_maxclients\\8"
        lines = b"".join(f'{s} {p} "{n}"\n'.encode() for s, p, n in self.players)
        self.sock.sendto(b"\xff\xff\xff\xffstatusResponse\n" + info + b"\n" + lines, peer)

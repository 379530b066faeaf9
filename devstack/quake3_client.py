"""A real, minimal Quake III Arena client (ioquake3's engine), so tests can put a player on a server.

It does what a real client does until the map would load: asks for a challenge, sends ``connect``
with its Huffman-coded userinfo, then keeps the netchan alive (acknowledging the gamestate and the
server's reliable commands) so the server lists it in ``getstatus``, and finally leaves with a
``disconnect`` client command, sent three times as ioquake3 does, so the slot frees at once instead
of after the server's 200 s timeout. It never enters the world: no user commands are sent.

Two netchans share the number 71. OpenArena's "71" (what Debian's openarena-server speaks: it sets
com_legacyprotocol 71) is Quake III 1.32's netchan, whose payloads are XOR-scrambled; that is the
default, ``legacy=True``. ioquake3's own 71 adds a challenge checksum to every packet header and
scrambles nothing: ``legacy=False``. Protocol 68 (Quake III 1.32 itself) is ``legacy=True`` too.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import struct
import threading
import time
from enum import IntEnum
from typing import Final

from devstack.quake3_huffman import MessageReader, MessageWriter, compress

__all__ = ["Quake3Client", "Quake3Refused"]

PROTOCOL: Final = 71  # OpenArena 0.8.8's (and ioquake3's, with another netchan: see above)
GAME_NAME: Final = "Quake3Arena"  # com_gamename: getchallenge names it and the server must agree
OUT_OF_BAND: Final = b"\xff\xff\xff\xff"
FRAGMENT_BIT: Final = 1 << 31
FRAGMENT_SIZE: Final = 1300  # a fragment this long means more follow
MAX_MESSAGE: Final = 16384
CS_SYSTEMINFO: Final = 1  # configstring carrying sv_serverid, which every client packet must echo
RESEND_S: Final = 0.5  # handshake retry (ioquake3 waits 3 s; a loopback test need not)
PACKET_S: Final = 0.05  # keep-alive rate while connected (a loading ioquake3 client sends at least 1/s)
DISCONNECT_COPIES: Final = 3  # CL_Disconnect sends its final packet this many times
MAX_NAME: Final = 32
ASCII_MAX: Final = 127
RELIABLE_SLOTS: Final = 64  # MAX_RELIABLE_COMMANDS: both sides keep this many commands by sequence
CLIENT_SCRAMBLE_FROM: Final = 12  # CL_ENCODE_START: the ids and acknowledgements stay readable
SERVER_SCRAMBLE_FROM: Final = 4  # CL_DECODE_START: the server's acknowledgement stays readable
NAME_FORBIDDEN: Final = frozenset('\\";%')


class ClientOp(IntEnum):
    """clc_ops_e: what a client message carries."""

    CLIENT_COMMAND = 4
    EOF = 5


class ServerOp(IntEnum):
    """svc_ops_e: what a server message carries."""

    NOP = 1
    GAMESTATE = 2
    CONFIGSTRING = 3
    BASELINE = 4
    SERVER_COMMAND = 5
    EOF = 8


class Quake3Refused(Exception):
    """The server refused the connection, or never answered; the message says which, in words."""


def _checksum(challenge: int, sequence: int) -> int:
    """Protocol 71's anti-spoofing word in every netchan header."""
    return (challenge ^ (sequence * challenge)) & 0xFFFFFFFF


def _scramble(data: bytearray, start: int, key: int, text: bytes) -> None:
    """The legacy netchan's XOR over a payload from ``start``: a byte key stirred with the text of the
    last acknowledged reliable command (itself a toggle, so it also unscrambles)."""
    index = 0
    for i in range(start, len(data)):
        if index >= len(text):
            index = 0
        c = text[index] if text else 0
        if c > ASCII_MAX or c == ord("%"):
            c = ord(".")
        key = (key ^ (c << (i & 1))) & 0xFF
        index += 1
        data[i] ^= key


def _info_value(info: str, key: str) -> str | None:
    parts = info.split("\\")
    if parts and parts[0] == "":
        parts = parts[1:]
    pairs = dict(zip(parts[0::2], parts[1::2], strict=False))
    return pairs.get(key)


class Quake3Client:
    """One player on a Quake III server for as long as the ``with`` block lasts.

    Entering returns once the server has sent its game state (so leaving is always heard), or raises
    Quake3Refused; the first client in a process also spends a few seconds growing the netchan's tree.
    """

    def __init__(self, host: str, port: int, name: str, *, protocol: int = PROTOCOL,
                 timeout: float = 5.0, legacy: bool = True) -> None:
        if not name or len(name) > MAX_NAME or not name.isprintable() or NAME_FORBIDDEN & set(name):
            raise ValueError(f"A player name is 1 to {MAX_NAME} printable characters without \\ \" ; or %;"
                             f" {name!r} is not. Choose another name.")
        if not 0 < port < 0x10000:
            raise ValueError(f"{port} is not a UDP port; give one from 1 to 65535.")
        if timeout <= 0:
            raise ValueError("The timeout must be a positive number of seconds.")
        self._server = (host, port)
        self._where = f"{host}:{port}"
        self._name = name
        self._protocol = protocol
        self._legacy = legacy
        self._timeout = timeout
        self._qport = secrets.randbelow(0xFFFF) + 1
        self._client_challenge = secrets.randbits(31)
        self._challenge = 0
        self._guid = secrets.token_hex(16).upper()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._primed = threading.Event()  # the gamestate arrived: we know the server id to echo
        self._lock = threading.Lock()
        # netchan and client state (the names of ioquake3's clc fields)
        self._outgoing = 1
        self._incoming = 0
        self._fragment_sequence = 0
        self._fragments = bytearray()
        self._server_id = 0
        self._server_command_sequence = 0
        self._reliable: list[str] = []  # our client commands not yet acknowledged, oldest first
        self._reliable_sequence = 0
        self._server_commands: dict[int, bytes] = {}  # by sequence % RELIABLE_SLOTS, as the engine keeps them
        self._sent_commands: dict[int, bytes] = {}

    def __enter__(self) -> Quake3Client:
        family, kind, proto, _, address = socket.getaddrinfo(*self._server, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.connect(address)
            self._sock = sock
            self._handshake()
        except BaseException:
            sock.close()
            self._sock = None
            raise
        self._send_packet()  # the first packet asks for the gamestate
        self._thread = threading.Thread(target=self._keep_alive, name=f"quake3-{self._name}", daemon=True)
        self._thread.start()
        # Until then the server would ignore our client commands, the disconnect included.
        if not self._primed.wait(self._timeout):
            self.__exit__()
            raise Quake3Refused(f"The Quake III server at {self._where} accepted {self._name!r} but never"
                                f" sent the game state within {self._timeout:g} s; check the server's log.")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._sock is None:
            return
        try:
            with self._lock:
                self._reliable_sequence += 1
                self._reliable.append("disconnect")
                self._sent_commands[self._reliable_sequence % RELIABLE_SLOTS] = b"disconnect"
            for _ in range(DISCONNECT_COPIES):
                self._send_packet()
        except OSError:
            pass  # the server is gone already: nothing to leave
        finally:
            self._sock.close()
            self._sock = None

    # -- connecting ---------------------------------------------------------------------------------

    def _handshake(self) -> None:
        deadline = time.monotonic() + self._timeout
        getchallenge = OUT_OF_BAND + f"getchallenge {self._client_challenge} {GAME_NAME}".encode()
        reply = self._ask(getchallenge, "challengeResponse", deadline)
        if len(reply) < 2 or not reply[1].lstrip("-").isdigit():
            raise Quake3Refused(f"The server at {self._where} answered with a malformed challenge.")
        self._challenge = int(reply[1])
        userinfo = "".join(f"\\{k}\\{v}" for k, v in self._userinfo().items())
        # The engine Huffman-codes an out-of-band packet from byte 12, just after "connect ".
        connect = OUT_OF_BAND + b"connect " + compress(f'"{userinfo}"'.encode())
        self._ask(connect, "connectResponse", deadline)

    def _userinfo(self) -> dict[str, str]:
        # What an ioquake3 client sends (its userinfo cvars), then the three keys CL_CheckForResend adds.
        return {"name": self._name, "rate": "25000", "snaps": "20", "model": "sarge", "headmodel": "sarge",
                "team_model": "sarge", "team_headmodel": "sarge", "handicap": "100", "teamtask": "0",
                "sex": "male", "color1": "4", "color2": "5", "cl_anonymous": "0", "cg_predictItems": "1",
                # OpenArena's game refuses a client without one: 32 upper-case hex digits, as ioquake3
                # derives from its qkey file.
                "cl_guid": self._guid,
                "protocol": str(self._protocol), "qport": str(self._qport),
                "challenge": str(self._challenge)}

    def _ask(self, packet: bytes, expected: str, deadline: float) -> list[str]:
        """Send ``packet`` until the server answers ``expected`` (for our challenge) or refuses."""
        assert self._sock is not None
        while (left := deadline - time.monotonic()) > 0:
            self._sock.send(packet)
            resend = time.monotonic() + min(RESEND_S, left)
            while (wait := resend - time.monotonic()) > 0:
                self._sock.settimeout(wait)
                try:
                    data = self._sock.recv(MAX_MESSAGE)
                except TimeoutError:
                    break
                except ConnectionRefusedError:
                    time.sleep(wait)  # nothing listens there (yet): keep asking until the deadline
                    break
                if not data.startswith(OUT_OF_BAND):
                    continue
                text = data[len(OUT_OF_BAND):].decode("latin-1")
                if text.startswith("print\n"):
                    said = " ".join(text[len("print\n"):].split()) or "no reason given"
                    raise Quake3Refused(f"The Quake III server at {self._where} refused {self._name!r}:"
                                        f" {said}")
                words = text.split()
                if words and words[0] == expected and self._for_us(expected, words):
                    return words
        raise Quake3Refused(f"The Quake III server at {self._where} did not answer"
                            f" within {self._timeout:g} s;"
                            " check that it is running and that the address and port are right.")

    def _for_us(self, expected: str, words: list[str]) -> bool:
        """A late answer to an earlier try, or to someone else, is not ours."""
        if expected == "challengeResponse":
            return len(words) < 3 or words[2] == str(self._client_challenge)
        return len(words) < 2 or words[1] == str(self._challenge)

    # -- connected ----------------------------------------------------------------------------------

    def _keep_alive(self) -> None:
        assert self._sock is not None
        sock = self._sock
        next_send = time.monotonic() + PACKET_S
        while not self._stop.is_set():
            sock.settimeout(max(0.001, next_send - time.monotonic()))
            try:
                self._receive(sock.recv(MAX_MESSAGE + 16))
            except TimeoutError:
                pass
            except OSError:
                time.sleep(PACKET_S)  # an ICMP error from a server that went away; keep trying
            if time.monotonic() >= next_send:
                with contextlib.suppress(OSError):
                    self._send_packet()
                next_send = time.monotonic() + PACKET_S

    def _send_packet(self) -> None:
        """CL_WritePacket: ids and acknowledgements, then every unacknowledged client command."""
        assert self._sock is not None
        with self._lock:
            message = MessageWriter().long(self._server_id).long(self._incoming)
            message.long(self._server_command_sequence)
            first = self._reliable_sequence - len(self._reliable) + 1
            for sequence, command in enumerate(self._reliable, start=first):
                message.byte(ClientOp.CLIENT_COMMAND).long(sequence).string(command)
            message.byte(ClientOp.EOF)
            payload = bytearray(message.data())
            sequence = self._outgoing
            self._outgoing += 1
            if self._legacy:
                key = (self._challenge ^ self._server_id ^ self._incoming) & 0xFF
                text = self._server_commands.get(self._server_command_sequence % RELIABLE_SLOTS, b"")
                _scramble(payload, CLIENT_SCRAMBLE_FROM, key, text)
                header = struct.pack("<IH", sequence, self._qport)
            else:
                header = struct.pack("<IHI", sequence, self._qport, _checksum(self._challenge, sequence))
        self._sock.send(header + payload)

    def _receive(self, packet: bytes) -> None:
        header = 4 if self._legacy else 8  # the sequence, then protocol 71's checksum
        if packet.startswith(OUT_OF_BAND) or len(packet) < header:
            return  # a late handshake answer, or a "disconnect" after we left
        (sequence,) = struct.unpack_from("<I", packet)
        fragmented = bool(sequence & FRAGMENT_BIT)
        sequence &= ~FRAGMENT_BIT
        checksum = None if self._legacy else struct.unpack_from("<I", packet, 4)[0]
        if checksum is not None and checksum != _checksum(self._challenge, sequence):
            return  # spoofed: Netchan_Process drops it too
        if sequence <= self._incoming:
            return  # duplicated or out of order
        payload = self._reassemble(sequence, packet[header:]) if fragmented else packet[header:]
        if payload is None:
            return
        with self._lock:
            self._incoming = sequence
            # A part we do not read (snapshots) or a damaged tail: what we read before it still counts.
            with contextlib.suppress(ValueError):
                self._parse(self._unscrambled(sequence, payload))

    def _unscrambled(self, sequence: int, payload: bytes) -> MessageReader:
        if not self._legacy:
            return MessageReader(payload)
        acknowledged = MessageReader(payload).long()  # readable: scrambling starts after it
        data = bytearray(payload)
        text = self._sent_commands.get(acknowledged % RELIABLE_SLOTS, b"")
        _scramble(data, SERVER_SCRAMBLE_FROM, (self._challenge ^ sequence) & 0xFF, text)
        return MessageReader(bytes(data))

    def _reassemble(self, sequence: int, body: bytes) -> bytes | None:
        if len(body) < 4:
            return None
        start, length = struct.unpack_from("<HH", body)
        if sequence != self._fragment_sequence:
            self._fragment_sequence = sequence
            self._fragments.clear()
        if start != len(self._fragments) or length > len(body) - 4 or start + length > MAX_MESSAGE:
            return None
        self._fragments += body[4:4 + length]
        if length == FRAGMENT_SIZE:
            return None
        whole = bytes(self._fragments)
        self._fragments.clear()
        return whole

    def _parse(self, message: MessageReader) -> None:
        """CL_ParseServerMessage, as far as a client that never enters the world needs."""
        acknowledged = message.long()  # the last of our client commands the server executed
        while self._reliable and self._reliable_sequence - len(self._reliable) < acknowledged:
            self._reliable.pop(0)
        while True:
            op = message.byte()
            if op == ServerOp.NOP:
                continue
            if op == ServerOp.SERVER_COMMAND:
                sequence = message.long()
                text = message.string().encode("latin-1")
                if sequence > self._server_command_sequence:
                    self._server_commands[sequence % RELIABLE_SLOTS] = text
                    self._server_command_sequence = sequence
            elif op == ServerOp.GAMESTATE:
                self._parse_gamestate(message)
                return
            else:
                return  # a snapshot, a download, the end: nothing more we need

    def _parse_gamestate(self, message: MessageReader) -> None:
        self._server_command_sequence = message.long()
        while message.byte() == ServerOp.CONFIGSTRING:
            index = message.short()
            text = message.string()
            if index == CS_SYSTEMINFO:
                server_id = _info_value(text, "sv_serverid")
                if server_id is not None and server_id.lstrip("-").isdigit():
                    self._server_id = int(server_id)
                    self._primed.set()
                return  # baselines follow, which only a client that draws the world reads

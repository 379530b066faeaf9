"""Quake III's adaptive Huffman coder, bit for bit as ioquake3 codes it.

Two uses, one tree algorithm: the ``connect`` packet's userinfo is compressed by a fresh adaptive tree
(``compress``/``decompress``), and every netchan payload is coded by one fixed tree grown from the
protocol's table of byte weights (``MessageWriter``/``MessageReader``). A server only understands a
client whose trees evolve exactly like its own, so the update rules (ranks kept in a linked list,
blocks of equal weight, the sibling-swap quirk) follow ioquake3's behaviour, not a textbook's.
"""

from __future__ import annotations

import functools
import struct
from typing import Final

__all__ = [
    "MESSAGE_WEIGHTS", "NYT", "HuffmanTree", "MessageReader", "MessageWriter", "compress", "decompress",
    "message_tree",
]

SYMBOLS: Final = 256
NYT: Final = 256  # "not yet transmitted": the escape leaf before a byte's first literal
INTERNAL: Final = 257
LITERAL_BITS: Final = 8
LENGTH_PREFIX: Final = 2  # compress(): the plain length, big-endian, precedes the code

# The netchan's fixed tree is grown by adding each byte value this many times, in byte order: id
# Software's measured byte frequencies, part of the wire protocol (a client with other weights is
# unintelligible to every server).
MESSAGE_WEIGHTS: Final[tuple[int, ...]] = (
    250315, 41193, 6292, 7106, 3730, 3750, 6110, 23283, 33317, 6950, 7838, 9714,
    9257, 17259, 3949, 1778, 8288, 1604, 1590, 1663, 1100, 1213, 1238, 1134,
    1749, 1059, 1246, 1149, 1273, 4486, 2805, 3472, 21819, 1159, 1670, 1066,
    1043, 1012, 1053, 1070, 1726, 888, 1180, 850, 960, 780, 1752, 3296,
    10630, 4514, 5881, 2685, 4650, 3837, 2093, 1867, 2584, 1949, 1972, 940,
    1134, 1788, 1670, 1206, 5719, 6128, 7222, 6654, 3710, 3795, 1492, 1524,
    2215, 1140, 1355, 971, 2180, 1248, 1328, 1195, 1770, 1078, 1264, 1266,
    1168, 965, 1155, 1186, 1347, 1228, 1529, 1600, 2617, 2048, 2546, 3275,
    2410, 3585, 2504, 2800, 2675, 6146, 3663, 2840, 14253, 3164, 2221, 1687,
    3208, 2739, 3512, 4796, 4091, 3515, 5288, 4016, 7937, 6031, 5360, 3924,
    4892, 3743, 4566, 4807, 5852, 6400, 6225, 8291, 23243, 7838, 7073, 8935,
    5437, 4483, 3641, 5256, 5312, 5328, 5370, 3492, 2458, 1694, 1821, 2121,
    1916, 1149, 1516, 1367, 1236, 1029, 1258, 1104, 1245, 1006, 1149, 1025,
    1241, 952, 1287, 997, 1713, 1009, 1187, 879, 1099, 929, 1078, 951,
    1656, 930, 1153, 1030, 1262, 1062, 1214, 1060, 1621, 930, 1106, 912,
    1034, 892, 1158, 990, 1175, 850, 1121, 903, 1087, 920, 1144, 1056,
    3462, 2240, 4397, 12136, 7758, 1345, 1307, 3278, 1950, 886, 1023, 1112,
    1077, 1042, 1061, 1071, 1484, 1001, 1096, 915, 1052, 995, 1070, 876,
    1111, 851, 1059, 805, 1112, 923, 1103, 817, 1899, 1872, 976, 841,
    1127, 956, 1159, 950, 7791, 954, 1289, 933, 1127, 3207, 1020, 927,
    1355, 768, 1040, 745, 952, 805, 1073, 740, 1013, 805, 1008, 796,
    996, 1057, 11457, 13504,
)


class _Block:
    """The shared cell of all nodes of one weight; ``leader`` is the highest-ranked of them."""

    __slots__ = ("leader",)

    def __init__(self, leader: _Node | None) -> None:
        self.leader = leader


class _Node:
    __slots__ = ("block", "left", "nxt", "parent", "prev", "right", "symbol", "weight")

    def __init__(self, symbol: int, weight: int) -> None:
        self.symbol = symbol
        self.weight = weight
        self.parent: _Node | None = None
        self.left: _Node | None = None
        self.right: _Node | None = None
        self.nxt: _Node | None = None  # toward higher rank
        self.prev: _Node | None = None
        self.block: _Block = _Block(None)


class HuffmanTree:
    """One adaptive tree: starts as the lone NYT leaf and grows with every ``add``."""

    def __init__(self) -> None:
        self._nyt = _Node(NYT, 0)
        self._root = self._nyt
        self._leaves: list[_Node | None] = [None] * (SYMBOLS + 1)
        self._leaves[NYT] = self._nyt

    def known(self, byte: int) -> bool:
        return self._leaves[byte] is not None

    def add(self, byte: int) -> None:
        """Count one more occurrence of ``byte``, reshaping the tree as ioquake3's coder does."""
        leaf = self._leaves[byte]
        if leaf is not None:
            self._increment(leaf)
            return
        nyt = self._nyt
        inner = _Node(INTERNAL, 1)
        inner.nxt = nyt.nxt
        if nyt.nxt is not None:
            nyt.nxt.prev = inner
            inner.block = nyt.nxt.block if nyt.nxt.weight == 1 else _Block(inner)
        else:
            inner.block = _Block(inner)
        nyt.nxt = inner
        inner.prev = nyt
        leaf = _Node(byte, 1)
        leaf.nxt = inner
        inner.prev = leaf
        leaf.block = inner.block
        nyt.nxt = leaf
        leaf.prev = nyt
        parent = nyt.parent
        if parent is None:
            self._root = inner
        elif parent.left is nyt:
            parent.left = inner
        else:
            parent.right = inner
        inner.right = leaf
        inner.left = nyt
        inner.parent = parent
        nyt.parent = leaf.parent = inner
        self._leaves[byte] = leaf
        if parent is not None:
            self._increment(parent)

    def code(self, symbol: int) -> list[int]:
        """The path from the root to a known symbol's leaf (1 = right)."""
        node = self._leaves[symbol]
        if node is None:
            raise ValueError(f"byte {symbol} is not in the tree yet")
        bits: list[int] = []
        while node.parent is not None:
            bits.append(1 if node.parent.right is node else 0)
            node = node.parent
        bits.reverse()
        return bits

    def decode(self, bit: _BitSource) -> int:
        """Walk from the root, one bit a step, to a leaf's symbol (NYT included)."""
        node = self._root
        while node.symbol == INTERNAL:
            child = node.right if bit() else node.left
            if child is None:
                raise ValueError("the code leads nowhere in this tree")
            node = child
        return node.symbol

    def _increment(self, start: _Node) -> None:
        # Hot: growing the netchan's tree runs this a million times, hence one loop with locals.
        climbed: list[_Node] = []
        node: _Node | None = start
        while node is not None:
            weight = node.weight
            nxt = node.nxt
            if nxt is not None and nxt.weight == weight:
                # Take the place of the highest-ranked node of our weight before growing heavier.
                leader = node.block.leader
                assert leader is not None
                if leader is not node.parent:
                    self._swap_places(leader, node)
                _swap_ranks(leader, node)
                nxt = node.nxt
            prev = node.prev
            node.block.leader = prev if prev is not None and prev.weight == weight else None
            weight += 1
            node.weight = weight
            node.block = nxt.block if nxt is not None and nxt.weight == weight else _Block(node)
            climbed.append(node)
            node = node.parent
        # Then, from the top down, a node that now ranks just above its own parent trades ranks with it.
        for node in reversed(climbed[:-1]):
            parent = node.parent
            if parent is not None and node.prev is parent:
                _swap_ranks(node, parent)
                if node.block.leader is node:
                    node.block.leader = parent

    def _swap_places(self, one: _Node, two: _Node) -> None:
        # Two siblings end up unswapped here, exactly as in ioquake3: the second fix-up undoes the first.
        p1, p2 = one.parent, two.parent
        if p1 is None:
            self._root = two
        elif p1.left is one:
            p1.left = two
        else:
            p1.right = two
        if p2 is None:
            self._root = one
        elif p2.left is two:
            p2.left = one
        else:
            p2.right = one
        one.parent, two.parent = p2, p1


def _swap_ranks(one: _Node, two: _Node) -> None:
    """Exchange two nodes' places in the rank list (they may be neighbours)."""
    one.nxt, two.nxt = two.nxt, one.nxt
    one.prev, two.prev = two.prev, one.prev
    if one.nxt is one:
        one.nxt = two
    if two.nxt is two:
        two.nxt = one
    for node in (one, two):
        if node.nxt is not None:
            node.nxt.prev = node
        if node.prev is not None:
            node.prev.nxt = node


class _BitSource:
    """Reads bits least-significant first from each byte, as the engine packs them."""

    def __init__(self, data: bytes, start_bit: int = 0) -> None:
        self.data = data
        self.bit = start_bit
        self.limit = len(data) * 8

    def __call__(self) -> int:
        if self.bit >= self.limit:
            raise ValueError("the message ends in the middle of a code")
        value = (self.data[self.bit >> 3] >> (self.bit & 7)) & 1
        self.bit += 1
        return value


class _BitSink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.bit = 0

    def put(self, bit: int) -> None:
        if self.bit & 7 == 0:
            self.data.append(0)
        self.data[self.bit >> 3] |= bit << (self.bit & 7)
        self.bit += 1


def compress(data: bytes) -> bytes:
    """What ioquake3 sends for ``data`` (the part of an out-of-band packet after its first 12 bytes)."""
    if not data or len(data) > 0xFFFF:
        raise ValueError("only 1 to 65535 bytes can be compressed")
    tree = HuffmanTree()
    sink = _BitSink()
    for byte in struct.pack(">H", len(data)):
        for i in range(LITERAL_BITS):
            sink.put((byte >> i) & 1)
    limit = len(data) * 8
    for byte in data:
        path = tree.code(byte if tree.known(byte) else NYT)
        # The engine stops coding (and garbles the packet) once a code passes the plain length.
        if path and sink.bit + len(path) > limit:
            raise ValueError("this text does not compress; the server would read garbage")
        for b in path:
            sink.put(b)
        if not tree.known(byte):
            for i in reversed(range(LITERAL_BITS)):
                sink.put((byte >> i) & 1)
        tree.add(byte)
    return bytes(sink.data[: (sink.bit + LITERAL_BITS) >> 3].ljust((sink.bit + LITERAL_BITS) >> 3, b"\0"))


def decompress(data: bytes) -> bytes:
    """The text ``compress`` coded; refuses a code that ends early."""
    if len(data) < LENGTH_PREFIX:
        raise ValueError("no length prefix")
    (length,) = struct.unpack_from(">H", data)
    tree = HuffmanTree()
    bits = _BitSource(data, LENGTH_PREFIX * 8)
    out = bytearray()
    for _ in range(length):
        symbol = tree.decode(bits)
        if symbol == NYT:
            symbol = 0
            for _ in range(LITERAL_BITS):
                symbol = (symbol << 1) | bits()
        out.append(symbol)
        tree.add(symbol)
    return bytes(out)


class MessageWriter:
    """A netchan payload: whole bytes, each coded by the fixed tree (integers little-endian)."""

    def __init__(self) -> None:
        self._tree = message_tree()
        self._sink = _BitSink()

    def byte(self, value: int) -> MessageWriter:
        for b in self._tree.code(value & 0xFF):
            self._sink.put(b)
        return self

    def long(self, value: int) -> MessageWriter:
        for byte in struct.pack("<I", value & 0xFFFFFFFF):
            self.byte(byte)
        return self

    def string(self, text: str) -> MessageWriter:
        """As the engine writes strings: '%' and bytes past 127 become '.', then a NUL."""
        if "\0" in text:
            raise ValueError("a string on the wire ends at its first NUL; this one has one inside")
        for byte in text.encode("utf-8"):
            self.byte(ord(".") if byte > 127 or byte == ord("%") else byte)
        return self.byte(0)

    def data(self) -> bytes:
        # The engine's length counts the byte the next bit would start, even when it is empty.
        size = (self._sink.bit >> 3) + 1
        return bytes(self._sink.data[:size].ljust(size, b"\0"))


class MessageReader:
    """Reads a netchan payload the way the engine does; a message that ends early is refused."""

    def __init__(self, data: bytes) -> None:
        self._tree = message_tree()
        self._bits = _BitSource(data)

    def byte(self) -> int:
        symbol = self._tree.decode(self._bits)
        if symbol == NYT:
            raise ValueError("the fixed tree's escape is never sent")
        return symbol

    def short(self) -> int:
        (value,) = struct.unpack("<h", bytes((self.byte(), self.byte())))
        return int(value)

    def long(self) -> int:
        (value,) = struct.unpack("<i", bytes(self.byte() for _ in range(4)))
        return int(value)

    def string(self) -> str:
        out = bytearray()
        while (byte := self.byte()) != 0:
            out.append(byte)
        return out.decode("latin-1")


@functools.cache
def message_tree() -> HuffmanTree:
    """The netchan's fixed tree (built once: a million updates take a few seconds)."""
    tree = HuffmanTree()
    for byte, weight in enumerate(MESSAGE_WEIGHTS):
        for _ in range(weight):
            tree.add(byte)
    return tree

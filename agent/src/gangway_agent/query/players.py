"""Who is on the game: a count and, where the protocol gives them, names cleaned for a Discord message."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

# The contract's bounds for the `players` event (contract/README.md).
MAX_NAMES: Final = 64
MAX_NAME_CHARS: Final = 64


@dataclass(frozen=True)
class Players:
    """What one query said: ``names`` is None when the protocol gives no names (or hides them), and may
    be shorter than ``count`` (Minecraft's sample holds at most 12; the contract keeps at most 64)."""

    count: int
    names: tuple[str, ...] | None = None

    @classmethod
    def of(cls, count: int, names: tuple[str, ...] | None) -> Players:
        """Names that outnumber the count cannot say who is who (A2S lists bots, which its count leaves
        out; plugins pad Minecraft's sample): then they are unknown."""
        return cls(count, names if names is None or len(names) <= count else None)


def _printable(name: str) -> str:
    return "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")


def clean_names(raw: Iterable[str], colour: re.Pattern[str] | None = None) -> tuple[str, ...]:
    """Names as people read them: colour codes and control characters gone, each run of spaces one plain
    space, trimmed to 64 characters, empty ones dropped (a client still connecting), at most 64 of them."""
    names: list[str] = []
    for name in raw:
        text = " ".join(_printable(colour.sub("", name) if colour is not None else name).split())
        if text:
            names.append(text[:MAX_NAME_CHARS].rstrip())
        if len(names) == MAX_NAMES:
            break
    return tuple(names)

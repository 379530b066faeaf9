"""What a stage costs per month sitting idle, from the template's resources and `deploy/prices.json`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["PRICES", "IdleCost", "idle_cost"]

PRICES: Final = Path(__file__).resolve().parent / "prices.json"


@dataclass(frozen=True)
class IdleCost:
    """The idle monthly total and its lines: (resource type, count, USD each, USD together)."""

    total: float
    lines: tuple[tuple[str, int, float, float], ...]
    source: str

    def table(self) -> str:
        rows = [f"{'resource type':<42} {'n':>3} {'each':>7} {'month':>7}"]
        rows += [f"{t:<42} {n:>3} {e:>7.2f} {s:>7.2f}" for t, n, e, s in self.lines if s]
        rows.append(f"{'idle total (USD/month)':<42} {'':>3} {'':>7} {self.total:>7.2f}")
        rows.append(f"prices: {self.source}")
        return "\n".join(rows)


def idle_cost(template: Mapping[str, Any], prices: Path = PRICES) -> IdleCost:
    """Price every resource of `template`. Raises KeyError for a type prices.json does not list."""
    table = json.loads(prices.read_text())
    counts = Counter(r["Type"] for r in template["Resources"].values())
    lines = []
    for rtype, n in sorted(counts.items()):
        if rtype not in table["monthly"]:
            raise KeyError(f"{rtype} has no idle price in {prices.name}: add it (with its source)")
        each = float(table["monthly"][rtype]["usd"])
        lines.append((rtype, n, each, round(n * each, 2)))
    total = round(sum(line[3] for line in lines), 2)
    return IdleCost(total, tuple(lines), f"{table['source']} ({table['date']})")

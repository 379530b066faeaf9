"""What a game costs: per hour played and per month at rest, from the dated price table beside it.

Pure (no AWS calls): the numbers come from `prices.json`, which names its source and date, so an
estimate can always say where it came from. Spot is a range, never one number: its price moves by
zone and hour.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

__all__ = ["HOURS_PER_MONTH", "PRICES", "Estimate", "NoPrice", "estimate", "price_table"]

PRICES: Final = Path(__file__).resolve().parent / "prices.json"
# AWS bills GB-months over 730 hours (365 * 24 / 12).
HOURS_PER_MONTH: Final = 730.0


class NoPrice(LookupError):
    """The table has no price for this region or instance type."""


@dataclass(frozen=True)
class Estimate:
    """USD for one game's choices; Spot is a (low, high) range."""

    region: str
    instance_type: str
    disk_gb: int
    on_demand_hourly: float
    spot_hourly: tuple[float, float]
    idle_monthly: float
    source: str

    def lines(self, *, spot: bool) -> list[str]:
        """The estimate in words, the way `/games NAME` shows it."""
        od = f"~${self.on_demand_hourly:.3f}/h on-demand"
        low, high = self.spot_hourly
        sp = f"~${low:.3f} to ${high:.3f}/h on Spot"
        played = f"{sp} (or {od})" if spot else f"{od} (or {sp})"
        return [
            f"Played: {played}: `{self.instance_type}`, {self.disk_gb} GB gp3 disk, public IPv4",
            f"Idle: ~${self.idle_monthly:.2f}/month: the snapshot at rest (at most {self.disk_gb} GB; "
            "only used blocks count)",
            f"Estimate from list prices in `{self.region}` ({self.source}); not a bill",
        ]


@lru_cache(maxsize=1)
def price_table(path: Path = PRICES) -> dict[str, Any]:
    """The parsed table (read once per process)."""
    table: dict[str, Any] = json.loads(path.read_text())
    return table


def estimate(region: str, instance_type: str, disk_gb: int, table: dict[str, Any] | None = None) -> Estimate:
    """The estimate for running `instance_type` with a `disk_gb` data disk in `region`.

    Played per hour = instance + the gp3 volume's hourly share + the public IPv4 address. Idle per
    month = snapshot storage of the whole disk (an upper bound: snapshots store used blocks only).

    Raises:
        NoPrice: the region or instance type is not in the table.
    """
    table = table if table is not None else price_table()
    prices = table["regions"].get(region)
    if prices is None:
        raise NoPrice(f"no prices for region {region}")
    hourly = prices["on_demand_hourly"].get(instance_type)
    if hourly is None:
        raise NoPrice(f"no price for {instance_type} in {region}")
    disk_hourly = disk_gb * float(prices["gp3_gb_month"]) / HOURS_PER_MONTH
    extra = disk_hourly + float(prices["public_ipv4_hourly"])
    spot = table["spot"]
    low = float(hourly) * (1 - float(spot["savings_high"])) + extra
    high = float(hourly) * (1 - float(spot["savings_low"])) + extra
    return Estimate(
        region=region,
        instance_type=instance_type,
        disk_gb=disk_gb,
        on_demand_hourly=round(float(hourly) + extra, 4),
        spot_hourly=(round(low, 4), round(high, 4)),
        idle_monthly=round(disk_gb * float(prices["snapshot_gb_month"]), 2),
        source=str(table["as_of"]),
    )

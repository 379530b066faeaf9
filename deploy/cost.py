"""What a stage costs per month: sitting idle (the template's resources priced from `deploy/prices.json`),
and with a community playing the default game for some hours (`chalicelib/games/prices.json`)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["PLAY_HOURS", "PRICES", "IdleCost", "PlayCost", "deployed_outside", "idle_cost", "play_cost"]

PRICES: Final = Path(__file__).resolve().parent / "prices.json"
# The month the cost goal is written for (issue 16.3): a community that plays 20 hours.
PLAY_HOURS: Final = 20.0


@dataclass(frozen=True)
class IdleCost:
    """The idle monthly total and its lines: (resource type, count, USD each, USD together)."""

    total: float
    lines: tuple[tuple[str, int, float, float], ...]
    source: str
    # Made by `make deploy` outside the template (SecureString parameters): listed even at $0.
    outside: tuple[str, ...] = ()

    def table(self) -> str:
        rows = [f"{'resource type':<42} {'n':>3} {'each':>7} {'month':>7}"]
        rows += [f"{t:<42} {n:>3} {e:>7.2f} {s:>7.2f}" for t, n, e, s in self.lines if s or t in self.outside]
        rows.append(f"{'idle total (USD/month)':<42} {'':>3} {'':>7} {self.total:>7.2f}")
        rows.append(f"prices: {self.source}")
        return "\n".join(rows)


@dataclass(frozen=True)
class PlayCost:
    """One month with `hours` of play of one game, beside the idle stack: on-demand and a Spot range."""

    hours: float
    instance_type: str
    disk_gb: int
    region: str
    idle: float
    on_demand: float  # the hours on-demand: instance, gp3 volume while it exists, public IPv4
    spot: tuple[float, float]
    snapshot: float  # the world's snapshot all month (upper bound: the whole disk)
    source: str

    @property
    def total_on_demand(self) -> float:
        return round(self.idle + self.on_demand + self.snapshot, 2)

    @property
    def total_spot(self) -> tuple[float, float]:
        low, high = self.spot
        return round(self.idle + low + self.snapshot, 2), round(self.idle + high + self.snapshot, 2)

    def table(self) -> str:
        low, high = self.spot
        tlow, thigh = self.total_spot
        what = f"{self.hours:g} h of play a month on {self.instance_type} with {self.disk_gb} GB"
        return "\n".join(
            [
                f"{what} in {self.region}:",
                f"  {'':<12} {'play':>13} {'snapshot':>9} {'idle stack':>11} {'month':>13}",
                f"  {'on-demand':<12} {self.on_demand:>13.2f} {self.snapshot:>9.2f} {self.idle:>11.2f} "
                f"{self.total_on_demand:>13.2f}",
                f"  {'Spot':<12} {f'{low:.2f}-{high:.2f}':>13} {self.snapshot:>9.2f} {self.idle:>11.2f} "
                f"{f'{tlow:.2f}-{thigh:.2f}':>13}",
                f"  snapshot: at most {self.disk_gb} GB all month (only used blocks are billed); requests "
                "(Lambda, DynamoDB, SQS, Step Functions, IoT) of a month's play: cents, not counted",
                f"  game prices: {self.source}",
            ]
        )


def deployed_outside() -> dict[str, int]:
    """What `make deploy` makes beside the template (type → count): its SecureString parameters, free but
    listed, so the bill shows where the secrets went."""
    from deploy.template import SECURE_PARAMETERS

    return {"SSM SecureString (standard, make deploy)": len(SECURE_PARAMETERS)}


def idle_cost(
    template: Mapping[str, Any], prices: Path = PRICES, *, outside: Mapping[str, int] | None = None
) -> IdleCost:
    """Price every resource of `template`, and `outside` (type → count) that `make deploy` makes beside it.

    Raises KeyError for a type prices.json does not list.
    """
    table = json.loads(prices.read_text())
    counts = Counter(r["Type"] for r in template["Resources"].values() if "Type" in r)
    counts.update(outside or {})
    lines = []
    for rtype, n in sorted(counts.items()):
        if rtype not in table["monthly"]:
            raise KeyError(f"{rtype} has no idle price in {prices.name}: add it (with its source)")
        each = float(table["monthly"][rtype]["usd"])
        lines.append((rtype, n, each, round(n * each, 2)))
    total = round(sum(line[3] for line in lines), 2)
    return IdleCost(total, tuple(lines), f"{table['source']} ({table['date']})", tuple(outside or ()))


def play_cost(
    idle: IdleCost,
    *,
    hours: float = PLAY_HOURS,
    region: str = "us-east-1",
    instance_type: str | None = None,
    disk_gb: int | None = None,
) -> PlayCost:
    """`hours` of one game in one month, on top of the idle stack: the default game (`GameSettings()`:
    what a custom /newgame proposes) unless a size is given (a catalogue entry's). Raises
    chalicelib.games.NoPrice when the region or type has no price."""
    from chalicelib.games import GameSettings
    from chalicelib.games.cost import estimate

    default = GameSettings()
    size, disk = instance_type or default.instance_type, disk_gb or default.disk_gb
    est = estimate(region, size, disk)
    low, high = est.spot_hourly
    return PlayCost(
        hours=hours,
        instance_type=size,
        disk_gb=disk,
        region=region,
        idle=idle.total,
        on_demand=round(hours * est.on_demand_hourly, 2),
        spot=(round(hours * low, 2), round(hours * high, 2)),
        snapshot=est.idle_monthly,
        source=est.source,
    )

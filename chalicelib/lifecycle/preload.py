"""How a disk made from a snapshot is warmed before players arrive: StartGame's preload modes
(DESIGN.md §2), what they cost, and turning fast snapshot restore off whatever happens.

`rate`: CreateVolume with a provisioned initialisation rate. `fsr`: fast snapshot restore on for the
snapshot in the instance's zone only, until the volume exists, and never left on (the compensation turns
it off too). `read`: the agent starts without the game, reads every block, then starts the game. The
steps that do each are in start_game.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Final

from chalicelib.games import Game
from chalicelib.games.cost import price_table
from chalicelib.instances import Ec2Gateway

__all__ = ["FSR_HOURLY_USD", "INIT_RATE_MIBS", "fast_restore_off", "fsr_hourly", "preload_mode"]

log = logging.getLogger(__name__)

# EBS Provisioned Rate for Volume Initialization of the `rate` preload mode (MiB/s).
INIT_RATE_MIBS: Final = 200
# Fast snapshot restore is billed per snapshot and zone, per hour it is on, at least one hour
# (https://aws.amazon.com/ebs/pricing/): the figure people are told comes from the repo's price table.
FSR_HOURLY_USD: Final = float(price_table()["regions"]["us-east-1"]["fsr_dsu_hourly"])


def preload_mode(game: Game, *, reused: bool) -> str:
    """What preloading this start does: nothing to preload without a snapshot (a first start), and a
    volume kept from a failed stop already exists (only `read` can still warm it)."""
    if not game.resources.snapshot_id:
        return "off"
    if reused:
        return "read" if game.settings.preload == "read" else "off"
    return game.settings.preload if game.settings.preload in {"rate", "fsr", "read"} else "off"


def fsr_hourly(region: str) -> float:
    """What fast snapshot restore costs an hour in `region` (the repo's price table)."""
    prices = price_table()["regions"].get(region, {})
    return float(prices.get("fsr_dsu_hourly", FSR_HOURLY_USD))


def fast_restore_off(ec2: Ec2Gateway, data: Mapping[str, Any]) -> str:
    """Compensation: fast snapshot restore off if this start may have turned it on; tries a few times,
    and says so (with what it costs) if it is still on, for someone to turn it off."""
    launch = data.get("launch", {})
    if launch.get("preload") != "fsr" or not launch.get("snapshot_id") or not launch.get("zone"):
        return ""
    snap, zone = str(launch["snapshot_id"]), str(launch["zone"])
    problem = ""
    for attempt in range(3):
        try:
            ec2.disable_fast_restore(snap, zone)
        except Exception as exc:
            problem = str(exc)[:200]
            log.warning("fast snapshot restore of %s in %s still on (try %d)", snap, zone, attempt + 1)
            time.sleep(1 + attempt)
            continue
        return ""
    return (
        f" Warning: fast snapshot restore could not be turned off for snapshot `{snap}` in {zone} "
        f"({problem}); it costs about ${FSR_HOURLY_USD:.2f} an hour until it is: an admin can turn it "
        "off in the EC2 console (Snapshots → Manage fast snapshot restore)."
    )

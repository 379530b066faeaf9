"""The idle bill and a month of play into bench/results.json (issue 16.3), from the template `make
template` built: the same figures `make cost` prints, priced by deploy/cost.py.

* `idle_usd_month`: the stage with nothing running (goal ≤ $0.50).
* `play_20h_usd`: one month with 20 hours of play, on-demand and the Spot range, its snapshot and the
  idle stack included: for the default size a custom /newgame proposes, and for the size the catalogue
  recommends for a small game (OpenArena's entry).

Run from the repo root after `make template` (or `make bench`, which builds it):
`.venv/bin/python bench/cost.py [--stage dev]`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cold_start import write_results  # noqa: E402
from chalicelib.catalogue import entry  # noqa: E402
from deploy.cost import deployed_outside, idle_cost, play_cost  # noqa: E402

IDLE_GOAL_USD: Final = 0.50
SMALL_GAME: Final = "openarena"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    args = parser.parse_args(argv)
    built = ROOT / "build" / args.stage / "sam.json"
    if not built.exists():
        sys.stderr.write(f"{built} is missing: run `make template STAGE={args.stage}` first\n")
        return 2
    idle = idle_cost(json.loads(built.read_text()), outside=deployed_outside())
    found = entry(SMALL_GAME)
    if found is None:
        sys.stderr.write(f"the catalogue has no {SMALL_GAME!r} entry\n")
        return 2
    small = found.sizes
    plays = {
        "default": play_cost(idle),
        SMALL_GAME: play_cost(idle, instance_type=small.x86, disk_gb=small.disk_gb),
    }
    figures = {
        "idle_usd_month": idle.total,
        "idle_goal_usd_month": IDLE_GOAL_USD,
        "play_20h_usd": {
            name: {
                "hours": play.hours,
                "instance_type": play.instance_type,
                "disk_gb": play.disk_gb,
                "region": play.region,
                "on_demand": play.total_on_demand,
                "spot": list(play.total_spot),
                "snapshot": play.snapshot,
            }
            for name, play in plays.items()
        },
        "stage": args.stage,
    }
    print("\n\n".join([idle.table(), *(play.table() for play in plays.values())]))
    write_results({"cost": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())

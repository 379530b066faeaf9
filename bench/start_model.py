"""Start-to-playable of a game with a 10 GiB world, modelled per preload mode (issue 16.5), from what
this machine measures (bench/first_boot.py's second boot: an instance booted with its game's disk, the
agent kept there) and what AWS and public measurements publish for the parts no machine here can run.

StartGame (chalicelib/workflows/start-game.asl.json) launches first, then makes the volume from the
snapshot in the instance's zone and attaches it; the agent waits for the disk. So, from the /start:

* `playable_s`: launch + kernel boot + the measured boot to the agent's `ready` + the game's own start
  (0 here: a game's own loading is its own; `catalogue` in results.json has a real one through the stack).
  The disk may still be cold: blocks never read come from S3 on first touch.
* `warm_s`: when every block is served at the volume's full speed:
  - `off`: never before the game has read it all (AWS publishes no lazy-loading throughput): null.
  - `rate`: the provisioned initialisation rate (INIT_RATE_MIBS) fills the volume in size/rate seconds
    from CreateVolume, alongside the boot: max(playable, volume made + size/rate). Goal ≤ 60 s.
  - `read`: the agent reads every block before the game starts, at most at gp3's baseline throughput:
    the game starts after that read, so playable = warm.
  - `fsr`: fast snapshot restore enabled at the start has no volume-creation credit yet (the bucket
    starts empty and refills at min(10, 1024/size GiB) an hour), so the volume is made cold, as `off`,
    unless a credit exists: warm only for starts at least one refill interval after enabling.

Run from the repo root after bench/first_boot.py (`make bench` runs both):
`.venv/bin/python bench/start_model.py`. Merges its JSON under "start_model" into bench/results.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cold_start import RESULTS, write_results  # noqa: E402
from chalicelib.lifecycle.preload import INIT_RATE_MIBS  # noqa: E402

WORLD_GIB: Final = 10
GOAL_S: Final = 60.0
# Published figures, each with where it comes from (reference/peers.md has the EBS ones' sources too).
RUN_INSTANCES_API_S: Final = 4.9  # brevdev/ec2-coldboot-research (2025): 19 % of 25.8 s, cold launch
PENDING_TO_RUNNING_S: Final = 16.5  # ibid., 16.4-16.6 s for t3/m6i/m7i/c7i/r7i alike
KERNEL_BOOT_S: Final = 3.1  # ibid., running to SSH (12 %): firmware and kernel, which nspawn skips
GP3_BASELINE_MIBS: Final = 125  # docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html (gp3)
SOURCES: Final = {
    "launch": "https://github.com/brevdev/ec2-coldboot-research (API 4.9 s, pending to running 16.5 s, "
    "boot to SSH 3.1 s)",
    "init_rate": "https://docs.aws.amazon.com/ebs/latest/userguide/initalize-volume.html (100-300 MiB/s)",
    "gp3": "https://docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html (125 MiB/s baseline)",
    "fsr": "https://docs.aws.amazon.com/ebs/latest/userguide/ebs-fast-snapshot-restore.html (credits)",
}


def model(boot_to_ready_s: float, game_start_s: float, world_gib: int = WORLD_GIB) -> dict[str, Any]:
    """Each preload mode's playable and warm times (seconds from the /start's RunInstances)."""
    mib = world_gib * 1024
    running = RUN_INSTANCES_API_S + PENDING_TO_RUNNING_S
    playable = running + KERNEL_BOOT_S + boot_to_ready_s + game_start_s
    volume_made = RUN_INSTANCES_API_S  # CreateVolume right after the launch, in its zone
    read_all = mib / GP3_BASELINE_MIBS
    refill_per_hour = min(10.0, 1024 / world_gib)
    modes: dict[str, dict[str, Any]] = {
        "off": {"playable_s": playable, "warm_s": None},
        "rate": {"playable_s": playable, "warm_s": max(playable, volume_made + mib / INIT_RATE_MIBS)},
        "read": {"playable_s": playable + read_all, "warm_s": playable + read_all},
        "fsr": {
            "playable_s": playable,
            "warm_s": None,
            # The credit bucket starts empty when FSR is switched on (SOURCES["fsr"]).
            "first_credit_after_enable_s": 3600 / refill_per_hour,
        },
    }
    for figures in modes.values():
        for key in ("playable_s", "warm_s", "first_credit_after_enable_s"):
            if isinstance(figures.get(key), float):
                figures[key] = round(figures[key], 1)
    return {
        "world_gib": world_gib,
        "modes": modes,
        "goal_rate_warm_s": GOAL_S,
        "rate_meets_goal": modes["rate"]["warm_s"] <= GOAL_S,
        "measured": {"boot_to_ready_s": boot_to_ready_s, "game_start_s": game_start_s},
        "published": {
            "run_instances_api_s": RUN_INSTANCES_API_S,
            "pending_to_running_s": PENDING_TO_RUNNING_S,
            "kernel_boot_s": KERNEL_BOOT_S,
            "init_rate_mibs": INIT_RATE_MIBS,
            "gp3_baseline_mibs": GP3_BASELINE_MIBS,
        },
        "sources": SOURCES,
    }


def _measured() -> float:
    """The second boot's boot-to-ready (an instance with its game's disk), from results.json."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    second = results.get("first_boot", {}).get("second_boot", {}).get("boot_to_ready_s")
    if second is None:
        raise SystemExit("bench/results.json has no first_boot.second_boot: run bench/first_boot.py first")
    return float(second)


def main() -> int:
    figures = model(_measured(), 0.0) | {
        "note": "the game's own loading is the game's: counted as 0 here; bench/catalogue.py measures a "
        "real catalogue game's /start to playable through the stack (under catalogue)"
    }
    print(json.dumps(figures, indent=2))
    write_results({"start_model": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Start-to-playable for a real catalogue game through the local stack: OpenArena (Debian's
`openarena-server`, players by Quake 3's `getstatus`), from a signed `/start` to the edit of its reply
that says playable, on instances the start workflow launches and that boot here as Debian 12.

The figures come from tests/test_booted_catalogue_life.py, run here whole (its fixtures are the stack:
the emulator, the Discord stand-in, the TLS broker, the IoT rule's bridge, the pump and the booted
instances; this bench adds no second copy of them). Its times go to a file named by $GANGWAY_BENCH_OUT:

* `first_start_s`: the first /start, from zero: capacity, launch, boot, the agent from the wheelhouse,
  the install (apt from a local repository of Debian's .debs, as the instance has no internet here:
  devstack/instance/aptrepo.py; from a mirror in AWS their ~420 MB transfer adds to it), the server up
  and answering its query.
* `second_start_s`: the /start from the snapshot the idle shutdown took: the packages are installed
  again from the copy kept on the data disk, nothing downloaded.

Root only; otherwise it records why it did not run. Run from the repo root:
`.venv/bin/python bench/catalogue.py` (or `make bench`); merges its JSON under "catalogue" into
bench/results.json. Everything it starts, the test stops.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.cold_start import write_results  # noqa: E402

TEST: Final = "tests/test_booted_catalogue_life.py"


def measure(work: Path) -> dict[str, Any]:
    out = work / "times.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", TEST],
        cwd=ROOT, env={**os.environ, "GANGWAY_BENCH_OUT": str(out)},
        capture_output=True, text=True, check=False, timeout=1800,
    )
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"{TEST} failed (exit {done.returncode}): {done.stdout[-3000:]}")
    times: dict[str, float] = json.loads(out.read_text())
    return {"game": "openarena-server (apt) through the stack", **times}


def main() -> int:
    if os.geteuid() != 0 or shutil.which("systemd-nspawn") is None:
        result: dict[str, Any] = {"skipped": "needs root and systemd-nspawn (make system-deps, as root)"}
    else:
        with tempfile.TemporaryDirectory(prefix="gangway-bench-catalogue-") as tmp:
            result = measure(Path(tmp))
    print(json.dumps(result, indent=2))
    write_results({"catalogue": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())

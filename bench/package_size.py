"""What Lambda loads: the sizes of the package `make deploy` builds, split as deploy/package.py splits it.

Builds stage dev's package into a temporary folder (`chalice package`, then the split) and prints the
function package (every function's code and vendored libraries, beyond the Lambda runtime) and web
push's layer (the steps function's only), unpacked and zipped. Target: the function package ≤ 10 MB
unpacked. Run from the repo root: `.venv/bin/python bench/package_size.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cold_start import write_results  # noqa: E402
from deploy.package import sizes  # noqa: E402
from deploy.stack import Deployment  # noqa: E402

STAGE: Final = "dev"
TARGET_MB: Final = 10.0


def main() -> int:
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory(prefix=f"gangway-package-{os.getpid()}-") as tmp:
        try:
            Deployment(STAGE, build_dir=Path(tmp), say=lambda _: None).build()
        except subprocess.CalledProcessError as exc:
            print(f"BENCH FAILED: building the package: {exc}", file=sys.stderr)
            return 1
        got = sizes(Path(tmp) / STAGE / "deployment.zip")
    figures = {
        "package_function_unpacked_mb": round(got.function_unpacked / 1e6, 2),
        "package_function_zipped_mb": round(got.function_zipped / 1e6, 2),
        "package_push_layer_unpacked_mb": round(got.layer_unpacked / 1e6, 2),
        "package_push_layer_zipped_mb": round(got.layer_zipped / 1e6, 2),
    }
    write_results(figures)
    print(json.dumps(figures, indent=2))
    unpacked = figures["package_function_unpacked_mb"]
    if unpacked > TARGET_MB:
        print(f"TARGET MISSED: package_function_unpacked_mb {unpacked} > {TARGET_MB}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Print the tally `make fuzz` collected (one JSON line per door) and fail when a door got fewer inputs
than asked: `python -m tests.fuzz_report build/fuzz.jsonl`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "build/fuzz.jsonl")
    if not path.exists():
        print(f"no fuzz tally at {path}: did the fuzz tests run?")
        return 1
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    width = max(len(r["door"]) for r in rows) if rows else 10
    short = []
    print(f"{'door':<{width}}  {'inputs':>7}  outcomes")
    for r in rows:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items(), key=lambda kv: -kv[1]))
        print(f"{r['door']:<{width}}  {r['inputs']:>7}  {outcomes}")
        if r["inputs"] < r["asked"]:
            short.append(f"{r['door']}: {r['inputs']} of {r['asked']}")
    print(f"{len(rows)} doors, {sum(r['inputs'] for r in rows)} inputs, no 5xx, crash, retry or changed row")
    if short:
        print("fewer inputs than asked: " + "; ".join(short))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

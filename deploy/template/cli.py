"""`python -m deploy.template --stage dev --out build/dev.resources.json`: write a stage's merge template."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from deploy.template.compose import build
from deploy.template.introspect import app_facts
from deploy.template.stage import Stage
from deploy.template.workflows import WORKFLOWS

__all__ = ["main"]

_ABOUT: Final = (
    "The resources Chalice does not make, for one stage, as a template to merge into Chalice's own."
)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the merge template; 1 when app.py has a function the stage does not configure."""
    parser = argparse.ArgumentParser(prog="python -m deploy.template", description=_ABOUT)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--out", required=True, help="where to write the merge template")
    parser.add_argument("--workflows", default=str(WORKFLOWS), help="folder of *.asl.json state machines")
    args = parser.parse_args(argv)
    stage = Stage.load(args.stage)
    facts = app_facts(stage)
    unconfigured = sorted(set(facts.functions) - set(stage.functions))
    if unconfigured:
        sys.stderr.write(
            f"functions without an entry in .chalice/config.json stages.{stage.name}.lambda_functions "
            f"(iam_policy_file: ../policies/<name>.json, lambda_timeout): {', '.join(unconfigured)}\n"
        )
        return 1
    template = build(stage, facts.tables, workflows=Path(args.workflows), handlers=facts.handlers)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(template, indent=2) + "\n")
    sys.stderr.write(f"wrote {out}: {len(template['Resources'])} resources\n")
    return 0

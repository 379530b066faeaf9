"""`python -m deploy {build,deploy,destroy,rotate-token,rotate-link-key,cost,check}`: what the Makefile's
targets run."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from deploy.cost import deployed_outside, idle_cost, play_cost
from deploy.policy import policy_problems, template_policies
from deploy.stack import Deployment
from deploy.template import ROOT


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, about in (
        ("build", "write build/<stage>/sam.json (merged) and deployment.zip"),
        ("deploy", "build, deploy the stack, upload the site, register the commands"),
        ("destroy", "back up the tables, empty the site bucket, delete the stack"),
        ("rotate-token", "store DISCORD_BOT_TOKEN and recycle the functions' containers"),
        ("rotate-link-key", "a new IPAuth link key (the old one still opens links) and fresh containers"),
        ("cost", "the idle monthly cost of the built template, and with 20 h of play"),
        ("check", "the least-privilege check of policies/*.json and the built template"),
    ):
        p = sub.add_parser(name, help=about)
        p.add_argument("--stage", required=True)
        p.add_argument("--build-dir", default=str(ROOT / "build"))
        if name in ("deploy", "destroy", "rotate-token", "rotate-link-key"):
            p.add_argument("--dry-run", action="store_true", help="print what would be done; call nothing")
        if name == "deploy":
            p.add_argument("--guild", help="register the commands to this guild only (instant)")
            p.add_argument("--no-build", action="store_true", help="use build/<stage>/ as it is")
    args = parser.parse_args(argv)
    dep = Deployment(args.stage, build_dir=Path(args.build_dir), dry_run=getattr(args, "dry_run", False))
    built = Path(args.build_dir) / args.stage / "sam.json"
    if args.cmd == "build":
        dep.build()
    elif args.cmd == "deploy":
        template = built if args.no_build else dep.build()
        dep.deploy(template, guild=args.guild)
    elif args.cmd == "destroy":
        dep.destroy()
    elif args.cmd == "rotate-token":
        token = os.environ.get("DISCORD_BOT_TOKEN", "")
        if not token:
            sys.stderr.write("set DISCORD_BOT_TOKEN to the new token\n")
            return 2
        dep.rotate_token(token)
    elif args.cmd == "rotate-link-key":
        dep.rotate_link_keys()
    elif args.cmd == "cost":
        outside = deployed_outside()
        idle = idle_cost(json.loads(built.read_text()), outside=outside)
        sys.stdout.write(idle.table() + "\n\n" + play_cost(idle).table() + "\n")
    else:
        problems = [
            p
            for f in sorted((ROOT / "policies").glob("*.json"))
            for p in policy_problems(json.loads(f.read_text()), f.name)
        ]
        tpl = json.loads(built.read_text())
        problems += [
            p
            for where, kind, doc in template_policies(tpl)
            for p in policy_problems(doc, where, kind=kind, stage=args.stage)
        ]
        sys.stdout.write("\n".join(problems or ["least privilege: no problems"]) + "\n")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Builds the ASL files that share states, so each shared state is written once.

StartGame and EditGame bring a host up with the same states (`src/start-host.states.json`). Each
workflow's source, `src/<workflow>.workflow.json`, is its ASL with every shared state named, not
copied: `"Launch": {"$shared": "start-host", "Next": "FastRestore"}`. A shared state whose successor
differs between the workflows has no `Next` in the fragment; the reference must give one.

The built `<workflow>.asl.json` files stay checked in, because deploy/, devstack and the tests read
them directly. tests/test_workflow_compose.py fails when one differs from what this module builds.
After changing a source, run `python -m chalicelib.workflows.compose --write` (or `make workflows`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from chalicelib.workflows.engine import DEFINITIONS

__all__ = ["SOURCES", "ComposeError", "compose", "main", "render", "stale", "write"]

SOURCES: Final = DEFINITIONS / "src"
_SHARED: Final = "$shared"
_WORKFLOW_SUFFIX: Final = ".workflow.json"
_FRAGMENT_SUFFIX: Final = ".states.json"
# States that never take a `Next` (ASL spec: Choice routes through Choices/Default; Succeed and Fail end).
_NO_NEXT: Final = frozenset({"Choice", "Succeed", "Fail"})


class ComposeError(ValueError):
    """A workflow source that cannot be built (bad reference, missing or extra `Next`, partial fragment)."""


def _load(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("States"), dict):
        raise ComposeError(f"{path.name}: not an object with States")
    return doc


def _open_ended(state: Mapping[str, Any]) -> bool:
    """True if the fragment leaves this state's successor to the workflow that includes it."""
    return "Next" not in state and not state.get("End") and state.get("Type") not in _NO_NEXT


def _resolve(name: str, ref: Mapping[str, Any], fragments: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The shared state `ref` names, with the reference's `Next` appended (last, as the ASL files have it)."""
    extra = set(ref) - {_SHARED, "Next"}
    if extra:
        raise ComposeError(f"{name}: a shared reference takes only $shared and Next, not {sorted(extra)}")
    fragment = fragments.get(ref[_SHARED])
    if fragment is None:
        raise ComposeError(f"{name}: no fragment {ref[_SHARED]!r} in src/")
    if name not in fragment:
        raise ComposeError(f"{name}: not a state of {ref[_SHARED]}")
    state = dict(fragment[name])
    if _open_ended(state) != ("Next" in ref):
        need = "needs" if _open_ended(state) else "must not have"
        raise ComposeError(f"{name}: {need} a Next here ({ref[_SHARED]} decides it otherwise)")
    if "Next" in ref:
        state["Next"] = ref["Next"]
    return state


def compose(workflow: str, sources: Path = SOURCES) -> dict[str, Any]:
    """The ASL document of `workflow`, built from `sources`/<workflow>.workflow.json.

    Raises:
        ComposeError: the source names a missing fragment or state, gets a `Next` wrong, or includes
            only part of a fragment (whose own transitions would then dangle).
    """
    doc = _load(sources / f"{workflow}{_WORKFLOW_SUFFIX}")
    fragments = {
        p.name.removesuffix(_FRAGMENT_SUFFIX): _load(p)["States"]
        for p in sorted(sources.glob(f"*{_FRAGMENT_SUFFIX}"))
    }
    states: dict[str, Any] = {}
    used: dict[str, set[str]] = {}
    for name, state in doc["States"].items():
        if _SHARED in state:
            states[name] = _resolve(name, state, fragments)
            used.setdefault(state[_SHARED], set()).add(name)
        else:
            states[name] = state
    for fragment, names in used.items():
        missing = [n for n in fragments[fragment] if n not in names]
        if missing:
            raise ComposeError(f"{workflow}: uses {fragment} without {missing}")
    return {**doc, "States": states}


def render(workflow: str, sources: Path = SOURCES) -> str:
    """The `<workflow>.asl.json` text: 2-space JSON, ASCII (readers use the locale's encoding), newline."""
    return json.dumps(compose(workflow, sources), indent=2) + "\n"


def _built(sources: Path) -> dict[str, str]:
    return {
        p.name.removesuffix(_WORKFLOW_SUFFIX): render(p.name.removesuffix(_WORKFLOW_SUFFIX), sources)
        for p in sorted(sources.glob(f"*{_WORKFLOW_SUFFIX}"))
    }


def stale(sources: Path = SOURCES, out: Path = DEFINITIONS) -> list[str]:
    """The workflows whose checked-in `*.asl.json` differs from what their source builds."""
    return [
        name
        for name, text in _built(sources).items()
        if not (out / f"{name}.asl.json").is_file() or (out / f"{name}.asl.json").read_text() != text
    ]


def write(sources: Path = SOURCES, out: Path = DEFINITIONS) -> list[str]:
    """Rewrite the stale `*.asl.json` files in `out`; returns their workflow names."""
    changed = stale(sources, out)
    built = _built(sources)
    for name in changed:
        (out / f"{name}.asl.json").write_text(built[name])
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """`--write` rebuilds the stale files; without it, exit 1 naming them (for CI and pre-commit)."""
    parser = argparse.ArgumentParser(prog="python -m chalicelib.workflows.compose", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the stale *.asl.json files")
    args = parser.parse_args(argv)
    names = write() if args.write else stale()
    for name in names:
        sys.stdout.write(f"{'wrote' if args.write else 'stale'}: {name}.asl.json\n")
    return 0 if args.write or not names else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The ASL files built from shared states (chalicelib/workflows/compose.py): the checked-in files are the
golden output, so a shared state edited in src/ without `--write` fails here, and the sources spell each
state once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.workflows import DEFINITIONS
from chalicelib.workflows.compose import SOURCES, ComposeError, compose, main, render, stale, write

BUILT = sorted(p.name.removesuffix(".workflow.json") for p in SOURCES.glob("*.workflow.json"))


def test_start_game_and_edit_game_are_built() -> None:
    assert BUILT == ["edit-game", "start-game"]


@pytest.mark.parametrize("workflow", BUILT)
def test_checked_in_definition_is_what_its_source_builds(workflow: str) -> None:
    assert (DEFINITIONS / f"{workflow}.asl.json").read_text() == render(workflow), (
        f"run `python -m chalicelib.workflows.compose --write` ({workflow}.asl.json is stale)"
    )


def test_the_command_finds_nothing_stale() -> None:
    assert stale() == []
    assert main([]) == 0


def test_start_and_edit_share_the_host_states_apart_from_where_they_go_next() -> None:
    start, edit = (compose(w)["States"] for w in ("start-game", "edit-game"))
    host = json.loads((SOURCES / "start-host.states.json").read_text())["States"]
    for name, state in host.items():
        for built in (start[name], edit[name]):
            assert {k: v for k, v in built.items() if k in state or k != "Next"} == state, name
    opens = {name for name, state in host.items() if "Next" not in state and state["Type"] != "Choice"}
    assert opens == {"Launch", "VolumeReady", "WaitAgent", "Running", "Compensate"}
    assert all(start[name]["Next"] != edit[name]["Next"] for name in opens)
    # The differences: StartGame preloads, starts the game and pushes; EditGame flags itself and does none.
    assert set(start) - set(host) == {
        "FastRestore", "FastRestoreOn", "FastRestoreReady", "FastRestoreDone", "FastRestoreOff",
        "ReadDisk", "PreloadRead", "GameStart", "NotifyPlayers", "Started", "StartFailed",
    }  # fmt: skip
    assert set(edit) - set(host) == {"Editing", "UpForEditing", "EditFailed"}


def test_no_source_spells_a_state_another_already_spells() -> None:
    """Copies creep back as inline states equal (Next aside) to one elsewhere; each lives in src/ once."""
    seen: dict[str, str] = {}
    for path in sorted(SOURCES.glob("*.json")):
        for name, state in json.loads(path.read_text())["States"].items():
            if "$shared" in state:
                continue
            key = json.dumps({k: v for k, v in state.items() if k != "Next"}, sort_keys=True)
            assert key not in seen, f"{path.name}'s {name} repeats {seen.get(key)}: move it to a fragment"
            seen[key] = f"{path.name}'s {name}"


# -- the rules, on small sources -------------------------------------------------------------------


def _sources(tmp_path: Path, states: dict[str, Any]) -> Path:
    fragment = {
        "States": {
            "A": {"Type": "Pass", "Next": "B"},
            "B": {"Type": "Pass"},
            "Done": {"Type": "Succeed"},
        }
    }
    (tmp_path / "ab.states.json").write_text(json.dumps(fragment))
    (tmp_path / "demo.workflow.json").write_text(json.dumps({"StartAt": "A", "States": states}))
    return tmp_path


WHOLE: dict[str, Any] = {
    "A": {"$shared": "ab"},
    "B": {"$shared": "ab", "Next": "Mine"},
    "Mine": {"Type": "Pass", "Next": "Done"},
    "Done": {"$shared": "ab"},
}


def test_a_reference_becomes_the_shared_state_with_its_next_last(tmp_path: Path) -> None:
    doc = compose("demo", _sources(tmp_path, WHOLE))
    assert doc == {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Next": "B"},
            "B": {"Type": "Pass", "Next": "Mine"},
            "Mine": {"Type": "Pass", "Next": "Done"},
            "Done": {"Type": "Succeed"},
        },
    }
    assert list(doc["States"]) == ["A", "B", "Mine", "Done"]  # the source's order, so diffs stay small


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"B": {"$shared": "ab"}}, "B: needs a Next"),
        ({"A": {"$shared": "ab", "Next": "Mine"}}, "A: must not have a Next"),
        ({"Done": {"$shared": "ab", "Next": "A"}}, "Done: must not have a Next"),
        ({"A": {"$shared": "nope"}}, "no fragment 'nope'"),
        ({"Mine": {"$shared": "ab"}}, "Mine: not a state of ab"),
        ({"A": {"$shared": "ab", "Comment": "x"}}, "takes only $shared and Next"),
        ({"Done": {"Type": "Succeed"}}, "uses ab without ['Done']"),
    ],
)
def test_a_wrong_reference_is_refused(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ComposeError, match=message.replace("$", r"\$").replace("[", r"\[")):
        compose("demo", _sources(tmp_path, {**WHOLE, **change}))


def test_write_rewrites_only_the_stale_files(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    sources = _sources(tmp_path / "src", WHOLE)
    assert stale(sources, tmp_path) == ["demo"]  # not built yet
    assert write(sources, tmp_path) == ["demo"]
    assert json.loads((tmp_path / "demo.asl.json").read_text()) == compose("demo", sources)
    assert stale(sources, tmp_path) == []
    assert write(sources, tmp_path) == []

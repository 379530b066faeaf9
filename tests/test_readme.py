"""The README, verbatim (DESIGN.md §2): every command it shows is run here exactly as written, from the
repository root with the defaults, and every sample output it shows is checked against what ran.

A person's terminal is the model: `make run` in one (its own process group, Ctrl-C at the end), the
README's `gangway discord` lines in another, in the README's order, each once and exactly as written
(`/games game:valheim` again while it polls a game's state). A test that started the stack any other
way (`--state-dir`, `--auto-ports`, `python -m devstack`) would prove nothing about the README: the
relative `.local` of `make run` once left every local agent unable to read its config.

`make test` is the one command shown and not run: it is what CI runs, and this test runs inside it.
Any other command the README gains fails this test until the test runs it; any ```sh or ```text block
is a command block or a sample output, and any other kind of block fails it too.

The defaults use fixed ports (8000-8002, 1883, 5000): when one is taken (say by your own `make run`)
the test skips, and under CI=true it fails saying which. About 100 s on a busy 2-core machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.access_helpers import require_program
from tests.stack_runner import clean_env

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PORTS = (8000, 8001, 8002, 1883, 5000)
CI = os.environ.get("CI", "").lower() == "true"
GAME = "valheim"

_FENCE = re.compile(r"^```(\S*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_COMMENT = re.compile(r"\s+#\s.*$")


# -- what the README shows -------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """The README's fenced blocks: the command lines of its ```sh blocks, its ```text samples."""

    commands: list[str]
    samples: list[str]


def shown(text: str) -> Shown:
    """Every ```sh line is a command (comments stay on it: the shell ignores them); ```text is sample
    output; any other block is refused, so nothing command-like hides in an unchecked block."""
    commands: list[str] = []
    samples: list[str] = []
    for match in _FENCE.finditer(text):
        kind, body = match.group(1), match.group(2)
        if kind == "sh":
            commands += [line for line in body.splitlines() if line.strip() and not line.startswith("#")]
        elif kind == "text":
            samples.append(body)
        else:
            raise AssertionError(f"README.md has a ```{kind} block: mark it sh (run here) or text (sample)")
    assert not any(c.rstrip().endswith("\\") for c in commands), "one command per line, please"
    return Shown(commands, samples)


def bare(command: str) -> str:
    """The command without its trailing comment (the same words the shell runs)."""
    stripped = _COMMENT.sub("", command)
    assert shlex.split(stripped) == shlex.split(command, comments=True), command
    return stripped


def test_the_readme_blocks_are_commands_or_samples_and_make_test_is_shown() -> None:
    blocks = shown(README.read_text())
    assert "make test" in [bare(c) for c in blocks.commands]
    assert len(blocks.samples) == 2  # make run's output; /games and /status (checked in the walk below)
    with pytest.raises(AssertionError, match="```console"):
        shown("```console\n$ make run\n```\n")


def _sample_matches(sample: str, output: str) -> list[str]:
    """The sample's lines missing from `output`, in order: "..." marks a cut, `<…>` a placeholder, and a
    number may differ (a port is fixed, a duration or an id is not)."""
    lines = output.splitlines()
    at, missing = 0, []
    for line in sample.splitlines():
        if line.strip() == "...":
            continue
        parts = re.split(r"(<[^<>]+>|\d+)", line)
        pattern = "".join(
            r"[^/\"\s]+" if p.startswith("<") and p.endswith(">") else r"\d+" if p.isdigit() else re.escape(p)
            for p in parts
        )
        found = next((i for i in range(at, len(lines)) if re.fullmatch(pattern, lines[i])), None)
        if found is None:
            missing.append(line)
        else:
            at = found + 1
    return missing


def test_the_sample_matcher_allows_cuts_placeholders_and_numbers_only() -> None:
    out = '{\n  "path": "/webhooks/123/tok/x",\n  "took": "in 64 ms",\n  "a": 1\n}'
    assert _sample_matches('{\n  "path": "/webhooks/<id>/<token>/x",\n  ...\n  "a": 1\n}', out) == []
    assert _sample_matches('  "took": "in 7 ms",', out) == []
    assert _sample_matches('  "a": 1\n  "took": "in 7 ms",', out) == ['  "took": "in 7 ms",']  # order
    assert _sample_matches('  "took": "in 64 s",', out) == ['  "took": "in 64 s",']


# -- the two terminals -------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    """A person's shell: none of this test session's settings, no make of an outer `make test`."""
    env = clean_env()
    return {k: v for k, v in env.items() if not k.startswith(("MAKE", "MFLAGS"))}


def _busy(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _cannot(reason: str) -> None:
    if CI:
        pytest.fail(f"CI=true and the README's `make run` cannot run here: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class Terminal:
    """The second terminal: runs README lines from the repository root and keeps what they printed."""

    log: Path
    ran: list[str] = field(default_factory=list)
    printed: dict[str, list[str]] = field(default_factory=dict)

    def run(self, command: str) -> dict[str, Any]:
        done = subprocess.run(  # noqa: S602 - the README's line, exactly as a person types it
            command, shell=True, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"`{command}` failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        self.ran.append(command)
        self.printed.setdefault(bare(command), []).append(done.stdout)
        answer: dict[str, Any] = {}
        text, at = done.stdout, 0
        while text[at:].strip():  # the answer, then (deferred) the follow-ups: one JSON document each
            at += len(text[at:]) - len(text[at:].lstrip())
            doc, at = json.JSONDecoder().raw_decode(text, at)
            answer.update(doc)
        return answer

    def stack_said(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


@pytest.fixture(scope="module")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terminal]:
    """`make run` as written, in its own process group; Ctrl-C (SIGINT to the group) at the end, and
    nothing of it left running."""
    require_program("mosquitto", "/usr/sbin/mosquitto")
    require_program("make")
    busy = [p for p in PORTS if _busy(p)]
    if busy:
        _cannot(f"port(s) {', '.join(map(str, busy))} already in use (is a `make run` up?)")
    build = subprocess.run(
        ["make", "-n", "venv"], cwd=ROOT, env=_env(), capture_output=True, text=True, check=False
    )
    if "pip install" in build.stdout:  # CI's `make test` built it just before; a person's clone may not
        _cannot(".venv is not built from the current requirements (`make venv` first)")
    state = ROOT / ".local" / "stack.json"
    state.unlink(missing_ok=True)  # the ports are free, so no stack is up: a crashed run's leftover
    log = tmp_path_factory.mktemp("readme") / "make-run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["make", "run"],
            cwd=ROOT,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    term = Terminal(log)
    try:
        deadline = time.monotonic() + 90
        while not state.exists():
            assert proc.poll() is None, f"`make run` ended ({proc.returncode}):\n{term.stack_said()}"
            assert time.monotonic() < deadline, f"`make run` did not write {state}:\n{term.stack_said()}"
            time.sleep(0.2)
        deadline = time.monotonic() + 10  # stack.json first, then the lines a person reads
        while "ready:" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        yield term
    finally:
        _ctrl_c(proc)
    assert not state.exists(), "Ctrl-C left .local/stack.json behind"
    assert not [p for p in PORTS if _busy(p)], "Ctrl-C left a part of the stack listening"


def _ctrl_c(proc: subprocess.Popen[bytes]) -> None:
    """What Ctrl-C does in a terminal: SIGINT to the foreground group (make, the stack, Mosquitto)."""
    group = proc.pid
    try:
        os.killpg(group, signal.SIGINT)
    except ProcessLookupError:  # it ended by itself (the fixture's assertion says why)
        return
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(group, signal.SIGKILL)
        proc.wait(timeout=10)
        raise AssertionError("`make run` did not stop within 40 s of Ctrl-C") from None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(group, signal.SIGKILL)
    raise AssertionError("Ctrl-C left a process of `make run` running")


# -- the tour ----------------------------------------------------------------------------------------


def _text(answer: dict[str, Any]) -> str:
    return json.dumps(answer, ensure_ascii=False)


def _status(answer: dict[str, Any]) -> str:
    """`/games game:<name>`'s Status field, in words (DESIGN.md §2a)."""
    embed = answer["response"]["data"]["embeds"][0]
    return str(next(f["value"] for f in embed["fields"] if f["name"] == "Status"))


def _until(term: Terminal, command: str, state: str, within: float) -> None:
    """Runs the README's `/games game:<name>` line until the game is in `state`."""
    deadline, seen = time.monotonic() + within, []
    while time.monotonic() < deadline:
        seen.append(_status(term.run(command)))
        if seen[-1] == state:
            return
        assert seen[-1] not in {"stopped", "running"} - {state}, f"{GAME} went {seen[-1]}, not {state}"
        time.sleep(1)
    raise AssertionError(f"{GAME} not {state} within {within:.0f}s (seen {seen})\n{term.stack_said()}")


@pytest.mark.stack
def test_the_readme_tour_runs_as_written(make_run: Terminal) -> None:
    term = make_run
    blocks = shown(README.read_text())
    cmd = {bare(c): c for c in blocks.commands}
    games_line = f'.venv/bin/gangway discord "/games game:{GAME}"'  # shown twice, with two comments
    expect = ""  # the state the game's last action leads to, which its `/games` line waits for

    def setup(a: dict[str, Any]) -> None:
        assert a["response"]["type"] == 4 and "connected to gangway" in _text(a)

    def main_role(a: dict[str, Any]) -> None:
        assert a["response"]["type"] == 7 and "Saved the main role" in _text(a)

    def no_games(a: dict[str, Any]) -> None:
        assert "This server has no games yet. Create one with `/newgame`." in _text(a)

    def status(a: dict[str, Any]) -> None:
        assert a["response"]["type"] == 5
        assert "gangway is working here" in _text(a["follow_ups"][-1]["json"]), a

    def member_games(a: dict[str, Any]) -> None:
        assert "An admin can create one with `/newgame`." in _text(a)

    def newgame(a: dict[str, Any]) -> None:
        data = a["response"]["data"]
        assert (a["response"]["type"], data["custom_id"]) == (9, "games:create")
        assert data["components"][0]["component"]["value"] == GAME  # prefilled

    def submitted(a: dict[str, Any]) -> None:
        nonlocal expect
        assert f"Creating **{GAME}** (Vikings)" in _text(a)
        expect = "stopped"

    def start(a: dict[str, Any]) -> None:
        nonlocal expect
        assert f"Starting **{GAME}**" in _text(a)
        expect = "running"

    def stop(a: dict[str, Any]) -> None:
        assert f"Stopping **{GAME}**" in _text(a)
        last = [c for c in blocks.commands if bare(c) == games_line][-1]  # "then /games again"
        _until(term, last, "stopped", 90)

    checks: dict[str, Callable[[dict[str, Any]], None]] = {
        '.venv/bin/gangway discord "/setup"': setup,
        ".venv/bin/gangway discord --component setup:main --values 400000000000000001": main_role,
        '.venv/bin/gangway discord "/games"': no_games,
        '.venv/bin/gangway discord "/status"': status,
        '.venv/bin/gangway discord "/games" --member --roles 400000000000000001': member_games,
        f'.venv/bin/gangway discord "/newgame name:{GAME}"': newgame,
        f".venv/bin/gangway discord --modal games:create --field name={GAME} --field description=Vikings": (
            submitted
        ),
        f'.venv/bin/gangway discord "/start game:{GAME}"': start,
        f'.venv/bin/gangway discord "/stop game:{GAME}"': stop,
    }
    # `make test` is shown, not run (it runs this test); `make run` is the fixture, already up.
    not_run = [c for c in cmd if c not in checks and c not in {"make test", "make run", games_line}]
    assert not not_run, f"README.md shows commands this test does not run: {not_run}"
    assert "make run" in cmd
    for command in blocks.commands:
        key = bare(command)
        if key in ("make test", "make run"):
            continue
        if key == games_line:
            _until(term, command, expect, 90 if expect == "running" else 30)
            continue
        checks[key](term.run(command))
    assert set(checks) <= {bare(c) for c in term.ran}, "a check never ran"

    make_run_sample, games_status_sample = blocks.samples
    missing = _sample_matches(make_run_sample, term.log.read_text())
    assert not missing, f"`make run` printed none of these sample lines: {missing}\n{term.stack_said()}"
    printed = (
        term.printed['.venv/bin/gangway discord "/games"'][0]
        + term.printed['.venv/bin/gangway discord "/status"'][0]
    )
    missing = _sample_matches(games_status_sample, printed)
    assert not missing, f"/games and /status printed none of these sample lines: {missing}\n{printed}"

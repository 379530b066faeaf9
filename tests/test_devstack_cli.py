"""The `gangway` command line: `--state-dir` is absolute from the moment it is parsed.

`make run` passes the default, `.local`, a relative path; the local agents run with their instance's
folder as working directory, so a relative config path there made every agent exit ("cannot read
config .local/agents/i-…/agent.json") and no game ever reached RUNNING.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.agents import LocalAgents
from devstack.cli import main, parse_args
from devstack.stack import free_port


def test_the_default_state_dir_is_the_working_folders_dot_local_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = parse_args(["run"])
    assert args.state_dir == tmp_path / ".local"
    assert args.state_dir.is_absolute()


def test_a_relative_state_dir_is_resolved_against_the_working_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = parse_args(["--state-dir", "runs/one", "discord", "/games"])
    monkeypatch.chdir("/")  # later changes of folder do not move it
    assert args.state_dir == tmp_path / "runs" / "one"


def test_an_absolute_state_dir_is_kept(tmp_path: Path) -> None:
    assert parse_args(["--state-dir", str(tmp_path), "discord"]).state_dir == tmp_path


def test_the_local_agents_refuse_a_relative_state_dir() -> None:
    with pytest.raises(ValueError, match="absolute state directory"):
        LocalAgents(list, "mqtt://127.0.0.1:1883", Path(".local"), free_port=free_port)


def test_without_a_stack_the_cli_says_where_it_looked_as_the_user_wrote_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as ended:
        main(["discord", "/games"])
    assert ended.value.code == "no local stack found at .local/stack.json: start one with `make run`"


def test_a_form_is_submitted_field_by_field_and_a_field_without_a_name_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse_args(
        ["discord", "--modal", "games:create", "--field", "name=valheim", "--field", "description=a=b"]
    )
    assert (args.modal, args.field) == ("games:create", ["name=valheim", "description=a=b"])
    with pytest.raises(SystemExit):
        parse_args(["discord", "--modal", "games:create", "--field", "valheim"])
    assert "a form field is written name=value, got 'valheim'" in capsys.readouterr().err

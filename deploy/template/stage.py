"""A stage of `.chalice/config.json`, and the table and queue names it gives the app's settings.

The names come from `chalicelib.config.Settings` and the stage's variables alone (nothing is imported
under the stage's environment), so anything may ask for them in any process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

__all__ = ["ROOT", "Stage", "queue_names", "table_names"]

# The repository: deploy/template/stage.py is three levels down.
ROOT: Final = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Stage:
    """One stage of `.chalice/config.json`: its name, environment and Lambda functions."""

    name: str
    env: Mapping[str, str]
    functions: Mapping[str, Mapping[str, Any]]

    @classmethod
    def load(cls, name: str, config: Path = ROOT / ".chalice" / "config.json") -> Stage:
        """Read the stage from Chalice's config. Raises KeyError for a stage it does not define."""
        stage = json.loads(config.read_text())["stages"][name]
        return cls(
            name, dict(stage.get("environment_variables", {})), dict(stage.get("lambda_functions", {}))
        )

    @property
    def prefix(self) -> str:
        return f"gangway-{self.name}"

    @property
    def jobs_queue(self) -> str:
        return self.env.get("JOBS_QUEUE", f"{self.prefix}-jobs")


def table_names(stage: Stage) -> dict[str, str]:
    """Every table setting as environment variable -> the stage's table name."""
    return _setting_names(stage, "_table")


def queue_names(stage: Stage) -> dict[str, str]:
    """Every queue setting as environment variable -> the stage's queue name."""
    return _setting_names(stage, "_queue")


def _setting_names(stage: Stage, suffix: str) -> dict[str, str]:
    # A `*_table`/`*_queue` field of `Settings` is read from its upper-cased name (config.py); a stage
    # that does not set one gets `gangway-<stage>-<the default's suffix>`: a new one needs no config edit.
    from chalicelib.config import Settings

    names: dict[str, str] = {}
    for f in fields(Settings):
        if f.name.endswith(suffix) and isinstance(f.default, str):
            env = f.name.upper()
            names[env] = stage.env.get(env) or f"{stage.prefix}-{f.default.removeprefix('gangway-')}"
    return names

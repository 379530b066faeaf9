"""What the app declares for a stage (its tables, SQS handlers and functions), learned in a child process.

The PynamoDB models bind their table names, and app.py its SQS queues, from the environment once, at
import (`chalicelib.config.settings()` is cached). Importing them here under the stage's environment
would mean changing this process's `os.environ` and `sys.path`, and would give wrong names in a process
that imported them already (a test run, say). So a fresh interpreter is started with the stage's
environment, imports them the way Lambda and `chalice package` do, and prints what the template needs
as JSON: the names come from the app's own code, and this process is left as it was. Deriving the names
here instead would copy the binding rules the models and app.py follow, and could drift from them.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from deploy.template.cfn import Json
from deploy.template.stage import ROOT, Stage, queue_names, table_names
from deploy.template.tables import TableSpec

if TYPE_CHECKING:
    from pynamodb.models import Model

__all__ = ["AppFacts", "app_facts", "report_app"]

# The child's program: the repository first on its path (for `app` and `deploy`), then `report_app`.
_CHILD: Final = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from deploy.template.introspect import report_app; report_app()"
)


@dataclass(frozen=True)
class AppFacts:
    """What the app declares under one stage's environment."""

    tables: tuple[TableSpec, ...]  # one per PynamoDB model, by table name
    handlers: Mapping[str, str]  # function -> queue, for each `@app.on_sqs_message`
    functions: tuple[str, ...]  # every Lambda function Chalice makes of app.py


def app_facts(stage: Stage) -> AppFacts:
    """Import the models and app.py in a child process with the stage's environment; what they declare.

    The child gets this process's environment plus the stage's variables and every table and queue
    name, as the stage's Lambdas do. Raises CalledProcessError when they do not import (the child's
    traceback goes to stderr), and RuntimeError for a model whose table is not one of the stage's.
    """
    env = {**os.environ, **stage.env, **table_names(stage), **queue_names(stage)}
    child = [sys.executable, "-c", _CHILD, str(ROOT)]
    done = subprocess.run(child, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=True)
    raw = json.loads(done.stdout)
    facts = AppFacts(
        tables=tuple(TableSpec(t["name"], t["schema"], t["ttl"]) for t in raw["tables"]),
        handlers={str(fn): str(queue) for fn, queue in raw["handlers"].items()},
        functions=tuple(str(fn) for fn in raw["functions"]),
    )
    for table in facts.tables:
        if not table.name.startswith(stage.prefix + "-"):
            raise RuntimeError(
                f"a model is bound to table {table.name!r}, not a {stage.prefix}- table: "
                "is its setting a `*_table` field of chalicelib.config.Settings?"
            )
    return facts


def report_app() -> None:
    """The child's half: import the models, then app.py, and print their facts as JSON on stdout."""
    with contextlib.redirect_stdout(sys.stderr):  # whatever an import prints must not spoil the JSON
        models = _table_models()
        app = importlib.import_module("app").app
    from chalice.app import SQSEventConfig
    from pynamodb.attributes import TTLAttribute

    tables: list[Json] = []
    for model in models:
        ttl = [a.attr_name for a in model.get_attributes().values() if isinstance(a, TTLAttribute)]
        tables.append(
            {"name": model.Meta.table_name, "schema": model._get_schema(), "ttl": next(iter(ttl), None)}
        )
    handlers = {e.name: e.queue for e in app.event_sources if isinstance(e, SQSEventConfig) and e.queue}
    functions = ["api_handler"] if app.routes else []
    functions += [e.name for e in app.event_sources]
    functions += [f.name for f in app.pure_lambda_functions]
    json.dump({"tables": tables, "handlers": handlers, "functions": functions}, sys.stdout)


def _table_models() -> list[type[Model]]:
    # Every PynamoDB model in `chalicelib/*/models.py` with a table, sorted by table name.
    from pynamodb.models import Model

    for path in sorted((ROOT / "chalicelib").glob("*/models.py")):
        importlib.import_module(f"chalicelib.{path.parent.name}.models")
    found: list[type[Model]] = []
    todo = list(Model.__subclasses__())
    while todo:
        cls = todo.pop(0)
        todo += cls.__subclasses__()
        if cls.__module__.startswith("chalicelib.") and getattr(cls.Meta, "table_name", None):
            found.append(cls)
    return sorted(found, key=lambda c: c.Meta.table_name)

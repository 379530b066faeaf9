"""What the door fuzzers share: how many inputs each door gets, hostile values, the emulator's state
before and after, and the per-door tally `make fuzz` prints (docs/security.md).

`make test` runs each door with `GANGWAY_FUZZ_EXAMPLES` unset (a bounded run); `make fuzz` sets it to
10,000 and `GANGWAY_FUZZ_REPORT` to a file each door appends its tally to (`tests/fuzz_report.py`
prints it and fails when a door got fewer inputs than asked).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = [
    "EXAMPLES",
    "Door",
    "EmulatorState",
    "fuzz_settings",
    "hostile_json",
    "hostile_text",
    "mutate",
    "nested",
    "sqs_event",
]

EXAMPLES: Final = int(os.environ.get("GANGWAY_FUZZ_EXAMPLES", "100"))
REPORT: Final = os.environ.get("GANGWAY_FUZZ_REPORT", "")


def fuzz_settings() -> settings:
    """Hypothesis settings for a door: EXAMPLES inputs, no deadline (the emulator is shared), no
    example database (each run explores afresh)."""
    return settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


@dataclass
class Door:
    """One entry point's tally: inputs sent and what became of them."""

    name: str
    outcomes: Counter[str] = field(default_factory=Counter)

    def seen(self, outcome: str) -> None:
        self.outcomes[outcome] += 1

    @property
    def inputs(self) -> int:
        return sum(self.outcomes.values())

    def write(self) -> None:
        """Append the tally to the report `make fuzz` prints (when it asked for one)."""
        if REPORT:
            line = {"door": self.name, "inputs": self.inputs, "asked": EXAMPLES, "outcomes": self.outcomes}
            with open(REPORT, "a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")


# -- hostile values ----------------------------------------------------------------------------------

NASTY_STRINGS: Final = (
    "",
    " ",
    "\x00",
    "../../../../etc/passwd",
    "%s%s%s%n",
    "{0}{1}",
    "' OR '1'='1",
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "\u202eevil",
    "😀" * 50,
    "A" * 5000,
    "-1",
    "1e309",
    "NaN",
    "Infinity",
    "0x7fffffff",
    "99999999999999999999999",
    "i-0123456789abcdef0",
    "gangway/1/x/evt",
    "valheim",
    "100000000000000001",
    "null",
    "true",
    "[]",
    "{}",
)

hostile_text: Final = st.one_of(st.sampled_from(NASTY_STRINGS), st.text(max_size=60))

_scalars: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 10**40, 0, -1]),
    st.floats(),  # NaN and ±Infinity too: Python's json writes them and reads them back
    hostile_text,
)

hostile_json: Final = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(hostile_text, inner, max_size=6),
    max_leaves=25,
)


def nested(depth: int) -> str:
    """JSON nested deeper than Python's recursion limit can follow."""
    return "[" * depth + "]" * depth


def deep_json() -> st.SearchStrategy[str]:
    return st.sampled_from([500, 5000, 50000]).map(nested) | st.sampled_from(
        ['{"a":' * 3000 + "1" + "}" * 3000]
    )


def mutate(base: Any, path: tuple[Any, ...], value: Any, *, delete: bool = False) -> Any:
    """A deep copy of `base` with the item at `path` (keys or list indices, bounded) set to `value` or
    deleted; a path that leaves the structure sets the value where it stops."""
    out = json.loads(json.dumps(base))
    target = out
    for key in path[:-1]:
        nxt = _child(target, key)
        if not isinstance(nxt, dict | list):
            break
        target = nxt
    last = path[-1] if path else None
    if isinstance(target, dict) and isinstance(last, str):
        if delete:
            target.pop(last, None)
        else:
            target[last] = value
    elif isinstance(target, list) and target and isinstance(last, int):
        idx = last % len(target)
        if delete:
            target.pop(idx)
        else:
            target[idx] = value
    return out


def _child(node: Any, key: Any) -> Any:
    if isinstance(node, dict):
        return node.get(key) if isinstance(key, str) else None
    if isinstance(node, list) and node and isinstance(key, int):
        return node[key % len(node)]
    return None


def paths_of(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (dict keys and list indices), for mutation targets."""
    out: list[tuple[Any, ...]] = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths_of(v, (*prefix, i))
    return out


def mutations_of(bases: list[Any]) -> st.SearchStrategy[Any]:
    """Valid messages with one to three items replaced by hostile values, deleted, or given an
    unexpected extra key."""

    def one(base: Any) -> st.SearchStrategy[Any]:
        paths = paths_of(base) or [("x",)]
        step = st.tuples(st.sampled_from(paths), hostile_json, st.booleans()).map(
            lambda t: (t[0], t[1], t[2] and len(t[0]) > 0)
        )
        extra = st.tuples(hostile_text, hostile_json)

        def apply(args: tuple[list[tuple[tuple[Any, ...], Any, bool]], list[tuple[str, Any]]]) -> Any:
            steps, extras = args
            out = base
            for path, value, delete in steps:
                out = mutate(out, path, value, delete=delete)
            if isinstance(out, dict):
                for k, v in extras:
                    out[k] = v
            return out

        return st.tuples(st.lists(step, min_size=1, max_size=3), st.lists(extra, max_size=1)).map(apply)

    return st.sampled_from(bases).flatmap(one)


def bodies(bases: list[Any]) -> st.SearchStrategy[str]:
    """Queue or request bodies: mutated valid messages most of the time, else the valid ones, any JSON,
    deep nesting, or text that is not JSON at all."""
    return st.one_of(
        st.sampled_from(bases).map(json.dumps),  # the valid ones too: the door must still let them in
        mutations_of(bases).map(json.dumps),
        mutations_of(bases).map(json.dumps),
        mutations_of(bases).map(json.dumps),
        hostile_json.map(json.dumps),
        deep_json(),
        st.text(max_size=300),
    )


def sqs_event(body: str, receives: int = 1) -> dict[str, Any]:
    """One SQS record as the Lambda event source delivers it."""
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "fuzz",
                "body": body,
                "attributes": {"ApproximateReceiveCount": str(receives)},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:fuzz",
                "awsRegion": "us-east-1",
            }
        ]
    }


# -- the emulator's state ----------------------------------------------------------------------------


class EmulatorState:
    """Every DynamoDB row and SQS message count in the embedded emulator (moto runs in this process),
    except tables that exist to count or log refusals (the rate limiter's, the audit log)."""

    def __init__(self, *ignored_tables: str) -> None:
        self._ignored = set(ignored_tables)
        _stop_running_workflows()


    def take(self) -> dict[str, str]:
        from moto.dynamodb.models import dynamodb_backends
        from moto.sqs.models import sqs_backends

        out: dict[str, str] = {}
        for account, regions in list(dynamodb_backends.items()):
            for region, backend in list(regions.items()):
                for name, table in list(backend.tables.items()):
                    if name in self._ignored:
                        continue
                    for item in table.all_items():
                        row = json.dumps(item.to_json(), sort_keys=True, default=str)
                        key = hashlib.sha256(row.encode()).hexdigest()[:16]
                        out[f"dynamodb/{account}/{region}/{name}/{key}"] = row
        for account, sqs_regions in list(sqs_backends.items()):
            for region, sqs in list(sqs_regions.items()):
                for name, q in list(sqs.queues.items()):
                    out[f"sqs/{account}/{region}/{name}"] = str(len(q._messages))
        return out

    @staticmethod
    def diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
        """What changed, readably (empty when nothing did)."""
        gone = [f"- {before[k][:300]}" for k in before.keys() - after.keys()]
        new = [f"+ {after[k][:300]}" for k in after.keys() - before.keys()]
        changed = [f"~ {k}: {before[k]} → {after[k]}" for k in before.keys() & after.keys() if before[k] != after[k]]
        return gone + new + changed


def _stop_running_workflows() -> None:
    """Stop the workflows earlier tests of this session left running: moto's parser backend runs each
    execution in a thread, and a step it takes during a door (a retry or timeout sending to the steps
    queue) would read as a change the door's input made."""
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    for regions in list(stepfunctions_parser_backends.values()):
        for backend in list(regions.values()):
            for machine in list(backend.state_machines):
                for execution in list(machine.executions):
                    try:
                        running = execution.status == "RUNNING"
                    except AttributeError:  # the parser's execution before its worker gave it a status
                        running = False
                    if running:
                        backend.stop_execution(execution.execution_arn)

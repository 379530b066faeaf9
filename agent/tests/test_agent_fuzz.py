"""The agent's doors under generated hostile input: every MQTT request it accepts (through
`Agent.handle`, with an in-memory link and scripted system commands) and its config file.

Properties: every request gets exactly one on-contract reply; never an unhandled exception (the
agent's "internal error" reply); a request refused as malformed runs no command and changes no state.
A config file is loaded or refused with a ConfigError, nothing else. `GANGWAY_FUZZ_EXAMPLES` sets the
inputs per door and `GANGWAY_FUZZ_REPORT` where the tally goes (the backend's tests/fuzzing.py; the
agent never imports the backend).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_fakes import FakeClock, MemoryLink, ScriptedRunner, config_dict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gangway_agent import config
from gangway_agent.activity import SocketTables, Watched
from gangway_agent.agent import Agent, Services
from gangway_agent.config import Ports
from gangway_agent.errors import ConfigError, ErrorCode
from gangway_agent.firewall import Firewall
from gangway_agent.logsink import BatchingSink, FileShipper
from gangway_agent.protocol import parse_outgoing
from gangway_agent.seams import Completed

CONTRACT = Path(__file__).resolve().parents[1] / "contract"
EXAMPLES = int(os.environ.get("GANGWAY_FUZZ_EXAMPLES", "100"))
REFUSALS = {
    ErrorCode.BAD_JSON, ErrorCode.BAD_ENVELOPE, ErrorCode.TOO_LARGE, ErrorCode.UNKNOWN_TYPE,
    ErrorCode.BAD_BODY,
}
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
    ],
)


def _write_tally(door: str, outcomes: Counter[str]) -> None:
    report = os.environ.get("GANGWAY_FUZZ_REPORT")
    if report:
        line = {"door": door, "inputs": sum(outcomes.values()), "asked": EXAMPLES, "outcomes": outcomes}
        with open(report, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


# -- hostile values (the backend's tests/fuzzing.py has the same kinds) -----------------------------------

_text = st.one_of(
    st.sampled_from(["", "\x00", "../../etc/passwd", "A" * 5000, "1e309", "NaN", "198.51.100.7", "::1",
                     "0.0.0.0/0", "2001:db8::/32", "; rm -rf /", "$(reboot)", "-1", "full", "delta"]),
    st.text(max_size=40),
)
_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from([2**64, -(2**63)]) | st.floats() | _text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_text, inner, max_size=5),
    max_leaves=20,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _set(base: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    out = json.loads(json.dumps(base))
    target = out
    for key in path[:-1]:
        target = target[key]
    if delete and isinstance(target, dict):
        target.pop(path[-1], None)
    elif delete and isinstance(target, list):
        target.pop(path[-1])
    else:
        target[path[-1]] = value
    return out


def _fresh(bases: list[Any]) -> st.SearchStrategy[Any]:
    """The bases, each with a new request id (an id answered before gets its cached reply, not a run)."""
    return st.tuples(st.sampled_from(bases), st.uuids()).map(
        lambda t: t[0] | {"id": t[1].hex} if isinstance(t[0], dict) and "id" in t[0] else t[0]
    )


def _mutated(bases: list[Any]) -> st.SearchStrategy[Any]:
    def one(base: Any) -> st.SearchStrategy[Any]:
        step = st.tuples(st.sampled_from(_paths(base)), _json, st.booleans())

        def apply(steps: list[tuple[tuple[Any, ...], Any, bool]]) -> Any:
            out = base
            for path, value, delete in steps:
                live = _paths(out)
                if path in live:
                    out = _set(out, path, value, delete)
            return out

        return st.lists(step, min_size=1, max_size=3).map(apply)

    return _fresh(bases).flatmap(one)


def _raw(bases: list[Any]) -> st.SearchStrategy[bytes]:
    deep = st.sampled_from([500, 5000, 50000]).map(lambda n: ("[" * n + "]" * n).encode())
    return st.one_of(
        _fresh(bases).map(lambda m: json.dumps(m).encode()),  # valid ones too: they must still work
        _mutated(bases).map(lambda m: json.dumps(m).encode()),
        _mutated(bases).map(lambda m: json.dumps(m).encode()),
        _mutated(bases).map(lambda m: json.dumps(m).encode()),
        _json.map(lambda v: json.dumps(v).encode()),
        deep,
        st.binary(max_size=300),
    )


# -- MQTT requests ---------------------------------------------------------------------------------------


@pytest.fixture
def fuzz_agent(tmp_path: Path) -> Iterator[tuple[Agent, MemoryLink, ScriptedRunner, Path]]:
    cfg = config.parse(config_dict(tmp_path))
    clock, link, runner = FakeClock(), MemoryLink(), ScriptedRunner()
    # What lsblk says on an instance whose data disk is not mounted: the disk requests refuse plainly.
    disks = {"blockdevices": [{"name": "nvme0n1", "path": "/dev/nvme0n1", "type": "disk", "mountpoint": "/"}]}
    runner.on(["lsblk"], Completed(("lsblk",), 0, json.dumps(disks), ""))
    state = tmp_path / "state" / "grants.json"
    fw = Firewall(table="gwfuzz", tcp_ports=[27015], udp_ports=[27015], runner=runner, clock=clock,
                  state_file=state)
    sink = BatchingSink(FileShipper(cfg.logs.path), batch_lines=100, flush_interval_s=0.05)
    services = Services(link=link, clock=clock, runner=runner, sink=sink,
                        activity=SocketTables(Watched.of(Ports())), firewall=fw)
    agent = Agent(cfg, services)
    agent.start()
    link.drain()
    try:
        yield agent, link, runner, state
    finally:
        agent.close()


def test_agent_requests_door(fuzz_agent: tuple[Agent, MemoryLink, ScriptedRunner, Path]) -> None:
    agent, link, runner, state = fuzz_agent
    bases = [json.loads(p.read_text()) for p in sorted((CONTRACT / "requests").glob("*.json"))]
    outcomes: Counter[str] = Counter()
    seen_ids: set[str] = set()

    @FUZZ
    @given(raw=_raw(bases))
    def run(raw: bytes) -> None:
        calls = len(runner.calls)
        grants = state.read_bytes() if state.exists() else b""
        agent.handle(raw)
        sent = link.drain()
        replies = [m for m in sent if m["type"] == "error" or m["type"].endswith(".reply")]
        assert len(replies) == 1, f"{raw[:200]!r} got {len(replies)} replies: {sent}"
        reply = replies[0]
        parse_outgoing(json.dumps(reply).encode())  # on-contract, whatever came in
        body = reply["body"]
        assert not str(body.get("message", "")).startswith("internal error"), f"{raw[:300]!r}: {body}"
        if reply["type"] == "error" and body["code"] in REFUSALS:
            assert len(runner.calls) == calls, f"refused {raw[:200]!r} yet ran {runner.calls[calls:]}"
            assert (state.read_bytes() if state.exists() else b"") == grants
            outcomes[f"refused:{body['code']}"] += 1
        else:
            # A request id answered before is answered again, not run again (QoS 1 redelivery).
            outcomes["repeat" if reply.get("id") in seen_ids else reply["type"]] += 1
        if reply.get("id"):
            seen_ids.add(reply["id"])

    run()
    _write_tally("MQTT agent requests", outcomes)


# -- the config file ------------------------------------------------------------------------------------


def test_agent_config_door(tmp_path: Path) -> None:
    base = config_dict(tmp_path)
    outcomes: Counter[str] = Counter()
    files: Counter[str] = Counter()

    suffixes = st.sampled_from([".json", ".toml", ""])

    @FUZZ
    @given(data=st.one_of(_mutated([base]), _json), raw=_raw([base]), suffix=suffixes)
    def run(data: Any, raw: bytes, suffix: str) -> None:
        try:
            config.parse(data)
            outcomes["parsed"] += 1
        except ConfigError as exc:
            assert str(exc), "a ConfigError says what is wrong"
            outcomes["refused"] += 1
        path = tmp_path / f"fuzz{suffix}"
        path.write_bytes(raw)
        try:
            config.load(path)
            files["loaded"] += 1
        except ConfigError as exc:
            assert str(exc), "a ConfigError says what is wrong"
            files["refused"] += 1

    run()
    _write_tally("agent config (decoded)", outcomes)
    _write_tally("agent config file (bytes)", files)


# -- what the fuzzers found, one test each (each failed before its fix) -----------------------------------


def test_a_deeply_nested_request_is_bad_json_not_an_internal_error(
    fuzz_agent: tuple[Agent, MemoryLink, ScriptedRunner, Path],
) -> None:
    agent, link, _, _ = fuzz_agent
    agent.handle(b"[" * 5000 + b"]" * 5000)
    (reply,) = link.drain()
    assert reply["type"] == "error" and reply["body"]["code"] == ErrorCode.BAD_JSON, reply


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"state_dir": None}, "state_dir must be a non-empty string"),
        ({"mqtt": {"endpoint": None}}, "mqtt.endpoint must be a non-empty string"),
        ({"launch": {"command": None}}, "launch.command must be a non-empty list of strings"),
        ({"idle": {"warn_after_s": float("nan")}}, "idle.warn_after_s must be a number"),
        ({"idle": {"stop_after_s": float("inf")}}, "idle.stop_after_s must be a number"),
        ({"heartbeat_interval_s": 10**400}, "heartbeat_interval_s must be a number"),
    ],
)
def test_null_and_non_finite_config_values_are_config_errors(
    tmp_path: Path, change: dict[str, Any], says: str
) -> None:
    data = config_dict(tmp_path)
    for key, value in change.items():
        data[key] = data[key] | value if isinstance(value, dict) else value
    with pytest.raises(ConfigError, match=says.replace(".", r"\.")):
        config.parse(data)


def test_a_deeply_nested_config_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        config.load(path)

"""What 1,000 typical interactions and one game-hour cost the platform, from measured work.

Each command of a typical mix runs in-process through the warm interactions endpoint against the
emulator, as in `bench/cold_start.py`'s warm figure. For each one it measures the handler's time
(median of warm calls) and counts the AWS calls it makes with botocore's `before-parameter-build`
event on every client the app holds (DynamoDB operations with their consistency, SQS sends...). From those:

* Lambda GB-seconds (measured ms times the function's memory in `.chalice/config.json`) and requests,
* API Gateway requests, DynamoDB read and write request units (items here are < 1 KB, so one write
  unit per write, one read unit per consistent read, half for an eventual one), SQS requests,
* per 1,000 interactions of the mix, priced with `bench/request_prices.json`.

A game-hour is the agent's heartbeat (one a minute: IoT message, rule, the intake queue, the agent_intake
Lambda re-sending it to the fair agent-events queue, the agent_events Lambda, each measured here, the
latter with its DynamoDB write), an hour of IoT connection, and a share of one /start and /stop
(their Step Functions state transitions, counted from the workflow definitions) per PLAY_SESSION_H.

Target: ≤ $0.01 per 1,000 interactions. Run from the repo root: `.venv/bin/python bench/interaction_cost.py`.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cold_start import BenchError, write_results  # noqa: E402
from bench.first_command import GAMES, GUILD, Stage  # noqa: E402

PRICES: Final = ROOT / "bench" / "request_prices.json"
CALLS: Final = 30
WARMUPS: Final = 5
TARGET_USD: Final = 0.01
PLAY_SESSION_H: Final = 2.0  # a /start and a /stop per this many hours played
HEARTBEATS_PER_H: Final = 60  # the agent's heartbeat_interval_s (agent/src/gangway_agent/config.py)
# Per agent event, counted as if each were alone in its batch (a quiet game's heartbeat is): the rule's
# send to the intake queue, its event source mapping's receive and delete, agent_intake's SendMessageBatch
# to the fair queue, and that queue's receive and delete.
SQS_PER_MESSAGE: Final = 6
# The typical mix per 1,000 interactions: browsing dominates; autocomplete fires as a member types.
MIX: Final = {"games": 300, "autocomplete": 250, "games_one": 150, "help": 100, "status": 100, "ping": 100}


@dataclass
class Measured:
    """One kind of interaction: median handler ms per function, and AWS calls per interaction."""

    ms: dict[str, float] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    read_units: float = 0.0
    write_units: float = 0.0


class CallCounter:
    """Counts every AWS call the app's clients make, with its parameters (`before-parameter-build`)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.read_units = 0.0
        self.write_units = 0.0
        self._hooked: set[int] = set()

    def hook(self, clients: list[Any]) -> None:
        from chalicelib.dynamodb import DynamoDbClient

        for client in clients:
            if id(client) in self._hooked:
                continue
            if isinstance(client, DynamoDbClient):  # the botocore-free one (chalicelib/dynamodb)
                client.observe(lambda op, params: self._tally("dynamodb", op, params))
            else:
                client.meta.events.register("before-parameter-build", self._count)
            self._hooked.add(id(client))

    def _count(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self._tally(model.service_model.service_name, model.name, params)

    def _tally(self, service: str, op: str, params: Mapping[str, Any]) -> None:
        self.calls[f"{service}.{op}"] += 1
        if service != "dynamodb":
            return
        if op in ("GetItem", "Query", "Scan"):
            self.read_units += 1.0 if params.get("ConsistentRead") else 0.5
        elif op in ("PutItem", "UpdateItem", "DeleteItem"):
            self.write_units += 1.0
        elif op == "TransactWriteItems":
            self.write_units += 2.0 * len(params.get("TransactItems", []))

    def reset(self) -> None:
        self.calls.clear()
        self.read_units = self.write_units = 0.0


def _clients(container: Any) -> list[Any]:
    from chalicelib.access import AccessRecord, GrantRecord, RateRecord
    from chalicelib.games import GameRecord
    from chalicelib.jobs import InteractionRecord
    from chalicelib.push import PushRecord
    from chalicelib.tenancy import AuditRecord, TenantRecord

    models = (TenantRecord, AuditRecord, GameRecord, InteractionRecord, GrantRecord, AccessRecord, RateRecord)
    found = [m._get_connection().connection.client for m in (*models, PushRecord)]
    wire = [container.dynamodb_client] if container.dynamodb_client is not None else []
    return found + wire + list(container._clients.values())


def _memory_gb() -> dict[str, float]:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    functions = config["stages"]["dev"]["lambda_functions"]
    return {name: float(f["lambda_memory_size"]) / 1024 for name, f in functions.items()}


def _workflow_transitions(name: str) -> int:
    """States in a workflow's definition, branches included: the transitions of one run through it."""

    def count(states: dict[str, Any]) -> int:
        n = 0
        for state in states.values():
            n += 1
            for branch in state.get("Branches", []):
                n += count(branch["States"])
            if "Iterator" in state:
                n += count(state["Iterator"]["States"])
            if "ItemProcessor" in state:
                n += count(state["ItemProcessor"]["States"])
        return n

    asl = json.loads((ROOT / "chalicelib" / "workflows" / f"{name}.asl.json").read_text())
    return count(asl["States"])


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def measure(stage: Stage) -> dict[str, Measured]:
    """Run each kind warm, CALLS times; the counts are per interaction, the ms a median."""
    c = stage.container
    user = stage.user
    counter = CallCounter()

    def interaction(payload: dict[str, Any], kind: int) -> Callable[[], object]:
        def send() -> object:
            body = json.dumps(payload).encode()
            reply = c.endpoint.handle(body, user.sign(body))
            if reply.status != 200 or json.loads(reply.body).get("type") != kind:
                raise BenchError(f"{payload.get('data', {}).get('name')} answered {reply.body[:200]!r}")
            return reply

        return send

    def status() -> dict[str, float]:
        # The endpoint defers and queues; the bench then takes the message as the event source
        # mapping would (its receive and delete are counted as the mapping's), and the job runs.
        t0 = time.perf_counter()
        event = stage.status_job_event()
        api_ms = (time.perf_counter() - t0) * 1000
        body = event["Records"][0]["body"]
        return {"api_handler": api_ms, "jobs": _time(lambda: c.job_runner.run(body, 1, None))}

    def one(payload: Callable[[], dict[str, Any]], kind: int) -> Callable[[], dict[str, float]]:
        return lambda: {"api_handler": _time(interaction(payload(), kind))}

    kinds: dict[str, Callable[[], dict[str, float]]] = {
        "ping": one(lambda: {"type": 1}, 1),
        "help": one(lambda: user.command("help"), 4),
        "games": one(lambda: user.command("games"), 4),
        "games_one": one(lambda: user.command("games", {"game": GAMES[0]}), 4),
        "autocomplete": one(lambda: user.command("games", {"game": GAMES[0][:2]}, focused="game"), 8),
        "status": status,
    }
    out: dict[str, Measured] = {}
    for name, run in kinds.items():
        samples: dict[str, list[float]] = {}
        for i in range(WARMUPS + CALLS):
            if i == WARMUPS:
                counter.hook(_clients(c))  # the warm-ups made the clients: count from here on
                counter.reset()
            for function, ms in run().items():
                if i >= WARMUPS:
                    samples.setdefault(function, []).append(ms)
        m = Measured(ms={f: statistics.median(v) for f, v in samples.items()})
        m.calls = Counter({k: v // CALLS for k, v in counter.calls.items()})
        m.read_units = counter.read_units / CALLS
        m.write_units = counter.write_units / CALLS
        out[name] = m
    return out


def heartbeat(stage: Stage) -> Measured:
    """The agent_events Lambda handling one heartbeat of a running game."""
    from chalicelib.games import GameState, GameStore

    GameStore().create(GUILD, "running-one", description="bench", created_by="1", state=GameState.RUNNING)
    c = stage.container
    counter = CallCounter()
    message = json.dumps(
        {
            "id": "1",
            "type": "heartbeat",
            "body": {"game_running": True, "players": 2, "idle_s": 0},
            "topic": f"gangway/{GUILD}/running-one/evt",
        }
    )
    samples = []
    for i in range(WARMUPS + CALLS):
        if i == WARMUPS:
            counter.hook(_clients(c))
            counter.reset()
        ms = _time(lambda: c.agent_events.run(message))
        if i >= WARMUPS:
            samples.append(ms)
    m = Measured(ms={"agent_events": statistics.median(samples)})
    m.calls = Counter({k: v // CALLS for k, v in counter.calls.items()})
    m.read_units, m.write_units = counter.read_units / CALLS, counter.write_units / CALLS
    return m


def forward(stage: Stage) -> float:
    """Median ms of the agent_intake Lambda re-sending one heartbeat to the fair queue (a batch of one)."""
    from chalicelib.agents import IntakeRecord

    c = stage.container
    body = json.dumps(
        {"id": "1", "type": "heartbeat", "body": {}, "topic": f"gangway/{GUILD}/running-one/evt"}
    )
    samples = [
        _time(lambda: c.agent_intake.forward([IntakeRecord("1", body)])) for _ in range(WARMUPS + CALLS)
    ]
    c.sqs().purge_queue(QueueUrl=c.agent_intake.url())  # what it sent is not the bench's to handle
    return statistics.median(samples[WARMUPS:])


def _lambda_usd(ms: float, gb: float, p: dict[str, float]) -> float:
    billed = math.ceil(ms)  # Lambda bills duration in whole milliseconds
    return billed / 1000 * gb * p["lambda_gb_second_usd"] + p["lambda_request_usd"]


def price(kinds: dict[str, Measured], beat: Measured, forward_ms: float) -> dict[str, Any]:
    p = json.loads(PRICES.read_text())
    mem = _memory_gb()
    total = Counter[str]()
    gb_s = 0.0
    for name, n in MIX.items():
        m = kinds[name]
        for function, ms in m.ms.items():
            gb_s += n * math.ceil(ms) / 1000 * mem[function]
            total["lambda_requests"] += n
        total["api_requests"] += n
        total["read_units"] += n * m.read_units  # type: ignore[assignment]
        total["write_units"] += n * m.write_units  # type: ignore[assignment]
        total["sqs_requests"] += n * sum(v for k, v in m.calls.items() if k.startswith("sqs."))
    usd = (
        gb_s * p["lambda_gb_second_usd"]
        + total["lambda_requests"] * p["lambda_request_usd"]
        + total["api_requests"] * p["api_gateway_rest_request_usd"]
        + total["read_units"] * p["dynamodb_read_unit_usd"]
        + total["write_units"] * p["dynamodb_write_unit_usd"]
        + total["sqs_requests"] * p["sqs_request_usd"]
    )
    transitions = _workflow_transitions("start-game") + _workflow_transitions("stop-game")
    beat_ms = beat.ms["agent_events"]
    hour = {
        "heartbeats": HEARTBEATS_PER_H,
        "lambda_gb_s": round(
            HEARTBEATS_PER_H
            * (math.ceil(beat_ms) * mem["agent_events"] + math.ceil(forward_ms) * mem["agent_intake"])
            / 1000,
            4,
        ),
        "agent_intake_ms": round(forward_ms, 2),
        "read_units": HEARTBEATS_PER_H * beat.read_units,
        "write_units": HEARTBEATS_PER_H * beat.write_units,
        "sqs_requests": HEARTBEATS_PER_H * SQS_PER_MESSAGE,
        "iot_messages": HEARTBEATS_PER_H,
        "step_functions_transitions": round(transitions / PLAY_SESSION_H, 1),
    }
    hour_usd = (
        HEARTBEATS_PER_H * _lambda_usd(beat_ms, mem["agent_events"], p)
        + HEARTBEATS_PER_H * _lambda_usd(forward_ms, mem["agent_intake"], p)
        + hour["read_units"] * p["dynamodb_read_unit_usd"]
        + hour["write_units"] * p["dynamodb_write_unit_usd"]
        + hour["sqs_requests"] * p["sqs_request_usd"]
        + HEARTBEATS_PER_H * (p["iot_message_usd"] + p["iot_rule_usd"] + p["iot_action_usd"])
        + 60 * p["iot_connection_minute_usd"]
        + hour["step_functions_transitions"] * p["step_functions_transition_usd"]
    )
    return {
        "per_1000_interactions": {
            "mix": MIX,
            "lambda_gb_s": round(gb_s, 4),
            "lambda_requests": total["lambda_requests"],
            "api_requests": total["api_requests"],
            "dynamodb_read_units": round(total["read_units"], 1),
            "dynamodb_write_units": round(total["write_units"], 1),
            "sqs_requests": total["sqs_requests"],
            "step_functions_transitions": 0,
            "usd": round(usd, 5),
        },
        "per_game_hour": {**hour, "usd": round(hour_usd, 5)},
        "per_command": {
            k: {
                "ms": {f: round(v, 2) for f, v in m.ms.items()},
                "aws_calls": dict(sorted(m.calls.items())),
                "read_units": m.read_units,
                "write_units": m.write_units,
            }
            for k, m in {**kinds, "heartbeat": beat}.items()
        },
        "prices": f"{p['source']} ({p['date']})",
    }


def main() -> int:
    os.chdir(ROOT)
    stage = Stage()
    try:
        stage.set_up()
        kinds = measure(stage)
        beat = heartbeat(stage)
        forward_ms = forward(stage)
    except BenchError as exc:
        print(f"BENCH FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        stage.stop()
    figures = price(kinds, beat, forward_ms)
    per_k = figures["per_1000_interactions"]["usd"]
    hour = figures["per_game_hour"]["usd"]
    write_results(
        {"usd_per_1000_interactions": per_k, "usd_per_game_hour": hour, "interaction_cost": figures}
    )
    print(json.dumps(figures, indent=2))
    if per_k > TARGET_USD:
        print(f"TARGET MISSED: usd_per_1000_interactions {per_k} > {TARGET_USD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cold-start and warm-path benchmark, each measured against a baseline taken in the same run.

Absolute timings vary from machine to machine, so every figure sits beside a baseline measured on the
same machine at the same time, and the targets are ratios:

* `cold_start_ms`: a fresh interpreter imports `app` and answers one signed PING through the Lambda
  entry point, as API Gateway calls it; `cold_start_baseline_ms`: a fresh interpreter that eagerly
  imports boto3, PynamoDB, X-Ray and PyNaCl and verifies the same PING. Target ratio ≤ 0.5.
* `warm_us`: one signed `/help` handled in-process by a warm container; `verify_floor_us`: one bare
  PyNaCl verify of the same body, the work no handler can avoid. Target ratio ≤ 3.

Run from the repo root: `.venv/bin/python bench/cold_start.py` (or `make bench`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from nacl.signing import SigningKey, VerifyKey

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = ROOT / "bench" / "results.json"
COLD_RUNS: Final = 9
COLD_WARMUPS: Final = 1
WARM_WARMUPS: Final = 200
WARM_CALLS: Final = 2000
COLD_TARGET: Final = 0.5
WARM_TARGET: Final = 3.0
HEAVY: Final = ("boto3", "pynamodb", "aws_xray_sdk")
# Environment the benchmark owns: inherited values would change what the children import or reach.
_OWNED_PREFIXES: Final = ("AWS_", "DISCORD_", "GANGWAY_", "PYTHON", "_X_AMZN_")

# The cold child: the clock starts before anything else, then the app answers a PING the way the
# Lambda runtime hands it an API Gateway REST proxy event.
_COLD_CHILD: Final = """\
import time
t0 = time.perf_counter()
import json, os, sys
import app
p = json.loads(os.environ["BENCH_PING"])
event = {
    "resource": "/discord/interactions",
    "path": "/discord/interactions",
    "httpMethod": "POST",
    "headers": {
        "Content-Type": "application/json",
        "X-Signature-Ed25519": p["sig"],
        "X-Signature-Timestamp": p["ts"],
    },
    "multiValueHeaders": {
        "Content-Type": ["application/json"],
        "X-Signature-Ed25519": [p["sig"]],
        "X-Signature-Timestamp": [p["ts"]],
    },
    "queryStringParameters": None,
    "multiValueQueryStringParameters": None,
    "pathParameters": None,
    "stageVariables": None,
    "requestContext": {
        "resourcePath": "/discord/interactions",
        "httpMethod": "POST",
        "path": "/api/discord/interactions",
        "stage": "api",
        "requestId": "bench-request",
        "identity": {"sourceIp": "162.159.128.233"},
    },
    "body": p["body"],
    "isBase64Encoded": False,
}
class Context:
    function_name = "gangway-bench"
    memory_limit_in_mb = 512
    aws_request_id = "bench-request"
    def get_remaining_time_in_millis(self):
        return 3000
resp = app.app(event, Context())
ms = (time.perf_counter() - t0) * 1000
assert resp["statusCode"] == 200, resp
assert json.loads(resp["body"]) == {"type": 1}, resp
heavy = [m for m in HEAVY if m in sys.modules]
print(json.dumps({"ms": ms, "heavy": heavy}))
""".replace("HEAVY", repr(HEAVY))

# The baseline child: the same PING verified after the eager imports a naive Lambda would do.
_BASELINE_CHILD: Final = """\
import time
t0 = time.perf_counter()
import json, os, sys
import boto3
import pynamodb.models
import aws_xray_sdk.core
import nacl.signing
p = json.loads(os.environ["BENCH_PING"])
key = nacl.signing.VerifyKey(bytes.fromhex(p["pk"]))
key.verify(p["ts"].encode() + p["body"].encode(), bytes.fromhex(p["sig"]))
assert json.loads(p["body"]) == {"type": 1}
ms = (time.perf_counter() - t0) * 1000
print(json.dumps({"ms": ms, "heavy": []}))
"""


class BenchError(RuntimeError):
    """A run failed (as opposed to a target being missed)."""


def _free_port() -> int:
    from devstack.stack import free_port

    return free_port()


def _base_env() -> dict[str, str]:
    """The parent's environment minus anything that would steer the app or the interpreter."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_OWNED_PREFIXES)}


def _signed_ping(key: SigningKey) -> str:
    """A PING signed now, as the JSON the children read from BENCH_PING."""
    body = json.dumps({"type": 1})
    ts = str(int(time.time()))
    sig = key.sign(ts.encode() + body.encode()).signature.hex()
    return json.dumps({"body": body, "ts": ts, "sig": sig, "pk": key.verify_key.encode().hex()})


def _run_child(script: str, env: Mapping[str, str], key: SigningKey) -> tuple[float, list[str]]:
    """Run one fresh interpreter; returns (elapsed ms it measured, heavy modules it imported)."""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**env, "BENCH_PING": _signed_ping(key)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"child exited {proc.returncode}:\n{proc.stderr.strip()}")
    try:
        out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return float(out["ms"]), [str(m) for m in out["heavy"]]
    except (IndexError, KeyError, ValueError) as exc:
        raise BenchError(f"child printed no result: {proc.stdout!r} {proc.stderr!r}") from exc


def measure_cold() -> dict[str, Any]:
    """Interleave cold and baseline children so drift in machine load hits both alike."""
    from devstack.aws import fake_credentials

    key = SigningKey.generate()
    env = {
        **_base_env(),
        **fake_credentials(),
        # Nothing listens here: if the PING path ever reached for AWS it would fail, not bill.
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}",
        "DISCORD_PUBLIC_KEY": key.verify_key.encode().hex(),
        "DISCORD_APPLICATION_ID": "1234567890123456789",
        "GANGWAY_STAGE": "local",
    }
    # Discarded warm-up runs: they compile bytecode and fill the page cache for both sides.
    for _ in range(COLD_WARMUPS):
        _run_child(_COLD_CHILD, env, key)
        _run_child(_BASELINE_CHILD, env, key)
    cold: list[float] = []
    base: list[float] = []
    heavy: set[str] = set()
    for _ in range(COLD_RUNS):
        ms, found = _run_child(_COLD_CHILD, env, key)
        cold.append(ms)
        heavy.update(found)
        base.append(_run_child(_BASELINE_CHILD, env, key)[0])
    cold_ms = statistics.median(cold)
    base_ms = statistics.median(base)
    return {
        "cold_start_ms": round(cold_ms, 1),
        "cold_start_baseline_ms": round(base_ms, 1),
        "cold_start_ratio": round(cold_ms / base_ms, 3),
        "cold_start_heavy_modules": sorted(heavy),
    }


def _median_us(samples_ns: list[int]) -> float:
    return statistics.median(samples_ns) / 1000


def measure_warm() -> dict[str, Any]:
    """Time `/help` through a warm container against an emulator, and the bare verify beside it."""
    from devstack.aws import Emulator, create_resources, emulator_settings, fake_credentials

    key = SigningKey.generate()
    port = _free_port()
    app_id = "1234567890123456789"
    os.environ.update(
        {
            **fake_credentials(),
            **emulator_settings(),
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "DISCORD_PUBLIC_KEY": key.verify_key.encode().hex(),
            "DISCORD_APPLICATION_ID": app_id,
            "GANGWAY_STAGE": "local",
            "GANGWAY_TRACING": "0",
        }
    )
    emulator = Emulator(port).start()
    try:
        from chalicelib.tenancy import TenantStore
        from chalicelib.wiring import container
        from devstack.discord_user import DiscordUser, Who

        c = container()
        if c.settings.aws_endpoint_url != emulator.url:
            raise BenchError(f"settings were read before the bench set them: {c.settings.aws_endpoint_url}")
        create_resources(c.settings, c.sqs(), c.client("dynamodb"))
        guild, user, role = "100000000000000001", "200000000000000002", "400000000000000004"
        tenants = TenantStore(default_region=c.settings.region)
        tenants.ensure(guild, created_by=user)
        tenants.set_roles(guild, "main", [role])

        # An ordinary member: no admin bits, just the tenant's main role.
        who = Who(guild_id=guild, user_id=user, user_name="bench-member", role_ids=(role,), permissions=0)
        discord = DiscordUser(key, app_id, who=who)
        body = json.dumps(discord.command("help")).encode()
        headers = discord.sign(body)

        handle = c.endpoint.handle
        for _ in range(WARM_WARMUPS):
            _check_help(handle(body, headers))
        samples: list[int] = []
        clock = time.perf_counter_ns
        for _ in range(WARM_CALLS):
            t0 = clock()
            reply = handle(body, headers)
            samples.append(clock() - t0)
            _check_help(reply)

        verify_key = VerifyKey(key.verify_key.encode())
        ts = headers["X-Signature-Timestamp"].encode()
        sig = bytes.fromhex(headers["X-Signature-Ed25519"])
        for _ in range(WARM_WARMUPS):
            verify_key.verify(ts + body, sig)
        floor: list[int] = []
        for _ in range(WARM_CALLS):
            t0 = clock()
            verify_key.verify(ts + body, sig)
            floor.append(clock() - t0)
    finally:
        emulator.stop()
    warm_us = _median_us(samples)
    floor_us = _median_us(floor)
    return {
        "warm_us": round(warm_us, 1),
        "verify_floor_us": round(floor_us, 1),
        "warm_ratio": round(warm_us / floor_us, 3),
    }


def _check_help(reply: Any) -> None:
    """A `/help` must come back as a 200 with an immediate message (callback type 4)."""
    if reply.status != 200:
        raise BenchError(f"/help answered {reply.status}: {reply.body[:300]!r}")
    if json.loads(reply.body).get("type") != 4:
        raise BenchError(f"/help answered a non-message: {reply.body[:300]!r}")


def write_results(figures: Mapping[str, Any]) -> dict[str, Any]:
    """Merge into results.json: other benchmarks (bench/agent.py) own the other keys."""
    results: dict[str, Any] = {}
    if RESULTS.exists():
        try:
            loaded = json.loads(RESULTS.read_text())
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            results = loaded
    results.update(figures)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(RESULTS)
    return results


def main() -> int:
    if Path.cwd().resolve() != ROOT:
        os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        cold = measure_cold()
        warm = measure_warm()
    except (BenchError, subprocess.TimeoutExpired, AssertionError) as exc:
        print(f"BENCH FAILED: {exc}", file=sys.stderr)
        return 1
    figures: dict[str, Any] = {
        **cold,
        **warm,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": {
            "cold": COLD_RUNS,
            "cold_baseline": COLD_RUNS,
            "cold_discarded_warmups": COLD_WARMUPS,
            "warm_calls": WARM_CALLS,
            "warm_warmups": WARM_WARMUPS,
        },
    }
    print(json.dumps(write_results(figures), indent=2))
    missed = []
    if cold["cold_start_ratio"] > COLD_TARGET:
        missed.append(f"cold_start_ratio {cold['cold_start_ratio']} > {COLD_TARGET}")
    if warm["warm_ratio"] > WARM_TARGET:
        missed.append(f"warm_ratio {warm['warm_ratio']} > {WARM_TARGET}")
    if cold["cold_start_heavy_modules"]:
        missed.append(f"cold path imported {', '.join(cold['cold_start_heavy_modules'])}")
    for line in missed:
        print(f"TARGET MISSED: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

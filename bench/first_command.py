"""Cold start to the first real command: what a user waits for after a quiet hour, measured.

A PING (bench/cold_start.py) touches nothing; a member's first `/games` after the container went cold
reads the tenant and the game list from DynamoDB, through the botocore-free client (chalicelib/dynamodb;
botocore and PynamoDB load with the first write that is not the jobs ledger's). Here each
fresh interpreter is one cold Lambda container, against the emulator on loopback:

* `first_games_ms`: `import app`, then one signed `/games` from an ordinary member of a set-up guild
  with two games, handed to the Lambda entry point as API Gateway hands it (`app.app(event, context)`);
  the reply must list both games.
* `first_job_ms`: `import app`, then the SQS record `/status` queued, handed to the jobs function
  (`app.jobs(event, context)`), which reads the tenant and games and edits the reply on the Discord
  stand-in (the PATCH must arrive).
* `first_command_baseline_ms`: the eager-import baseline of bench/cold_start.py (boto3, PynamoDB, X-Ray
  and PyNaCl imported up front, one PING verified), interleaved with the runs above.
* `*_cpu_ms` and `*_cpu_ratio`: the same three as CPU time of each whole child (interpreter start-up
  included, so the ratio leans towards 1), which the shared machine's load disturbs less than wall time.

Target: `first_games_ratio` ≤ 0.5. Run from the repo root: `.venv/bin/python bench/first_command.py`.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nacl.signing import SigningKey  # noqa: E402

from bench.cold_start import (  # noqa: E402
    _BASELINE_CHILD,
    BenchError,
    _base_env,
    _free_port,
    _run_child,
    write_results,
)

RUNS: Final = 7
WARMUPS: Final = 1
TARGET: Final = 0.5
GUILD: Final = "100000000000000001"
MEMBER: Final = "200000000000000002"
ROLE: Final = "400000000000000004"
GAMES: Final = ("valheim", "factorio")
_BOT_TOKEN: Final = "bench-bot-token"  # noqa: S105 - the Discord stand-in's, on loopback
# Packages the interaction path must not load (web push's and the eager baseline's).
_UNWANTED: Final = (
    "aws_xray_sdk",
    "boto3",
    "botocore",
    "pynamodb",
    "cryptography",
    "aiohttp",
    "pywebpush",
    "requests",
)

# One cold container: the clock starts first; the event comes whole from the parent (BENCH_EVENT) and
# goes to the function the template binds (`app.app` for the API, `app.jobs` for the jobs queue).
_CHILD: Final = """\
import time
t0 = time.perf_counter()
import json, os, sys
import app
event = json.loads(os.environ["BENCH_EVENT"])
class Context:
    function_name = "gangway-bench"
    memory_limit_in_mb = 512
    aws_request_id = "bench-request"
    def get_remaining_time_in_millis(self):
        return 30000
handler = getattr(app, os.environ["BENCH_HANDLER"])
resp = handler(event, Context())
ms = (time.perf_counter() - t0) * 1000
print(json.dumps({"ms": ms, "resp": resp, "modules": sorted(m for m in sys.modules if "." not in m)}))
"""


def api_event(body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    """An API Gateway REST proxy event for a POST to the interactions route."""
    hdrs = {"Content-Type": "application/json", **headers}
    return {
        "resource": "/discord/interactions",
        "path": "/discord/interactions",
        "httpMethod": "POST",
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
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
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def sqs_event(queue_arn: str, body: str) -> dict[str, Any]:
    """An SQS event of one record, as Lambda's event source mapping delivers it."""
    return {
        "Records": [
            {
                "messageId": "bench-message",
                "receiptHandle": "bench-receipt",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
        ]
    }


def _cold(env: Mapping[str, str], handler: str, event: Mapping[str, Any]) -> tuple[float, Any, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD],
        cwd=ROOT,
        env={**env, "BENCH_EVENT": json.dumps(event), "BENCH_HANDLER": handler},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"cold {handler} exited {proc.returncode}:\n{proc.stderr.strip()[-3000:]}")
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        return float(out["ms"]), out["resp"], [str(m) for m in out["modules"]]
    except (IndexError, KeyError, ValueError) as exc:
        raise BenchError(f"cold {handler} printed no result: {proc.stdout[-500:]!r}") from exc


def _child_cpu_ms() -> float:
    """CPU time (user + system) of this process's finished children so far, in ms."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def _check_games(resp: Any) -> None:
    if not isinstance(resp, dict) or resp.get("statusCode") != 200:
        raise BenchError(f"/games answered {resp!r:.300}")
    body = json.loads(resp["body"])
    text = json.dumps(body)
    if body.get("type") != 4 or not all(f"**{g}**" in text for g in GAMES):
        raise BenchError(f"/games did not list the games: {text[:300]}")


class Stage:
    """The emulator, the Discord stand-in and a set-up guild, shared by every cold child."""

    def __init__(self) -> None:
        from devstack.aws import Emulator, emulator_settings, fake_credentials
        from devstack.discord_api import DiscordStandIn

        self.key = SigningKey.generate()
        self.app_id = "1234567890123456789"
        port = _free_port()
        self.emulator = Emulator(port).start()
        self.discord = DiscordStandIn(bot_token=_BOT_TOKEN, application_id=self.app_id).start()
        self.env = {
            **_base_env(),
            **fake_credentials(),
            **emulator_settings(),
            "AWS_ENDPOINT_URL": self.emulator.url,
            "DISCORD_PUBLIC_KEY": self.key.verify_key.encode().hex(),
            "DISCORD_APPLICATION_ID": self.app_id,
            "DISCORD_API_URL": self.discord.url,
            "DISCORD_BOT_TOKEN": _BOT_TOKEN,
            "GANGWAY_STAGE": "local",
            "GANGWAY_TRACING": "0",
        }

    def set_up(self) -> None:
        """Resources, a tenant with a main role and two games, made in this process's container."""
        os.environ.update(self.env)
        from chalicelib.games import GameStore
        from chalicelib.tenancy import TenantStore
        from chalicelib.wiring import container
        from devstack.aws import create_resources
        from devstack.discord_user import DiscordUser, Who

        self.container = c = container()
        if c.settings.aws_endpoint_url != self.emulator.url:
            raise BenchError(f"settings were read before the bench set them: {c.settings.aws_endpoint_url}")
        create_resources(c.settings, c.sqs(), c.client("dynamodb"))
        tenants = TenantStore(default_region=c.settings.region)
        tenants.ensure(GUILD, created_by=MEMBER)
        tenants.set_roles(GUILD, "main", [ROLE])
        for name in GAMES:
            GameStore().create(GUILD, name, description=f"bench {name}", created_by=MEMBER)
        who = Who(guild_id=GUILD, user_id=MEMBER, user_name="bench-member", role_ids=(ROLE,), permissions=0)
        self.user = DiscordUser(self.key, self.app_id, who=who)
        self.jobs_url = c.sqs().get_queue_url(QueueName=c.settings.jobs_queue)["QueueUrl"]
        self.jobs_arn = c.sqs().get_queue_attributes(QueueUrl=self.jobs_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def games_event(self) -> dict[str, Any]:
        body = json.dumps(self.user.command("games")).encode()
        return api_event(body, self.user.sign(body))

    def status_job_event(self) -> dict[str, Any]:
        """Send `/status` through the warm in-process endpoint and take the job it queued."""
        body = json.dumps(self.user.command("status")).encode()
        reply = self.container.endpoint.handle(body, self.user.sign(body))
        if reply.status != 200 or json.loads(reply.body).get("type") != 5:
            raise BenchError(f"/status did not defer: {reply.body[:300]!r}")
        sqs = self.container.sqs()
        got = sqs.receive_message(QueueUrl=self.jobs_url, MaxNumberOfMessages=1, WaitTimeSeconds=2)
        msgs = got.get("Messages", [])
        if len(msgs) != 1:
            raise BenchError(f"/status queued {len(msgs)} jobs")
        sqs.delete_message(QueueUrl=self.jobs_url, ReceiptHandle=msgs[0]["ReceiptHandle"])
        return sqs_event(self.jobs_arn, msgs[0]["Body"])

    def edits(self) -> int:
        return sum(1 for c in self.discord.calls() if c["method"] == "PATCH" and "@original" in c["path"])

    def stop(self) -> None:
        self.discord.stop()
        self.emulator.stop()


def measure() -> dict[str, Any]:
    """Interleave the cold /games, the cold /status job and the eager-import baseline."""
    stage = Stage()
    try:
        stage.set_up()
        games: list[float] = []
        jobs: list[float] = []
        base: list[float] = []
        # CPU time of each whole child (interpreter start-up included): what the machine's other load
        # disturbs least, beside the wall-clock figures the children measure themselves.
        cpu: dict[str, list[float]] = {"games": [], "job": [], "base": []}
        modules: set[str] = set()
        for i in range(WARMUPS + RUNS):
            games_event = stage.games_event()
            t0 = _child_cpu_ms()
            ms, resp, mods = _cold(stage.env, "app", games_event)
            t1 = _child_cpu_ms()
            _check_games(resp)
            before = stage.edits()
            job_event = stage.status_job_event()
            t2 = _child_cpu_ms()
            job_ms, _, _ = _cold(stage.env, "jobs", job_event)
            t3 = _child_cpu_ms()
            if stage.edits() != before + 1:
                raise BenchError("the /status job did not edit its reply on Discord")
            base_ms = _run_child(_BASELINE_CHILD, stage.env, stage.key)[0]
            t4 = _child_cpu_ms()
            if i >= WARMUPS:  # the first round compiles bytecode and fills the page cache
                games.append(ms)
                jobs.append(job_ms)
                base.append(base_ms)
                cpu["games"].append(t1 - t0)
                cpu["job"].append(t3 - t2)
                cpu["base"].append(t4 - t3)
                modules.update(mods)
    finally:
        stage.stop()
    g, j, b = statistics.median(games), statistics.median(jobs), statistics.median(base)
    cg, cj, cb = (statistics.median(cpu[k]) for k in ("games", "job", "base"))
    return {
        "first_games_cpu_ms": round(cg, 1),
        "first_job_cpu_ms": round(cj, 1),
        "first_command_baseline_cpu_ms": round(cb, 1),
        "first_games_cpu_ratio": round(cg / cb, 3),
        "first_job_cpu_ratio": round(cj / cb, 3),
        "first_games_ms": round(g, 1),
        "first_job_ms": round(j, 1),
        "first_command_baseline_ms": round(b, 1),
        "first_games_ratio": round(g / b, 3),
        "first_job_ratio": round(j / b, 3),
        "first_games_unwanted_modules": sorted(m for m in _UNWANTED if m in modules),
        "first_command_runs": RUNS,
    }


def main() -> int:
    os.chdir(ROOT)
    try:
        figures = measure()
    except (BenchError, subprocess.TimeoutExpired) as exc:
        print(f"BENCH FAILED: {exc}", file=sys.stderr)
        return 1
    write_results(figures)
    print(json.dumps(figures, indent=2))
    if figures["first_games_ratio"] > TARGET:
        print(f"TARGET MISSED: first_games_ratio {figures['first_games_ratio']} > {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

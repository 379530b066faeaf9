"""`make load`: does the interactions handler hold 200 interactions a second on this machine?

Starts the local stack as a person does (`python -m devstack run --auto-ports`, loopback only), sets up a
guild with a main role and games in its emulator, then sends signed interactions of the typical mix
(bench/interaction_cost.py's, less the deferred /status) to its API on a fixed schedule: RATE a second
for SECONDS (at most RATE times SECONDS requests), open loop, from WORKERS threads with keep-alive
connections. Every answer is checked (status 200, the callback type the interaction asks for).

It holds when the achieved rate is ≥ 95 % of RATE, no answer failed, and the 99th percentile stays under
Discord's 3-second deadline; otherwise it says which. The figures go into bench/results.json
(`load_*`). Run from the repo root: `.venv/bin/python bench/load.py [--rate 200] [--seconds 15]`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nacl.signing import SigningKey  # noqa: E402

from bench.cold_start import _base_env, write_results  # noqa: E402
from bench.first_command import GAMES, GUILD, MEMBER, ROLE  # noqa: E402

DEADLINE_S: Final = 3.0  # Discord shows "This interaction failed" after 3 s without an answer
HOLDS_SHARE: Final = 0.95
WORKERS: Final = 24
# (weight, what to send, the callback type the answer must carry)
MIX: Final = (
    (300, "games", 4),
    (250, "autocomplete", 8),
    (150, "games_one", 4),
    (100, "help", 4),
    (100, "ping", 1),
)


@contextmanager
def local_stack(state: Path) -> Iterator[dict[str, Any]]:
    """`gangway run --auto-ports` in a child process; yields its stack.json, stops it after."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack", "--state-dir", str(state), "run", "--auto-ports"],
        cwd=ROOT,
        env=_base_env(),
        stdout=subprocess.DEVNULL,
        stderr=(state / "stack.log").open("wb"),
    )
    path = state / "stack.json"
    deadline = time.monotonic() + 300
    try:
        while not path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the local stack did not come up: " + (state / "stack.log").read_text()[-2000:]
                )
            time.sleep(0.2)
        yield {**json.loads(path.read_text()), "_pid": proc.pid}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def set_up_guild(stack: dict[str, Any]) -> None:
    """The guild the load plays in: a tenant with a main role and games, written to the stack's emulator."""
    from devstack.aws import fake_credentials

    os.environ.update(
        {**fake_credentials(), "AWS_ENDPOINT_URL": stack["aws_endpoint_url"], "GANGWAY_STAGE": "local"}
    )
    from chalicelib.games import GameStore
    from chalicelib.tenancy import TenantStore

    tenants = TenantStore(default_region="us-east-1")
    tenants.ensure(GUILD, created_by=MEMBER)
    tenants.set_roles(GUILD, "main", [ROLE])
    for name in GAMES:
        GameStore().create(GUILD, name, description=f"load {name}", created_by=MEMBER)


def _requests(stack: dict[str, Any], count: int) -> list[tuple[str, bytes, dict[str, str], int]]:
    """`count` signed interactions of the mix, interleaved (signed up front: the clock is for the app)."""
    from devstack.discord_user import DiscordUser, Who

    key = SigningKey(bytes.fromhex(stack["signing_key"]))
    who = Who(guild_id=GUILD, user_id=MEMBER, user_name="load-member", role_ids=(ROLE,), permissions=0)
    user = DiscordUser(key, stack["application_id"], who=who)
    payloads: dict[str, Callable[[], dict[str, Any]]] = {
        "games": lambda: user.command("games"),
        "autocomplete": lambda: user.command("games", {"game": GAMES[0][:2]}, focused="game"),
        "games_one": lambda: user.command("games", {"game": GAMES[0]}),
        "help": lambda: user.command("help"),
        "ping": lambda: {"type": 1},
    }
    cycle = [(name, kind) for weight, name, kind in MIX for _ in range(weight // 50)]
    out = []
    for i in range(count):
        name, kind = cycle[i % len(cycle)]
        body = json.dumps(payloads[name]()).encode()
        out.append((name, body, {**user.sign(body), "Content-Type": "application/json"}, kind))
    return out


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (/proc/<pid>/stat, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _verdict(rate: float, achieved: float, errors: list[str], p99: float, stack_cpu: float) -> list[str]:
    """What did not hold, in words (empty when it held)."""
    verdict: list[str] = []
    if achieved < HOLDS_SHARE * rate:
        verdict.append(f"achieved {achieved:.0f}/s of {rate:.0f}/s")
    if errors:
        verdict.append(f"{len(errors)} failed answers (first: {errors[0]})")
    if p99 > DEADLINE_S:
        verdict.append(f"p99 {p99:.2f} s is over Discord's {DEADLINE_S:.0f} s")
    if verdict and stack_cpu > 0.85:
        verdict.append(
            f"the local stack's one process used {stack_cpu:.2f} CPU: the emulator and the dev server share "
            "one interpreter (one core); in AWS each Lambda instance takes one request at a time"
        )
    return verdict


def run_load(stack: dict[str, Any], rate: float, seconds: float) -> dict[str, Any]:
    """Send the mix on schedule; the stack's CPU use tells whether its one process (the app, the
    emulator and the dev server share one interpreter, so at most one core) was the limit."""
    count = int(rate * seconds)
    work = _requests(stack, count)
    url = urlsplit(stack["api_url"])
    todo: queue.Queue[tuple[float, tuple[str, bytes, dict[str, str], int]] | None] = queue.Queue()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
        while (item := todo.get()) is not None:
            due, (name, body, headers, kind) = item
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            try:
                conn.request("POST", "/discord/interactions", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                ok = resp.status == 200 and json.loads(data).get("type") == kind
                problem = "" if ok else f"{name}: {resp.status} {data[:120]!r}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                conn.close()
                conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
                problem = f"{name}: {exc}"
            took = time.perf_counter() - due  # from when it was due: queueing in the load counts too
            with lock:
                latencies.append(took)
                if problem:
                    errors.append(problem)
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    cpu_before = _cpu_seconds(stack["_pid"])
    start = time.perf_counter() + 0.5
    for i, item in enumerate(work):
        todo.put((start + i / rate, item))
    for _ in threads:
        todo.put(None)
    for t in threads:
        t.join(timeout=seconds + 120)
    elapsed = time.perf_counter() - start
    stack_cpu = (_cpu_seconds(stack["_pid"]) - cpu_before) / elapsed
    latencies.sort()
    done = len(latencies)
    p99 = latencies[min(done - 1, int(done * 0.99))] if done else float("inf")
    achieved = done / elapsed
    verdict = _verdict(rate, achieved, errors, p99, stack_cpu)
    return {
        "load_target_per_s": rate,
        "load_requests": count,
        "load_achieved_per_s": round(achieved, 1),
        "load_errors": len(errors),
        "load_p50_ms": round(statistics.median(latencies) * 1000, 1) if done else None,
        "load_p99_ms": round(p99 * 1000, 1),
        "load_holds": not verdict,
        "load_verdict": "holds" if not verdict else "; ".join(verdict),
        "load_cpus": os.cpu_count(),
        "load_stack_cpu": round(stack_cpu, 2),
        "load_stack_cpu_ms_per_request": round(stack_cpu * elapsed / max(done, 1) * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=200.0, help="interactions a second (default 200)")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long (default 15; at most 120)")
    args = parser.parse_args()
    if not 0 < args.rate <= 1000 or not 0 < args.seconds <= 120:
        print("--rate must be 1..1000 and --seconds 1..120: the load stays bounded.", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    with (
        tempfile.TemporaryDirectory(prefix=f"gangway-load-{os.getpid()}-") as tmp,
        local_stack(Path(tmp)) as stack,
    ):
        set_up_guild(stack)
        figures = run_load(stack, args.rate, args.seconds)
    write_results(figures)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

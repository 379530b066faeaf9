"""Agent benchmark: request/reply round trip over loopback MQTT, resident memory, install size.

* `rtt_p50_ms` / `rtt_p99_ms`: a `status` request published by a backend stand-in (awscrt MQTT5,
  QoS 1) through a real Mosquitto (plain TCP on loopback, `set_tcp_nodelay true`) to the real
  `gangway-agent` process, and its reply back, measured sequentially after a warm-up.
  awscrt never sets TCP_NODELAY on its own socket, so on loopback each QoS 1 hop can wait for a
  delayed ACK (~40 ms; feasibility.md §4): over a WAN to IoT Core this is noise.
* `rtt_quickack_p50_ms` / `rtt_quickack_p99_ms` (root only): the same, run again inside a network
  namespace of its own whose loopback routes have `quickack 1`, which takes the delayed-ACK stall
  out and leaves the agent's own cost (parse, status, encode, two broker hops).
* `rss_mib`: the agent process's VmRSS from /proc after the warm-up.
* `install_mib`: the files of the packages the agent installs (gangway_agent, awsiot, awscrt, and
  for the player queries mcstatus, asyncio_dgram, dns (dnspython) and a2s; without __pycache__).

Run from the repo root: `.venv/bin/python bench/agent.py` (or `make bench`). It prints its JSON and
merges it under "agent" into bench/results.json. Everything it starts, it stops.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.cold_start import write_results  # noqa: E402

ROUND_TRIPS: Final = 200
WARMUPS: Final = 20
# The agent and every package its wheelhouse installs at run time (agent/requirements.lock, boto3 aside:
# only the [cloudwatch] extra needs it): the MQTT SDK, and the player queries' libraries.
PACKAGES: Final = ("gangway_agent", "awsiot", "awscrt", "mcstatus", "asyncio_dgram", "dns", "a2s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Backend:
    """The backend's side of the link: publish on cmd, wait for the reply with the same id on evt."""

    def __init__(self, port: int) -> None:
        from awscrt import mqtt5  # type: ignore[import-untyped]

        self._m = mqtt5
        self._replies: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.ready = threading.Event()
        self._subscribed = threading.Event()
        self._stopped = threading.Event()
        self._client = mqtt5.Client(mqtt5.ClientOptions(
            host_name="127.0.0.1", port=port, connect_options=mqtt5.ConnectPacket(client_id="bench-backend"),
            on_publish_callback_fn=self._on_publish,
            on_lifecycle_event_connection_success_fn=self._on_connected,
            on_lifecycle_event_stopped_fn=lambda _d: self._stopped.set(),
        ))
        self._client.start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the benchmark's MQTT client did not connect")

    def _on_connected(self, _data: Any) -> None:
        m = self._m
        topic = m.Subscription("gangway/bench/agent/evt", m.QoS.AT_LEAST_ONCE)
        sub = m.SubscribePacket(subscriptions=[topic])
        self._client.subscribe(sub).add_done_callback(lambda _f: self._subscribed.set())

    def _on_publish(self, data: Any) -> None:
        msg = json.loads(bytes(data.publish_packet.payload))
        if msg.get("type") == "ready":
            self.ready.set()
        with self._lock:
            event = self._replies.get(msg.get("id") or "")
        if event is not None:
            event.set()

    def round_trip(self, n: int) -> float:
        """Seconds from publishing one status request to receiving its reply."""
        m = self._m
        msg_id = f"bench-{n}"
        done = threading.Event()
        with self._lock:
            self._replies[msg_id] = done
        payload = json.dumps({"id": msg_id, "type": "status", "body": {}}).encode()
        start = time.perf_counter()
        self._client.publish(m.PublishPacket(topic="gangway/bench/agent/cmd", payload=payload,
                                             qos=m.QoS.AT_LEAST_ONCE))
        if not done.wait(10):
            raise RuntimeError(f"no reply to {msg_id}")
        elapsed = time.perf_counter() - start
        with self._lock:
            del self._replies[msg_id]
        return elapsed

    def stop(self) -> None:
        self._client.stop()
        self._stopped.wait(5)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


def _install_mib() -> dict[str, float]:
    sizes: dict[str, float] = {}
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"{name} is not installed: pip install -e agent")
        total = 0
        for location in spec.submodule_search_locations:
            for dirpath, dirnames, filenames in os.walk(location):
                dirnames[:] = [d for d in dirnames if d != "__pycache__"]
                total += sum((Path(dirpath) / f).stat().st_size for f in filenames)
        # awscrt's native extension sits beside the package directory (_awscrt.*.so).
        if name == "awscrt":
            parent = Path(next(iter(spec.submodule_search_locations))).parent
            total += sum(p.stat().st_size for p in parent.glob("_awscrt*.so"))
        sizes[name] = round(total / 2**20, 2)
    return sizes


def measure(workdir: Path) -> dict[str, Any]:
    if shutil.which("mosquitto") is None:
        raise SystemExit("bench/agent.py needs mosquitto (apt-get install mosquitto)")
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"persistence false\nset_tcp_nodelay true\nlog_dest none\nlistener {port} 127.0.0.1\n"
                    "allow_anonymous true\n" + ("user root\n" if os.geteuid() == 0 else ""))
    agent_cfg = workdir / "agent.json"
    agent_cfg.write_text(json.dumps({
        "tenant": "bench", "game": "agent", "state_dir": str(workdir / "state"),
        "mqtt": {"endpoint": "127.0.0.1", "port": port, "transport": "plain", "min_reconnect_s": 0.1},
        "launch": {"command": ["sleep", "3600"], "cwd": str(workdir), "autostart": True},
        "sftp": {"enabled": False}, "firewall": {"enabled": False}, "spot": {"enabled": False},
        "logs": {"sink": "none"}, "data": {"mountpoint": str(workdir)},
    }))
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    agent: subprocess.Popen[bytes] | None = None
    backend: Backend | None = None
    try:
        _wait_port(port)
        backend = Backend(port)
        agent = subprocess.Popen([sys.executable, "-m", "gangway_agent.cli", "-c", str(agent_cfg),
                                  "--log-level", "WARNING"], stdout=subprocess.DEVNULL,
                                 stderr=(workdir / "agent.log").open("wb"))
        if not backend.ready.wait(30):
            raise RuntimeError(f"the agent never said ready: {(workdir / 'agent.log').read_text()[-2000:]}")
        for n in range(WARMUPS):
            backend.round_trip(-n - 1)
        samples = sorted(backend.round_trip(n) * 1000 for n in range(ROUND_TRIPS))
        rss = _rss_mib(agent.pid)
    finally:
        if backend is not None:
            backend.stop()
        if agent is not None:
            _stop(agent)
        _stop(broker)
    sizes = _install_mib()
    return {
        "rtt_p50_ms": round(statistics.median(samples), 2),
        "rtt_p99_ms": round(samples[int(len(samples) * 0.99) - 1], 2),
        "rtt_min_ms": round(samples[0], 2),
        "rss_mib": rss,
        "install_mib": round(sum(sizes.values()), 2),
        "install_mib_by_package": sizes,
        "transport": "mqtt5 plain tcp, loopback, qos 1, mosquitto set_tcp_nodelay",
        "round_trips": ROUND_TRIPS,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def measure_quickack() -> dict[str, float] | None:
    """Run ``measure`` again in a throw-away netns with quickack loopback routes (root only)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return None
    ns = f"gwbench-{os.getpid()}"
    run = subprocess.run
    try:
        run(["ip", "netns", "add", ns], check=True, capture_output=True)
        run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, capture_output=True)
        # Both routes: the /32 one wins for 127.0.0.1 (feasibility.md §4).
        for dst in ("127.0.0.0/8", "127.0.0.1"):
            route = ["route", "replace", "local", dst, "dev", "lo", "table", "local", "proto", "kernel",
                     "scope", "host", "src", "127.0.0.1", "quickack", "1"]
            run(["ip", "-n", ns, *route], check=True, capture_output=True)
        out = run(["ip", "netns", "exec", ns, sys.executable, __file__, "--inner"], check=True,
                  capture_output=True, text=True, timeout=300).stdout
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        print(f"quickack run skipped: {exc}", file=sys.stderr)
        return None
    finally:
        run(["ip", "netns", "del", ns], capture_output=True)
    inner = json.loads(out)
    return {"rtt_quickack_p50_ms": inner["rtt_p50_ms"], "rtt_quickack_p99_ms": inner["rtt_p99_ms"]}


def main() -> int:
    if sys.argv[1:] == ["--inner"]:
        with tempfile.TemporaryDirectory(prefix="gangway-bench-") as tmp:
            print(json.dumps(measure(Path(tmp))))
        return 0
    with tempfile.TemporaryDirectory(prefix="gangway-bench-") as tmp:
        result = measure(Path(tmp))
    quick = measure_quickack()
    if quick is not None:
        result.update(quick)
    print(json.dumps(result, indent=2))
    write_results({"agent": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())

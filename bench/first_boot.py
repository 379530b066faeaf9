"""First boot to `ready` on a booted Debian 12 instance (devstack/instance), per phase.

The instance boots from the cached root file system (systemd-nspawn), runs the real user data at first
boot, and its agent reports `ready` over mTLS to a Mosquitto playing IoT Core. Measured from the host:

* `boot_s`: `systemd-nspawn --boot` until multi-user.target is active.
* `user_data_start_s`: until the user data's first phase mark (cloud-final's stand-in fetched and ran it).
* `phases_s`: each phase the user data marks in its log (`gangway phase: NAME EPOCH`), from its mark to the
  next one; the last (`game-start`: the agent's unit started) runs until the agent's `ready` arrived.
  `packages` is only the check when the image already has them (the cached root file system has them, as
  a prepared image would; installing them from Debian's archive on a bare cloud image adds ~20 s).
* `boot_to_ready_s`: from starting the container to the `ready` event.

Root only (nspawn, loop devices, namespaces); otherwise it records why it did not run. The first run
builds the root file system (~3 minutes, cached in /var/cache/gangway); that is not part of the figures.
Run from the repo root: `.venv/bin/python bench/first_boot.py` (or `make bench`); merges its JSON under
"first_boot" into bench/results.json. Everything it starts, it stops.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.cold_start import write_results  # noqa: E402

INSTANCE: Final = "i-0be0c4b00d0000001"
TENANT: Final = "100000000000000042"
GAME: Final = "bench"
START_SH: Final = "#!/bin/sh\nexec sleep infinity\n"



def _ready(events: queue.Queue[tuple[float, dict[str, Any]]], timeout: float) -> float:
    """When the agent's `ready` arrived (epoch seconds), 0 if it did not within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            at, msg = events.get(timeout=1)
        except queue.Empty:
            continue
        if msg.get("type") == "ready":
            return at
    return 0.0


def _volume(work: Path) -> Path:
    """The game's volume as a snapshot would restore it: its start script under game/."""
    script = work / "volume" / "game" / "start.sh"
    script.parent.mkdir(parents=True)
    script.write_text(START_SH)
    script.chmod(0o755)
    return work / "volume"


def measure(work: Path) -> dict[str, Any]:
    from devstack.aws import fake_credentials

    os.environ.update(fake_credentials())
    import boto3
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from deploy.wheelhouse import build
    from devstack.aws import Emulator, artifacts_bucket
    from devstack.instance.firstboot import phases, prepare
    from devstack.instance.iot import make_pki, tls_mosquitto
    from devstack.instance.rootfs import build_rootfs
    from devstack.stack import free_port

    rootfs = build_rootfs()
    built = build(say=lambda _: None)
    emulator = Emulator(free_port()).start()
    events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
    try:
        s3 = boto3.client("s3", endpoint_url=emulator.url)
        bucket = artifacts_bucket(s3)
        (work / "broker").mkdir()
        pki = make_pki()
        with tls_mosquitto(work / "broker", pki) as broker:
            sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-first-boot")
            sub.on_message = lambda _c, _u, m: events.put((time.time(), json.loads(m.payload)))
            sub.on_connect = lambda c, *_: c.subscribe(f"gangway/{TENANT}/{GAME}/evt", qos=1)
            sub.connect("127.0.0.1", broker.plain_port)
            sub.loop_start()
            instance = prepare(
                rootfs,
                instance_id=INSTANCE,
                tenant=TENANT,
                game=GAME,
                stage="bench",
                region="us-east-1",
                aws_url=emulator.url,
                s3=s3,
                ssm=boto3.client("ssm", endpoint_url=emulator.url),
                bucket=bucket,
                wheelhouse=(built.archive.read_bytes(), built.requirements),
                pki=pki,
                broker=broker,
                disk_files=_volume(work),
            )
            vm = instance.vm
            try:
                started = time.time()
                vm.start()
                booted = time.time()
                ready_at = _ready(events, 300)
                log = vm.wait_user_data(timeout=60)
            finally:
                vm.stop()
                sub.loop_stop()
                sub.disconnect()
    finally:
        emulator.stop()
    if not ready_at:
        raise RuntimeError("the agent never reported ready; the user data's log:\n" + log)
    marks = phases(log)
    ends = [at for _, at in marks[1:]] + [ready_at]
    return {
        "boot_s": round(booted - started, 2),
        "user_data_start_s": round(marks[0][1] - started, 2) if marks else None,
        "phases_s": {name: round(end - at, 2) for (name, at), end in zip(marks, ends, strict=True)},
        "boot_to_ready_s": round(ready_at - started, 2),
        "rootfs": str(rootfs.path),
    }


def main() -> int:
    if os.geteuid() != 0 or shutil.which("systemd-nspawn") is None:
        result: dict[str, Any] = {"skipped": "needs root and systemd-nspawn (make system-deps, as root)"}
    else:
        with tempfile.TemporaryDirectory(prefix="gangway-bench-boot-") as tmp:
            result = measure(Path(tmp))
    print(json.dumps(result, indent=2))
    write_results({"first_boot": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())

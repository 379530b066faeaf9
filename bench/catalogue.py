"""Start-to-playable for a real catalogue game on a booted Debian 12 instance (devstack/instance):
Luanti's server (Debian's `minetest-server`), installed by the agent with apt at its start.

The instance boots as in bench/first_boot.py; then its agent gets the catalogue entry
(devstack/instance/catalogue.py) and is restarted, and the figures are from that restart to the
agent's `playable` event (the server's UDP port is bound):

* `first_start_s`: from zero, the install included (apt from a local repository of Debian's .debs, as
  the instance has no internet here: devstack/instance/aptrepo.py; downloading them from a mirror in AWS
  adds their transfer, ~5 MB).
* `install_s`: of which the install (first `install.progress` to `done`).
* `second_start_s`: the next restart, the install skipped by the data disk's marker.

Root only; otherwise it records why it did not run. Run from the repo root:
`.venv/bin/python bench/catalogue.py` (or `make bench`); merges its JSON under "catalogue" into
bench/results.json. Everything it starts, it stops.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.cold_start import write_results  # noqa: E402

INSTANCE: Final = "i-0be0c4b00d0000002"
TENANT: Final = "100000000000000043"
GAME: Final = "luanti"
START_SH: Final = "#!/bin/sh\nexec sleep infinity\n"



def _next(events: queue.Queue[tuple[float, dict[str, Any]]], kind: str, timeout: float,
          seen: list[tuple[float, dict[str, Any]]]) -> float:
    """When the next `kind` event arrived (monotonic seconds); every event read goes to `seen`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            at, msg = events.get(timeout=1)
        except queue.Empty:
            continue
        seen.append((at, msg))
        if msg.get("type") == "install.progress" and msg["body"]["phase"] == "failed":
            raise RuntimeError(f"the install failed: {msg['body']['message']}")
        if msg.get("type") == kind:
            return at
    raise RuntimeError(f"no {kind} event in {timeout:.0f}s")


def _restart(vm: Any, events: queue.Queue[tuple[float, dict[str, Any]]]) -> dict[str, float]:
    """Restart the agent; seconds to its `playable` and the install's span."""
    while not events.empty():
        events.get_nowait()
    began = time.monotonic()
    vm.exec(["systemctl", "restart", "gangway-agent"], timeout=120)
    seen: list[tuple[float, dict[str, Any]]] = []
    _next(events, "ready", 120, seen)
    seen.clear()
    playable = _next(events, "playable", 900, seen)
    progress = [(at, m["body"]["phase"]) for at, m in seen if m.get("type") == "install.progress"]
    install = progress[-1][0] - progress[0][0] if progress and progress[-1][1] == "done" else 0.0
    return {"start_s": round(playable - began, 2), "install_s": round(install, 2),
            "skipped": float(any(phase == "skipped" for _, phase in progress))}


def _volume(work: Path) -> None:
    """The game's volume before the catalogue entry: an idle start script under game/."""
    volume = work / "volume" / "game"
    volume.mkdir(parents=True)
    (volume / "start.sh").write_text(START_SH)
    (volume / "start.sh").chmod(0o755)


def measure(work: Path) -> dict[str, Any]:
    from devstack.aws import fake_credentials

    os.environ.update(fake_credentials())
    import boto3
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from deploy.wheelhouse import build
    from devstack.aws import Emulator, artifacts_bucket
    from devstack.instance.aptrepo import build_repo, install_into
    from devstack.instance.catalogue import LUANTI_PACKAGES, apply_entry
    from devstack.instance.firstboot import prepare
    from devstack.instance.iot import make_pki, tls_mosquitto
    from devstack.instance.rootfs import build_rootfs
    from devstack.stack import free_port

    rootfs = build_rootfs()
    repo = build_repo(LUANTI_PACKAGES, rootfs)
    built = build(say=lambda _: None)
    _volume(work)
    emulator = Emulator(free_port()).start()
    events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
    try:
        s3 = boto3.client("s3", endpoint_url=emulator.url)
        (work / "broker").mkdir()
        pki = make_pki()
        with tls_mosquitto(work / "broker", pki) as broker:
            sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-catalogue")
            sub.on_message = lambda _c, _u, m: events.put((time.monotonic(), json.loads(m.payload)))
            sub.on_connect = lambda c, *_: c.subscribe(f"gangway/{TENANT}/{GAME}/evt", qos=1)
            sub.connect("127.0.0.1", broker.plain_port)
            sub.loop_start()
            instance = prepare(
                rootfs, instance_id=INSTANCE, tenant=TENANT, game=GAME, stage="bench", region="us-east-1",
                aws_url=emulator.url, s3=s3, ssm=boto3.client("ssm", endpoint_url=emulator.url),
                bucket=artifacts_bucket(s3), wheelhouse=(built.archive.read_bytes(), built.requirements),
                pki=pki, broker=broker, disk_files=work / "volume",
            )
            vm = instance.vm
            try:
                vm.start()
                vm.wait_user_data(timeout=300)
                install_into(repo, vm.root)
                apply_entry(vm.root)
                first = _restart(vm, events)
                second = _restart(vm, events)
            except (RuntimeError, subprocess.SubprocessError) as exc:
                console = vm.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{exc}; console: {console}") from exc
            finally:
                vm.stop()
                sub.loop_stop()
                sub.disconnect()
    finally:
        emulator.stop()
    return {
        "game": "minetest-server (apt)",
        "first_start_s": first["start_s"],
        "install_s": first["install_s"],
        "second_start_s": second["start_s"],
        "second_start_skipped_install": bool(second["skipped"]),
        "debs": len(repo.debs()),
    }


def main() -> int:
    if os.geteuid() != 0 or shutil.which("systemd-nspawn") is None:
        result: dict[str, Any] = {"skipped": "needs root and systemd-nspawn (make system-deps, as root)"}
    else:
        with tempfile.TemporaryDirectory(prefix="gangway-bench-catalogue-") as tmp:
            result = measure(Path(tmp))
    print(json.dumps(result, indent=2))
    write_results({"catalogue": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the local stack in a subprocess the way a person does (`gangway run`), for tests that drive it
only through stack.json. One implementation for every such test module."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_TEST_SETTINGS = (
    "AWS_",
    "DISCORD_",
    "GANGWAY_",
    "TENANTS_",
    "GAMES_",
    "INTERACTIONS_",
    "JOBS_",
    "JOB_",
    "MOTO_",
)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without the test session's settings: the stack configures itself."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_TEST_SETTINGS)
        and k not in {"SITE_URL", "MQTT_URL", "AUDIT_TABLE"}
        and not k.endswith(("_TABLE", "_QUEUE"))
        and k != "WORKFLOWS_PREFIX"
    }
    return {**env, **(extra or {})}


@contextlib.contextmanager
def running_stack(state: Path, extra_env: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Start `gangway run --auto-ports`, yield stack.json (plus `_proc` and `_state`), stop it after."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack", "--state-dir", str(state), "run", "--auto-ports"],
        cwd=ROOT,
        env=clean_env(extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    path = state / "stack.json"
    deadline = time.monotonic() + 60
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the stack did not come up:\n" + (proc.stdout.read() if proc.stdout else ""))
        time.sleep(0.1)
    info: dict[str, Any] = json.loads(path.read_text())
    info["_proc"], info["_state"] = proc, state
    try:
        yield info
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def stack_aws(stack: Mapping[str, Any], service: str) -> Any:
    """A boto3 client on a running stack's emulator with the keys its stack.json gives tools (IAM is
    enforced there: only keys moto issued get in; the fake ones only when `GANGWAY_ENFORCE_IAM=0`)."""
    import boto3

    tools: Mapping[str, str] = stack.get("tool_environment") or {}
    make: Any = boto3.client
    return make(
        service,
        region_name="us-east-1",
        endpoint_url=stack["aws_endpoint_url"],
        aws_access_key_id=tools.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=tools.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )


def stack_table(stack: Mapping[str, Any], name: str) -> str:
    """A running stack's table by its short name (`games`, `grants`, …): the deployed name it runs
    under when IAM is enforced (`gangway-local-games`), else `gangway-games`."""
    tools: Mapping[str, str] = stack.get("tool_environment") or {}
    return tools.get(f"{name.upper()}_TABLE", f"gangway-{name}")

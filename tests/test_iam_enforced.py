"""A hosted game's life fails when one action is missing from one function's policy.

The suite itself runs with IAM enforced (tests/test_hosted_life_iam.py walks the whole life that way).
That only proves something if a missing action fails: moto's authentication switch is process-wide, so
this runs the life module in its own pytest process with `iot:DescribeEndpoint` taken from the hosting
role the broker assumes for a hosted tenant's instance identity (GANGWAY_IAM_DROP, devstack/iam.py); the
start's launch must then be refused as AccessDenied, by the emulator's strict check of that role.
Nothing here skips. About 40 s on a busy 2-core machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Final

from devstack.iam import DROP_ENV, ENFORCE_ENV

__all__ = ["test_a_missing_action_fails_the_life_with_access_denied"]

ROOT: Final = Path(__file__).resolve().parent.parent
LIFE: Final = "tests/test_hosted_life_iam.py"


def _life(**extra: str) -> subprocess.CompletedProcess[str]:
    """The life module in a fresh pytest process, enforced; its environment is this one's plus `extra`
    (without this session's settings, which tests/conftest.py sets for its own emulator)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GANGWAY_", "AWS_"))}
    env.update({ENFORCE_ENV: "1", **extra})
    for key in ("CREDENTIALS_SOURCE", "DISCORD_API_URL", "TENANTS_TABLE", "GAMES_TABLE"):
        env.pop(key, None)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "-rP", LIFE]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )


def test_a_missing_action_fails_the_life_with_access_denied() -> None:
    run = _life(**{DROP_ENV: "hosting:iot:DescribeEndpoint"})
    assert run.returncode == 1, run.stdout[-6000:] + run.stderr[-2000:]
    assert "1 failed" in run.stdout
    denied = re.search(
        r"assumed-role/gangway-test-hosting/\S+ is not authorized to perform: iot:DescribeEndpoint",
        run.stdout,
    )
    assert denied, run.stdout[-6000:]

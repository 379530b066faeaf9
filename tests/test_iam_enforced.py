"""A hosted game's whole life under enforced IAM, and the same life failing when one action is missing.

moto's authentication switch (`/moto-api/reset-auth`) is process-wide, so the life runs in its own pytest
process with GANGWAY_ENFORCE_IAM=1 (tests/iam_enforced_life.py, which plain `pytest` never collects):
every handler calls the emulator as its function's IAM user, made from policies/<function>.json (and
connecting a customer account, test_tenancy_onboarding.py, runs enforced in the same process). The
second run takes `iot:DescribeEndpoint` from the steps function (GANGWAY_IAM_DROP, devstack/iam.py): the
start's launch must then be refused as AccessDenied, which proves the first run's pass means the policies
allow the life, not that nothing was checked. Nothing here skips. About 110 s on a busy 2-core machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Final

from devstack.iam import DROP_ENV, ENFORCE_ENV

__all__ = [
    "test_a_hosted_game_lives_under_enforced_iam",
    "test_a_missing_action_fails_the_life_with_access_denied",
]

ROOT: Final = Path(__file__).resolve().parent.parent
LIFE: Final = "tests/iam_enforced_life.py"
# Connecting a customer account: AssumeRole through the role's trust policy, the role carrying
# policies/customer-role.yaml's statements, every permission check of the verification.
ONBOARDING: Final = "tests/test_tenancy_onboarding.py"


def _life(*modules: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """The life module in a fresh pytest process, enforced; its environment is this one's plus `extra`
    (without this session's settings, which tests/conftest.py sets for its own emulator)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GANGWAY_", "AWS_"))}
    env.update({ENFORCE_ENV: "1", **extra})
    for key in ("CREDENTIALS_SOURCE", "DISCORD_API_URL", "TENANTS_TABLE", "GAMES_TABLE"):
        env.pop(key, None)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "-rP", LIFE, *modules]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )


def test_a_hosted_game_lives_under_enforced_iam() -> None:
    run = _life(ONBOARDING)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "16 passed" in run.stdout
    for refusal in ("AccessDenied", "is not authorized", "SignatureDoesNotMatch"):
        assert refusal not in run.stdout, run.stdout[-6000:]


def test_a_missing_action_fails_the_life_with_access_denied() -> None:
    run = _life(**{DROP_ENV: "steps:iot:DescribeEndpoint"})
    assert run.returncode == 1, run.stdout[-6000:] + run.stderr[-2000:]
    assert "1 failed" in run.stdout
    assert "gangway-test-steps is not authorized to perform: iot:DescribeEndpoint" in run.stdout, run.stdout[
        -6000:
    ]

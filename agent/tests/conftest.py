"""Shared test set-up: the one rule for tests that need system programs, and common fixtures.

``@pytest.mark.requires("mosquitto", "openssl")`` skips a test (with the reason) when a program is
missing or we are not root; with ``CI=true`` the same condition fails the test instead, so CI can
never go green by skipping the real-component tests.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from agent_broker import PKI, Broker, make_pki, start_broker
from agent_fakes import FakeClock


def require(*binaries: str, root: bool = True) -> None:
    """Skip (or, when CI=true, fail) unless every program is on PATH and, if asked, we are root."""
    missing = [b for b in binaries if shutil.which(b) is None]
    reasons = []
    if missing:
        reasons.append(f"missing program(s): {', '.join(missing)}")
    if root and os.geteuid() != 0:
        reasons.append("needs root")
    if not reasons:
        return
    reason = "; ".join(reasons)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and this test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too, so `pytest tests agent/tests` from the repository root (--strict-markers) knows it.
    config.addinivalue_line(
        "markers", "requires(*binaries, root=True): needs these programs and root; skip, or fail if CI=true"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires"):
        require(*mark.args, root=bool(mark.kwargs.get("root", True)))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """A test CA with a server certificate and client certificates for two agents and the backend."""
    return make_pki(tmp_path_factory.mktemp("pki"), ["t1/alpha", "t1/beta", "backend"])


@pytest.fixture
def broker(tmp_path: Path, pki: PKI) -> Iterator[Broker]:
    """A real Mosquitto with a plain and an mTLS listener and an IoT-policy-like ACL."""
    require("mosquitto", root=False)
    b = start_broker(tmp_path, pki)
    try:
        yield b
    finally:
        b.stop()

"""What Lambda loads, on the package `make deploy` builds (`chalice package`, then deploy/package.py).

The function that answers Discord carries at most 10 MB unpacked beyond the runtime; the runtime's own
boto3/botocore are not vendored; web push's dependencies are in a layer only the steps function has.
And the split package really runs with nothing but the runtime's packages beside it: a fresh
interpreter without site-packages imports the app from it and builds the interaction path, and, with
the layer, the push sender's libraries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from deploy.package import LAYER_ZIP, RUNTIME_DISTRIBUTIONS, sizes
from deploy.stack import Deployment
from deploy.template.functions import PUSH_LAYER, function_logical_id

STAGE = "dev"
ANSWERING_LIMIT = 10 * 1000 * 1000  # bytes unpacked, beyond the runtime
# Top-level names of the runtime's distributions (RUNTIME_DISTRIBUTIONS) in site-packages.
RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3")
PUSH_MODULES = ("pywebpush", "py_vapid", "http_ece", "cryptography", "aiohttp", "requests")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build")
    Deployment(STAGE, build_dir=out, say=lambda _: None).build()
    return out / STAGE


def _tops(path: Path, prefix: str = "") -> set[str]:
    with zipfile.ZipFile(path) as zf:
        return {n.removeprefix(prefix).split("/")[0] for n in zf.namelist() if n.startswith(prefix)}


def test_the_answering_function_loads_at_most_10_mb_and_no_runtime_or_push_packages(built: Path) -> None:
    got = sizes(built / "deployment.zip")
    assert got.function_unpacked <= ANSWERING_LIMIT, got
    tops = _tops(built / "deployment.zip")
    assert {"app.py", "chalicelib", "nacl", "pynamodb", "chalice"} <= tops
    assert not tops & {m.removesuffix(".py") for m in RUNTIME_MODULES} - {"six"}
    assert "six.py" not in tops
    assert not tops & set(PUSH_MODULES)
    assert {"botocore", "boto3"} <= RUNTIME_DISTRIBUTIONS


def test_web_push_packages_are_in_a_layer_only_the_steps_function_carries(built: Path) -> None:
    layer = _tops(built / LAYER_ZIP, "python/")
    assert set(PUSH_MODULES) <= layer
    assert not layer & {"botocore", "boto3", "nacl", "pynamodb", "chalicelib"}
    sam = json.loads((built / "sam.json").read_text())["Resources"]
    assert sam[PUSH_LAYER]["Type"] == "AWS::Serverless::LayerVersion"
    carrying = {k for k, r in sam.items() if {"Ref": PUSH_LAYER} in r.get("Properties", {}).get("Layers", [])}
    assert carrying == {function_logical_id("steps")}


def _runtime_dir(tmp: Path) -> Path:
    """A folder holding only what the Lambda runtime provides: boto3, botocore and their packages."""
    site = Path(sysconfig.get_paths()["purelib"])
    runtime = tmp / "runtime"
    runtime.mkdir()
    for name in RUNTIME_MODULES:
        (runtime / name).symlink_to(site / name)
    return runtime


def _run(code: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter whose only packages are in `paths`: -S leaves out site-packages,
    -I anything from the caller's environment."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "GANGWAY_STAGE": "local",
        "DISCORD_PUBLIC_KEY": "00" * 32,
    }
    prelude = "import sys; sys.path[:0] = sys.argv[1:]\n"
    cmd = [sys.executable, "-S", "-I", "-c", prelude + code, *map(str, paths)]
    return subprocess.run(
        cmd, cwd=paths[0], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_split_package_runs_with_only_the_runtime_beside_it(built: Path, tmp_path: Path) -> None:
    fn, layer = tmp_path / "task", tmp_path / "opt"
    zipfile.ZipFile(built / "deployment.zip").extractall(fn)
    zipfile.ZipFile(built / LAYER_ZIP).extractall(layer)
    runtime = _runtime_dir(tmp_path)
    answering = _run(
        "import app\nfrom chalicelib.wiring import container\nc = container(); c.services; c.dispatcher\n"
        "print('answering ok')",
        fn,
        runtime,
    )
    assert answering.returncode == 0, answering.stderr
    assert "answering ok" in answering.stdout
    pushing = _run("import pywebpush, py_vapid; print('push ok')", fn, layer / "python", runtime)
    assert pushing.returncode == 0, pushing.stderr
    assert "push ok" in pushing.stdout
    without_layer = _run("import pywebpush", fn, runtime)
    assert without_layer.returncode != 0
    assert "No module named 'pywebpush'" in without_layer.stderr

"""The Chalice project config and IAM policies: stages, least privilege, settings the code knows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import app as app_module
from chalicelib.config import Settings
from deploy.policy import NO_RESOURCE_LEVEL

ROOT = Path(__file__).resolve().parent.parent
CONFIG = json.loads((ROOT / ".chalice" / "config.json").read_text())
ENV_READ = set(re.findall(r'e\.get\("([A-Z_]+)"', (ROOT / "chalicelib" / "config.py").read_text()))


def test_stages_local_dev_prod_with_own_policies_and_no_autogen() -> None:
    assert set(CONFIG["stages"]) == {"local", "dev", "prod"}
    assert CONFIG["autogen_policy"] is False
    functions = {"api_handler", *(h.name for h in app_module.app.event_sources)}
    for stage in CONFIG["stages"].values():
        assert set(stage["lambda_functions"]) == functions
        for fn in stage["lambda_functions"].values():
            assert (ROOT / ".chalice" / fn["iam_policy_file"]).resolve().exists()


@pytest.mark.parametrize("stage", ["local", "dev", "prod"])
def test_every_stage_variable_is_one_the_settings_read(stage: str) -> None:
    env = CONFIG["stages"][stage]["environment_variables"]
    assert set(env) <= ENV_READ
    settings = Settings.from_env(env)
    assert settings.stage == stage and settings.jobs_queue == f"gangway-{stage}-jobs"


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return list(policy["Statement"])


@pytest.mark.parametrize("path", sorted((ROOT / "policies").glob("*.json")), ids=lambda p: p.name)
def test_policies_name_actions_and_scope_resources(path: Path) -> None:
    for stmt in _statements(json.loads(path.read_text())):
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        assert all("*" not in a for a in actions), f"{path.name}: wildcard action in {stmt['Sid']}"
        resources = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
        if "*" in resources:
            # Only actions without resource-level permissions may use "*".
            assert all(a in NO_RESOURCE_LEVEL for a in actions), f"{path.name}: unscoped {stmt['Sid']}"


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "arn:aws:iam::*:role/*"},
        {"Effect": "Allow", "Action": "ec2:TerminateInstances", "Resource": "arn:aws:ec2:*:*:instance/*"},
        {
            "Effect": "Allow",
            "Action": ["ec2:RunInstances", "ec2:TerminateInstances"],
            "Resource": "arn:aws:ec2:*::image/*",
        },
        {"Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "*"},
    ],
)
def test_policy_check_still_refuses_what_the_ec2_and_customer_role_rules_do_not_cover(
    statement: dict[str, Any],
) -> None:
    from deploy.policy import policy_problems

    assert policy_problems({"Statement": [statement]}, "probe", stage="dev")
